"""``osintd watch``: the terminal client, built on :mod:`osintd.client`.

Owns: the flags of ``osintd watch``, the live terminal view (the Top 10, the
most recent events, connection state), the ``--json`` line output, and the
terminal's modes while it runs (alternate screen, hidden cursor, no echo),
which are restored on every way out.
Must not: speak to the server except through ``osintd.client``, write
anything but one JSON object per line to stdout with ``--json``, or let
anything the server sends (a title, a repository name) put control characters
on the terminal.

Exit codes: 0 after Ctrl-C, SIGTERM or a closed pipe; 1 when the server
refuses the connection for good; 2 for a bad flag (one line on stderr).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import logging
import os
import shutil
import signal
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from typing import IO, Any, BinaryIO, NoReturn

import attrs
import trio

from osintd import logs
from osintd.client import (
    ConnectionState, Gap, HandshakeRefused, LiveUpdatesClient, Resync, StateChange,
)
from osintd.messages import SUBSCRIBABLE_TYPES

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8000/ws/live-updates"
TOP = 10
#: How often the screen may be redrawn (seconds between frames), and how long a rank move stays marked.
FRAME_INTERVAL = 0.25
MOVE_HIGHLIGHT_SECONDS = 10.0
EVENTS_KEPT = 200
STANDINGS_KEPT = 10_000

ENTER_SCREEN = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J"
LEAVE_SCREEN = "\x1b[0m\x1b[?25h\x1b[?1049l"
HOME, CLEAR_LINE_REST, CLEAR_SCREEN_REST, CLEAR_SCREEN = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"
RESET, BOLD, DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
GREEN, YELLOW, RED, CYAN = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[36m"
MOVE_MARKS = {"up": ("▲", GREEN), "down": ("▼", RED), "new": ("★", CYAN)}


class UsageError(Exception):
    """A bad flag: one line for the user, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@attrs.frozen
class WatchOptions:
    url: str
    types: tuple[str, ...] | None
    repos: tuple[str, ...] | None
    json_lines: bool
    #: Sent as ``Authorization: Bearer`` to a server with access control (never on the URL,
    #: where ``ps`` and proxies' logs would show it).
    token: str | None = attrs.field(default=None, repr=False)

    def client(self) -> LiveUpdatesClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        return LiveUpdatesClient(self.url, types=self.types, repos=self.repos, headers=headers)


def _url(text: str) -> str:
    if not text.startswith(("ws://", "wss://")) or len(text.split("/")) < 3 or not text.split("/")[2]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ws:// or wss:// URL")
    return text


def _types(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("--types needs at least one type")
    if unknown := sorted(set(names) - SUBSCRIBABLE_TYPES):
        raise argparse.ArgumentTypeError(f"unknown types {', '.join(unknown)}; choose from "
                                         f"{', '.join(sorted(SUBSCRIBABLE_TYPES))}")
    return names


def _repos(text: str) -> tuple[str, ...]:
    globs = tuple(part.strip() for part in text.split(",") if part.strip())
    if not globs:
        raise argparse.ArgumentTypeError("--repos needs at least one OWNER/NAME glob")
    return globs


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="osintd watch", description="Watch osintd's live updates in a terminal, or as JSON lines.")
    p.add_argument("--url", type=_url, default=DEFAULT_URL, help=f"WebSocket URL (default {DEFAULT_URL})")
    p.add_argument("--types", type=_types, metavar="TYPE,...",
                   help="only these message types, e.g. new_event,ranking_change")
    p.add_argument("--repos", type=_repos, metavar="GLOB,...",
                   help="only these repositories, e.g. 'openai/*' (the leaderboard then follows only their moves)")
    p.add_argument("--json", action="store_true", dest="json_lines",
                   help="print each message as one JSON line on stdout (for jq) instead of the live view")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding an access token for a server with access control "
                        "(or the token itself in $OSINTD_TOKEN)")
    return p


def parse_options(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> WatchOptions:
    flags = build_parser().parse_args(list(argv))
    environ = os.environ if environ is None else environ
    token = environ.get("OSINTD_TOKEN") or None
    if flags.token_file is not None:
        try:
            with open(flags.token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {flags.token_file}: cannot read it ({exc.__class__.__name__})") from None
        if not token or any(c.isspace() for c in token):
            raise UsageError(f"--token-file {flags.token_file} must hold one token")
    return WatchOptions(flags.url, flags.types, flags.repos, flags.json_lines, token)


def main(argv: list[str]) -> int:
    try:
        options = parse_options(argv)
        if not options.json_lines and not _is_terminal(sys.stdout):
            raise UsageError("standard output is not a terminal; use --json to pipe the messages")
    except UsageError as exc:
        print(f"osintd watch: error: {exc}", file=sys.stderr)
        return 2
    ending = _main_json(options) if options.json_lines else _main_terminal(options)
    if ending.refused is not None:
        print(f"osintd watch: error: {ending.refused}", file=sys.stderr)
        return 1
    return 0


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


@attrs.define
class Ending:
    """How a watch ended: refused for good by the server, or its reader went away, or neither."""

    refused: HandshakeRefused | None = None
    pipe_closed: bool = False


async def _run_client(client: LiveUpdatesClient, scope: trio.CancelScope, ending: Ending) -> None:
    try:
        await client.run()
    except HandshakeRefused as exc:
        ending.refused = exc
    scope.cancel()


# ------------------------------------------------------------------- --json


def _main_json(options: WatchOptions) -> Ending:
    logs.configure("warning")  # stderr only: stdout carries nothing but JSON lines
    ending = Ending()
    try:
        trio.run(_run_json, options, sys.stdout.buffer, ending)
    except KeyboardInterrupt:
        pass
    if ending.pipe_closed:
        # The reader went away (e.g. `| head`): that ends us, quietly, with nothing left to flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return ending


async def _run_json(options: WatchOptions, out: BinaryIO, ending: Ending) -> None:
    client = options.client()
    async with trio.open_nursery() as nursery:
        def print_line(message: dict[str, Any]) -> None:
            if ending.pipe_closed:
                return
            try:
                out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                out.flush()
            except BrokenPipeError:
                ending.pipe_closed = True
                nursery.cancel_scope.cancel()

        client.on("*", print_line)
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope, None)
        nursery.start_soon(_run_client, client, nursery.cancel_scope, ending)


async def _stop_on_signal(scope: trio.CancelScope, view: WatchView | None) -> None:
    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGWINCH] if view is not None else [])
    with trio.open_signal_receiver(*wanted) as signals:
        async for signum in signals:
            if signum == signal.SIGWINCH and view is not None:
                view.resized = True
                continue
            scope.cancel()
            return


# --------------------------------------------------------------- live view


@attrs.define
class BoardRow:
    rank: int
    repo: str
    score: float
    trend: str | None
    momentum: str | None
    last_move: str | None = None
    moved_at: float | None = None


@attrs.define
class RepoStanding:
    """The latest trend, momentum and score heard for a repository, in the Top 10 or not."""

    trend: str | None = None
    momentum: str | None = None
    score: float | None = None


@attrs.frozen
class EventLine:
    time: str
    kind: str
    repo: str
    title: str
    author: str


@attrs.frozen
class Metrics:
    total_events: int
    active_repositories: int
    websocket_connections: int


@attrs.define
class WatchView:
    """What the screen shows, built from the messages; :func:`render` draws it."""

    url: str
    state: ConnectionState = ConnectionState.CONNECTING
    retry_at: float | None = None
    failed_attempts: int = 0
    board: dict[str, BoardRow] = attrs.field(factory=dict)
    standings: dict[str, RepoStanding] = attrs.field(factory=dict)
    events: collections.deque[EventLine] = attrs.field(factory=lambda: collections.deque(maxlen=EVENTS_KEPT))
    metrics: Metrics | None = None
    system: str | None = None
    notice: str | None = None
    last_seq: int | None = None
    resized: bool = False

    # Everything below is called from the client's handlers, so it never blocks.

    def apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if isinstance(message.get("seq"), int):
            self.last_seq = message["seq"]
        try:
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                handler(message)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a malformed %s message: %s", kind, exc)

    def on_state(self, change: StateChange) -> None:
        if change.state is ConnectionState.CONNECTED:
            self.notice = None  # whatever went wrong before is over
        self.state = change.state
        self.failed_attempts = change.failed_attempts
        self.retry_at = trio.current_time() + change.retry_in if change.retry_in is not None else None

    def on_resync(self, resync: Resync) -> None:
        self.board.clear()
        self.notice = f"resynced from a fresh snapshot: {resync.reason}"

    def on_gap(self, gap: Gap) -> None:
        self.notice = f"missed {gap.missing} message(s); resuming"

    def _on_snapshot(self, message: dict[str, Any]) -> None:
        self.board.clear()
        for row in message["top"][:TOP]:
            repo = clean(row["repo_full_name"])
            standing = self.standings.setdefault(repo, RepoStanding())
            standing.trend, standing.momentum = row.get("trend_status"), row.get("momentum")
            standing.score = float(row["activity_score"])
            self.board[repo] = BoardRow(int(row["rank"]), repo, standing.score, standing.trend, standing.momentum)
        if message.get("metrics"):
            self._on_metrics_update(message["metrics"])
        if message.get("system"):
            self._on_system_status(message["system"])

    def _on_ranking_change(self, message: dict[str, Any]) -> None:
        repo = clean(message["repo_full_name"])
        standing = self.standings.setdefault(repo, RepoStanding())
        standing.score = float(message["activity_score"])
        if message["change"] == "dropped" or int(message["new_rank"]) > TOP:
            self.board.pop(repo, None)
            return
        row = self.board.get(repo) or BoardRow(0, repo, standing.score, standing.trend, standing.momentum)
        row.rank, row.score = int(message["new_rank"]), standing.score
        row.last_move, row.moved_at = message["change"], trio.current_time()
        self.board[repo] = row

    def _on_trend_change(self, message: dict[str, Any]) -> None:
        self._standing(message, message["new_status"])

    def _on_summary_update(self, message: dict[str, Any]) -> None:
        self._standing(message, message["trend_status"])

    def _standing(self, message: dict[str, Any], trend: str) -> None:
        repo = clean(message["repo_full_name"])
        if repo not in self.standings and len(self.standings) >= STANDINGS_KEPT:
            # Forget the longest-known repository outside the board: memory stays bounded.
            oldest = next((name for name in self.standings if name not in self.board), None)
            if oldest is not None:
                self.standings.pop(oldest, None)
        standing = self.standings.setdefault(repo, RepoStanding())
        standing.trend, standing.momentum = trend, message["momentum"]
        standing.score = float(message["activity_score"])
        if (row := self.board.get(repo)) is not None:
            row.trend, row.momentum, row.score = standing.trend, standing.momentum, standing.score

    def _on_new_event(self, message: dict[str, Any]) -> None:
        kind = message["event_type"]
        action = (message.get("data") or {}).get("action")
        self.events.appendleft(EventLine(_clock_time(message.get("timestamp")),
                                         clean(f"{kind}/{action}" if isinstance(action, str) else kind),
                                         clean(message["repo_full_name"]), clean(message["title"]),
                                         clean(message.get("author") or "")))

    def _on_metrics_update(self, message: dict[str, Any]) -> None:
        self.metrics = Metrics(int(message["total_events"]), int(message["active_repositories"]),
                               int(message["websocket_connections"]))

    def _on_system_status(self, message: dict[str, Any]) -> None:
        status, text = message["status"], message.get("message")
        self.system = clean(f"{status}: {text}" if text and status != "healthy" else status)

    def _on_error(self, message: dict[str, Any]) -> None:
        self.notice = clean(f"{message['error_code']}: {message['message']}")


def _clock_time(timestamp: Any) -> str:
    try:
        return dt.datetime.fromisoformat(timestamp).astimezone().strftime("%H:%M:%S")
    except (TypeError, ValueError):
        return "--:--:--"


# ------------------------------------------------------------ text on screen


def clean(text: Any) -> str:
    """``text`` with every control character (escape sequences included) made a space."""
    return "".join(ch if ch.isprintable() else " " for ch in str(text))


def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200d\ufe0e\ufe0f":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal columns, ending in … when cut."""
    if width <= 0:
        return ""
    if display_width(text) <= width:
        return text
    kept, used = [], 0
    for ch in text:
        w = char_width(ch)
        if used + w > width - 1:
            break
        kept.append(ch)
        used += w
    return "".join(kept) + "…"


def pad(text: str, width: int, right: bool = False) -> str:
    text = fit(text, width)
    gap = " " * (width - display_width(text))
    return gap + text if right else text + gap


@attrs.frozen
class Painted:
    """One line on screen: its text and an optional colour for all of it."""

    text: str
    style: str = ""


def render(view: WatchView, columns: int, rows: int, now: float) -> list[Painted]:
    """The screen for ``view`` in ``columns`` x ``rows``: at most ``rows`` lines, each at most
    ``columns - 1`` columns wide (the last column is never written, so nothing wraps)."""
    width = max(columns - 1, 10)
    live = view.state is ConnectionState.CONNECTED
    lines: list[Painted] = []

    state_text, state_style = _state_text(view, now)
    title = f"osintd watch  {view.url}"
    room = width - display_width(state_text) - 2
    if room >= 10:
        lines.append(Painted(pad(title, room) + "  " + state_text, state_style))
    else:
        lines.append(Painted(fit(state_text, width), state_style))
    summary = []
    if view.metrics is not None:
        summary += [f"events {view.metrics.total_events:,}", f"repos {view.metrics.active_repositories}",
                    f"clients {view.metrics.websocket_connections}"]
    if view.system:
        summary.append(f"system {view.system}")
    if view.last_seq is not None:
        summary.append(f"seq {view.last_seq}")
    lines.append(Painted(fit(" · ".join(summary), width), "" if live else DIM))
    lines.append(Painted(""))

    repo_width = max(12, min(40, width - 45))
    header = f"{'#':>2}   {pad('REPOSITORY', repo_width)} {'SCORE':>8}  {pad('TREND', 11)} MOMENTUM"
    lines.append(Painted(fit(header + ("" if live else "   (not live)"), width), BOLD))
    board = sorted(view.board.values(), key=lambda row: (row.rank, row.repo))[:TOP]
    if not board:
        lines.append(Painted(fit("   waiting for the leaderboard…", width), DIM))
    for row in board:
        mark, mark_style = " ", ""
        if row.last_move in MOVE_MARKS and row.moved_at is not None and now - row.moved_at < MOVE_HIGHLIGHT_SECONDS:
            mark, mark_style = MOVE_MARKS[row.last_move]
        text = (f"{row.rank:>2} {mark} {pad(row.repo, repo_width)} {row.score:>8.1f}  "
                f"{pad(row.trend or '—', 11)} {row.momentum or '—'}")
        lines.append(Painted(fit(text, width), mark_style if live else DIM))
    lines.append(Painted(""))

    lines.append(Painted(fit("RECENT EVENTS", width), BOLD))
    footer = Painted(fit(view.notice or "Ctrl-C to quit", width), YELLOW if view.notice else DIM)
    room_for_events = rows - len(lines) - 1
    if not view.events and room_for_events > 0:
        lines.append(Painted(fit("   waiting for events…", width), DIM))
    for event in list(view.events)[:max(room_for_events, 0)]:
        text = (f"{event.time}  {pad(event.kind, 20)} {pad(event.repo, min(repo_width, 32))}  "
                f"{event.title}" + (f" — {event.author}" if event.author else ""))
        lines.append(Painted(fit(text, width), "" if live else DIM))
    if len(lines) < rows:
        lines += [Painted("")] * (rows - len(lines) - 1)
        lines.append(footer)
    return lines[:rows]


def _state_text(view: WatchView, now: float) -> tuple[str, str]:
    if view.state is ConnectionState.CONNECTED:
        return "● connected", GREEN
    if view.state is ConnectionState.CLOSED:
        return "○ closed", RED
    if view.state is ConnectionState.RECONNECTING:
        attempt = f", attempt {view.failed_attempts + 1}" if view.failed_attempts else ""
        if view.retry_at is not None and view.retry_at > now:
            return f"◌ reconnecting in {view.retry_at - now:.0f} s{attempt}…", YELLOW
        return f"◌ reconnecting{attempt}…", YELLOW
    return "◌ connecting…", YELLOW


def paint(lines: list[Painted], color: bool) -> str:
    """The escape sequences that put ``lines`` on screen without flicker: home the
    cursor, overwrite each line and clear what is left of it, then clear below."""
    out = [HOME]
    for number, line in enumerate(lines):
        if number:
            out.append("\r\n")
        if color and line.style and line.text:
            out.append(f"{line.style}{line.text}{RESET}")
        else:
            out.append(line.text)
        out.append(CLEAR_LINE_REST)
    out.append(CLEAR_SCREEN_REST)
    return "".join(out)


class Terminal:
    """The controlling terminal while the view runs: alternate screen, hidden cursor,
    keys not echoed; :meth:`restore` puts everything back and may be called twice."""

    def __init__(self, output_fd: int, input_fd: int) -> None:
        self.output_fd = output_fd
        self.input_fd = input_fd
        self._saved_modes: list[Any] | None = None  # termios attributes, as tcgetattr gives them
        self._entered = False

    def enter(self) -> None:
        try:
            import termios
            if os.isatty(self.input_fd):
                self._saved_modes = termios.tcgetattr(self.input_fd)
                modes = termios.tcgetattr(self.input_fd)
                modes[3] &= ~(termios.ECHO | termios.ICANON)  # ISIG stays: Ctrl-C is still SIGINT
                termios.tcsetattr(self.input_fd, termios.TCSANOW, modes)
        except (ImportError, OSError):
            self._saved_modes = None
        self._entered = True
        self.write(ENTER_SCREEN)

    def restore(self) -> None:
        if not self._entered:
            return
        self._entered = False
        try:
            self.write(LEAVE_SCREEN)
        except OSError:
            pass
        if self._saved_modes is not None:
            import termios
            try:
                termios.tcsetattr(self.input_fd, termios.TCSADRAIN, self._saved_modes)
            except OSError:
                pass

    def size(self) -> tuple[int, int]:
        size = shutil.get_terminal_size()
        return size.columns, size.lines

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            written = os.write(self.output_fd, data)
            data = data[written:]


class _NoticeHandler(logging.Handler):
    """Log records go to the view's notice line, not over the screen."""

    def __init__(self, view: WatchView) -> None:
        super().__init__(logging.WARNING)
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.view.notice = clean(record.getMessage())
        except Exception:  # a logging handler must never raise
            pass


def _main_terminal(options: WatchOptions) -> Ending:
    view = WatchView(options.url)
    root = logging.getLogger()
    root.handlers[:] = [_NoticeHandler(view)]
    root.setLevel(logging.WARNING)
    logging.getLogger("trio-websocket").setLevel(logging.ERROR)
    terminal = Terminal(sys.stdout.fileno(), sys.stdin.fileno())
    ending = Ending()
    try:
        terminal.enter()
        trio.run(_run_terminal, options, view, terminal, ending)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the restore
        terminal.restore()
    return ending


async def _run_terminal(options: WatchOptions, view: WatchView, terminal: Terminal, ending: Ending) -> None:
    client = options.client()
    client.on("*", view.apply)
    client.on("state", view.on_state)
    client.on("resync", view.on_resync)
    client.on("gap", view.on_gap)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope, view)
        nursery.start_soon(_redraw, view, terminal, "NO_COLOR" not in os.environ)
        nursery.start_soon(_run_client, client, nursery.cancel_scope, ending)


async def _redraw(view: WatchView, terminal: Terminal, color: bool) -> None:
    """Draw at most every FRAME_INTERVAL seconds, and only what changed since the last frame."""
    last_frame, last_size = None, None
    while True:
        size = terminal.size()
        if size != last_size or view.resized:
            view.resized, last_size, last_frame = False, size, None
            await trio.to_thread.run_sync(terminal.write, CLEAR_SCREEN)
        frame = paint(render(view, size[0], size[1], trio.current_time()), color)
        if frame != last_frame:
            # In a thread: a slow terminal (ssh) must not stall the connection.
            await trio.to_thread.run_sync(terminal.write, frame)
            last_frame = frame
        await trio.sleep(FRAME_INTERVAL)
