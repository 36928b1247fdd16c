"""The WebSocket guide's own example clients, run as printed against ``osintd --demo``.

Each client lives in ``tests/guide_clients/`` byte-identical to its code block in
the guide (``test_committed_snippets_are_the_guides_code_blocks`` checks that when
the guide is at hand); a test copies it to ``tmp_path`` with only the URL
``ws://localhost:8000/ws/live-updates`` replaced by the daemon's, and runs the copy
as a subprocess (``sys.executable`` for Python, ``node`` for JavaScript) for a few
seconds, then ends that process by its PID.

What a client printed is checked against what the server really sent: an
*observer* (a plain ``websockets`` client in a thread, connected before the guide
client) records every broadcast.  ``/ws/stats`` gives the server's ``seq`` when the
guide client is first counted as connected and again at the end of the run, so
the client must have received every broadcast in between; the lines it printed
must be exactly the lines the guide's code makes of a run of consecutive
broadcasts, and that run must cover the window.  Per-client messages
(``connection``, ``snapshot``, ``heartbeat``, ``pong``) are checked separately.

Two snippets carry their own bugs, and the tests expect exactly those failures
(``design.md``, "Protocol additions"): the advanced Python client awaits a
lambda's ``None``, and the troubleshooting one-liner hands ``asyncio.run`` an
object that is not a coroutine, so it never connects.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import pytest
from websockets.sync.client import connect

from conftest import ROOT, Daemon, check_message, missing, spawn_daemon
from osintd.models import EventType

CLIENTS = ROOT / "tests" / "guide_clients"
NODE_DIR = ROOT / "tests" / "node"
GUIDE = Path(os.environ.get("OSINTD_WEBSOCKET_GUIDE", "/work/shared/seed/websocket-guide.md"))
GUIDE_URL = "ws://localhost:8000/ws/live-updates"
EVENT_TYPES = {str(kind) for kind in EventType}

WINDOW = 2.0  # seconds a guide client runs while the server's broadcasts are recorded
GRACE = 0.8   # then this long for it to print what was sent inside the window


# ------------------------------------------------------------------- the snippets

#: file in tests/guide_clients -> the guide heading whose first code block it is
SNIPPETS = {
    "python_websockets.py": "Python with websockets",
    "python_advanced.py": "Python with WebSocket Library (Advanced)",
    "live_updates_client.js": "JavaScript/TypeScript (Browser)",
    "recommended_handler_structure.py": "Recommended Handler Structure",
    "example1_simple_event_monitor.py": "Example 1: Simple Event Monitor",
    "example2_live_dashboard_counter.py": "Example 2: Live Dashboard Counter",
    "example3_ranking_change_alert.py": "Example 3: Ranking Change Alert",
}
ONE_LINER = "troubleshooting_one_liner.sh"


def _guide_code_block(guide: str, heading: str) -> str:
    start = guide.index(f"### **{heading}**\n")
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(guide, start)
    assert match, heading
    return match.group(1)


def test_committed_snippets_are_the_guides_code_blocks():
    if not GUIDE.exists():
        pytest.skip(f"the guide is not at {GUIDE} (set OSINTD_WEBSOCKET_GUIDE)")
    guide = GUIDE.read_bytes().decode("utf-8")
    for name, heading in SNIPPETS.items():
        assert (CLIENTS / name).read_bytes() == _guide_code_block(guide, heading).encode("utf-8"), name
    # The one-liner is the last line of the first code block under "Connection Refused".
    one_liners = re.findall(r"^python -c .*\n", _guide_code_block(guide, "Connection Refused"), re.M)
    assert len(one_liners) == 1
    assert (CLIENTS / ONE_LINER).read_bytes() == one_liners[0].encode("utf-8")


def guide_copy(name: str, url: str, tmp_path: Path) -> Path:
    """The committed snippet, copied to ``tmp_path`` with only the guide's URL replaced."""
    text = (CLIENTS / name).read_bytes()
    assert text.count(GUIDE_URL.encode()) == 1, f"{name} should name {GUIDE_URL} exactly once"
    copy = tmp_path / name
    copy.write_bytes(text.replace(GUIDE_URL.encode(), url.encode()))
    return copy


# ------------------------------------------------------------------- processes


class Client:
    """A guide client running as a subprocess, its output going to files."""

    def __init__(self, argv: list[str], tmp_path: Path, name: str) -> None:
        self.stdout_path = tmp_path / f"{name}.stdout"
        self.stderr_path = tmp_path / f"{name}.stderr"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=tmp_path, env=env)

    def stdout(self) -> str:
        # Bytes, not read_text(): Example 2's "\r" must not become "\n".
        return self.stdout_path.read_bytes().decode("utf-8")

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", errors="replace")

    def lines(self) -> list[str]:
        text = self.stdout()
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int | None:
        """End this client (by its PID); the exit code if it had already ended by itself, else None."""
        code = self.process.poll()
        if code is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return code

    def describe(self) -> str:
        return f"stdout:\n{self.stdout()[-3000:]}\nstderr:\n{self.stderr()[-3000:]}"


class Observer:
    """A client of our own that records every message the server sends it."""

    def __init__(self, url: str) -> None:
        # No flow control: this reader must never be the slow one.
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, max_queue=None, open_timeout=10))
        self.messages: list[dict] = []
        self._checked = 0  # messages checked against docs/asyncapi.json so far
        self.ended_by: BaseException | None = None
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()
        wait_for(lambda: self.messages, 10, "the observer's connection message")
        assert self.messages[0]["type"] == "connection"
        self.client_id = self.messages[0]["client_id"]

    def _receive(self) -> None:
        try:
            for raw in self.ws:
                self.messages.append(json.loads(raw))
        except BaseException as exc:  # noqa: BLE001 - kept for the assertion message
            self.ended_by = exc

    def broadcasts(self, *types: str) -> list[dict]:
        assert self.ended_by is None, f"the observer lost its connection: {self.ended_by!r}"
        messages = list(self.messages)
        for message in messages[self._checked:]:  # here, not in the receiving thread: it must keep up
            check_message(message)
        self._checked = len(messages)
        return [m for m in messages if m["type"] in types]

    def close(self) -> None:
        self._stack.close()
        self._thread.join(5)


class Processes:
    """Everything a test started; whatever is still running at the end is ended by its PID."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clients: list[Client] = []
        self.observers: list[Observer] = []
        self.daemons: list[Daemon] = []

    def python(self, script: Path, *args: object) -> Client:
        return self._start([sys.executable, str(script), *map(str, args)], script.stem)

    def node(self, *args: object) -> Client:
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
            missing("needs node and the ws package: cd tests/node && npm ci")
        return self._start([node, *map(str, args)], "node")

    def _start(self, argv: list[str], name: str) -> Client:
        client = Client(argv, self.tmp_path, f"{name}-{len(self.clients)}")
        self.clients.append(client)
        return client

    def observe(self, url: str) -> Observer:
        observer = Observer(url)
        self.observers.append(observer)
        return observer

    def daemon(self, *args: str) -> Daemon:
        started = spawn_daemon(self.tmp_path, *args)
        self.daemons.append(started)
        return started

    def cleanup(self) -> None:
        for client in self.clients:
            client.stop()
        for observer in self.observers:
            observer.close()
        for started in self.daemons:
            if started.process.poll() is None:
                started.process.kill()
                started.process.wait()


@pytest.fixture
def procs(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.cleanup()


# ------------------------------------------------------------------- helpers


def wait_for(predicate: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def ws_stats(daemon: Daemon) -> dict:
    with urllib.request.urlopen(f"{daemon.http}/ws/stats", timeout=5) as response:
        return json.load(response)


def wait_live(daemon: Daemon) -> None:
    """Wait until the demo's start-up history has gone out.

    The demo source first emits a stretch of past events as fast as it can, and
    osintd broadcasts each one as a ``new_event``; a client that connects during
    that burst is sent well over a thousand messages at once.  These tests are about
    the guide's clients, so they start them once the stream runs at its live rate
    (the burst goes at thousands of messages a second, the live demo at 20).
    """
    def settled():
        before = ws_stats(daemon)["seq"]
        time.sleep(0.15)
        after = ws_stats(daemon)["seq"]
        return before > 0 and after - before < 60
    wait_for(settled, 10, "the demo's start-up history to be sent")


def wait_connected(daemon: Daemon, client: Client, count: int = 2) -> dict:
    """``/ws/stats`` from the moment the server counts ``count`` clients (observer + guide client)."""
    def counted():
        if not client.running():
            pytest.fail(f"the guide client ended early (exit {client.process.returncode})\n"
                                 f"{client.describe()}")
        stats = ws_stats(daemon)
        return stats if stats["connections"] >= count else None
    return wait_for(counted, 10, "the guide client to connect")


def run_window(daemon: Daemon, client: Client, seconds: float = WINDOW) -> tuple[dict, dict, int | None]:
    """Let a connected client run; returns (stats at start, stats at end, its exit code if it ended)."""
    start = wait_connected(daemon, client)
    time.sleep(seconds)
    end = ws_stats(daemon)
    assert end["connections"] == start["connections"], f"the guide client disconnected\n{client.describe()}"
    time.sleep(GRACE)
    return start, end, client.stop()


Rendered = list[tuple[int, str]]


def render(messages: Iterable[dict], lines_for: Callable[[dict], list[str]]) -> Rendered:
    return [(m["seq"], line) for m in messages for line in lines_for(m)]


def assert_consecutive_run(printed: list[str], rendered: Rendered, first_seq: int, last_seq: int) -> None:
    """``printed`` is exactly ``rendered[i:i+len(printed)]`` for some ``i``, covering every
    line of a broadcast with ``first_seq < seq <= last_seq``."""
    lines = [line for _, line in rendered]
    inside = [i for i, (seq, _) in enumerate(rendered) if first_seq < seq <= last_seq]
    n = len(printed)
    if inside:
        starts = range(max(0, inside[-1] - n + 1), inside[0] + 1)
    else:
        starts = range(0, len(lines) - n + 1)
    if any(lines[i:i + n] == printed for i in starts):
        return
    expected = [lines[i] for i in inside]
    missing = [line for line in expected if line not in printed]
    unexpected = [line for line in printed if line not in lines]
    pytest.fail(f"the client's lines are not the server's broadcasts of seq {first_seq + 1}..{last_seq}, "
                f"in order: printed {n} lines, {len(expected)} expected inside the window; "
                f"missing {missing[:5]}, never sent {unexpected[:5]}; printed starts {printed[:5]}, "
                f"window starts {expected[:5]}")


# ----------------------------------------------------------- "Python with websockets"


def python_websockets_lines(m: dict) -> list[str]:
    if m["type"] == "new_event":
        return [f"📨 New {m['event_type']}: {m['title']}"]
    if m["type"] == "ranking_change":
        return [f"📊 {m['repo_full_name']}: {m['old_rank']} → {m['new_rank']}"]
    if m["type"] == "summary_update":
        return [f"📝 Summary updated: {m['repo_full_name']}"]
    return []


def test_python_websockets_client(daemon, tmp_path, procs):
    wait_live(daemon)
    observer = procs.observe(daemon.url)
    client = procs.python(guide_copy("python_websockets.py", daemon.url, tmp_path))
    start, end, code = run_window(daemon, client)

    assert code is None, f"the client ended by itself\n{client.describe()}"
    assert client.stderr() == ""
    lines = client.lines()
    assert lines[0] == "✅ Connected to live updates"
    match = re.fullmatch(r"Connected with ID: (client_\d+)", lines[1])
    assert match, lines[:3]
    server_ids = {c["client_id"] for c in start["clients"]} - {observer.client_id}
    assert match.group(1) in server_ids
    # --heartbeat-interval 1, and the client ran WINDOW + GRACE seconds
    assert lines.count("💓 Heartbeat") >= 2
    printed = [line for line in lines[2:] if line != "💓 Heartbeat"]
    assert sum(line.startswith("📨 New ") for line in printed) >= 10
    assert_consecutive_run(printed, render(observer.broadcasts("new_event", "ranking_change", "summary_update"),
                                           python_websockets_lines), start["seq"], end["seq"])


# ------------------------------------------------- "Python with WebSocket Library (Advanced)"


def test_python_advanced_client_awaits_the_lambdas_none(daemon, tmp_path, procs):
    """``await self.handlers[message_type](data)`` awaits what ``print`` returned: the first
    handled message is printed, then TypeError kills the receive task (nobody awaits it,
    so asyncio reports "Task exception was never retrieved"); ``connected`` stays True and
    ``main`` sleeps on forever, so the test ends it."""
    wait_live(daemon)
    observer = procs.observe(daemon.url)
    client = procs.python(guide_copy("python_advanced.py", daemon.url, tmp_path))
    start = wait_connected(daemon, client)
    wait_for(lambda: "Task exception was never retrieved" in client.stderr(), 10,
             f"the receive task's TypeError\n{client.describe()}")
    time.sleep(1.0)
    assert client.running(), "main() should loop on: client.connected never became False"
    assert ws_stats(daemon)["connections"] == 2, "the socket stays open; only the receiving task died"
    assert client.stop() is None

    lines = client.lines()
    assert lines[0] == "✅ Connected to live updates"
    assert len(lines) == 2, f"exactly one handler should have run before the task died: {lines}"
    handled = observer.broadcasts("new_event", "ranking_change")
    first_after_start = min(m["seq"] for m in handled if m["seq"] > start["seq"])
    renders = {("📨 " + m["title"]) if m["type"] == "new_event" else f"📊 Rank change: {m['repo_full_name']}"
               for m in handled if m["seq"] <= first_after_start}
    assert lines[1] in renders
    assert "❌ Connection closed" not in client.stdout()

    err = client.stderr()
    assert err.count("Task exception was never retrieved") == 1
    assert "coro=<LiveUpdatesClient._receive_messages() done" in err
    assert "    await self.handlers[message_type](data)\n" in err
    assert err.rstrip("\n").endswith("TypeError: object NoneType can't be used in 'await' expression")


# ----------------------------------------------------------- "Recommended Handler Structure"


HARNESS_STUBS = {"connection", "heartbeat", "summary_update", "trend_change", "metrics_update",
                 "system_status", "error", "pong"}


def handler_structure_lines(m: dict) -> list[str]:
    kind = m["type"]
    if kind == "new_event":
        return [f"📨 New {m['event_type']}: {m['title']}"]
    if kind == "ranking_change":
        emoji = "⬆️" if m["change"] == "up" else "⬇️"  # the guide's: anything but "up" is ⬇️
        return [f"{emoji} {m['repo_full_name']}: #{m['old_rank']} → #{m['new_rank']}"]
    if kind in HARNESS_STUBS:
        return [f"[harness] {kind}"]
    return [f"Unknown message type: {kind}"]


def test_recommended_handler_structure(daemon, tmp_path, procs):
    wait_live(daemon)
    record = tmp_path / "fed.jsonl"
    harness = procs.python(CLIENTS / "recommended_handler_structure_harness.py",
                           CLIENTS / "recommended_handler_structure.py", daemon.url, 2.5, record)
    try:
        code = harness.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the harness did not stop after 2.5 s\n{harness.describe()}")
    assert code == 0, harness.describe()
    assert harness.stderr() == ""

    fed = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    kinds = Counter(m["type"] for m in fed)
    assert fed[0]["type"] == "connection"
    assert kinds["connection"] == kinds["snapshot"] == kinds["pong"] == 1
    assert kinds["heartbeat"] >= 2 and kinds["metrics_update"] >= 1 and kinds["new_event"] >= 10
    assert harness.lines() == [line for m in fed for line in handler_structure_lines(m)]
    # osintd's snapshot is not in the guide's table: the snippet's own fallback prints it.
    assert "Unknown message type: snapshot" in harness.lines()
    assert "[harness] pong" in harness.lines()


# ------------------------------------------------------------------- Examples 1, 2, 3


def test_example1_simple_event_monitor(daemon, tmp_path, procs):
    wait_live(daemon)
    observer = procs.observe(daemon.url)
    client = procs.python(guide_copy("example1_simple_event_monitor.py", daemon.url, tmp_path))
    start, end, code = run_window(daemon, client)

    assert code is None, f"the client ended by itself\n{client.describe()}"
    assert client.stderr() == ""
    lines = client.lines()
    parsed = [re.fullmatch(r"📨 ([a-z_]+): (.+)", line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:5]
    kinds = {m.group(1) for m in parsed}
    assert kinds <= EVENT_TYPES
    assert len(lines) >= 10 and len(kinds) >= 3
    assert_consecutive_run(lines, render(observer.broadcasts("new_event"),
                                         lambda m: [f"📨 {m['event_type']}: {m['title']}"]),
                           start["seq"], end["seq"])


def dashboard_line(counter: Counter) -> str:
    return f"Commits: {counter['commit']} | PRs: {counter['pull_request']} | Issues: {counter['issue']}"


def test_example2_live_dashboard_counter(daemon, tmp_path, procs):
    wait_live(daemon)
    observer = procs.observe(daemon.url)
    client = procs.python(guide_copy("example2_live_dashboard_counter.py", daemon.url, tmp_path))
    start, end, code = run_window(daemon, client)

    assert code is None, f"the client ended by itself\n{client.describe()}"
    assert client.stderr() == ""
    out = client.stdout()
    assert "\n" not in out and out.startswith("\r"), out[:200]
    shown = out.split("\r")[1:]  # one rewrite of the counter line per new_event
    assert len(shown) >= 10
    assert all(re.fullmatch(r"Commits: \d+ \| PRs: \d+ \| Issues: \d+", line) for line in shown)
    last = re.findall(r"\d+", shown[-1])
    assert all(int(n) > 0 for n in last), shown[-1]

    # Replaying the server's new_event types from the client's first one must redraw the same lines.
    events = observer.broadcasts("new_event")
    inside = [i for i, m in enumerate(events) if start["seq"] < m["seq"] <= end["seq"]]
    assert inside
    n = len(shown)
    for first in range(max(0, inside[-1] - n + 1), inside[0] + 1):
        counter: Counter = Counter()
        redrawn = []
        for m in events[first:first + n]:
            counter[m["event_type"]] += 1
            redrawn.append(dashboard_line(counter))
        if redrawn == shown:
            break
    else:
        pytest.fail(f"no run of the server's new_events redraws the {n} counter lines; "
                    f"first {shown[:3]}, last {shown[-1]}")


def big_change_line(m: dict) -> list[str]:
    diff = abs(m["new_rank"] - m["old_rank"])
    return [f"🚨 BIG CHANGE: {m['repo_full_name']} moved {diff} positions!"] if diff >= 3 else []


def test_example3_ranking_change_alert(tmp_path, procs):
    """Example 3 prints only for moves of 3 or more positions.  The demo's bursts push a repository
    into the Top 10 within seconds; with scoreboards only every 2 s such a climb is announced as one
    ranking_change of several positions.  The test waits for the server to send one after the
    first scoreboard (whose entries are all "new"), then checks every alert the client printed
    against the server's messages."""
    daemon = procs.daemon("--demo", "--demo-seed", "4", "--demo-rate", "20", "--announce-interval", "2",
                          "--heartbeat-interval", "1")
    wait_live(daemon)
    observer = procs.observe(daemon.url)
    client = procs.python(guide_copy("example3_ranking_change_alert.py", daemon.url, tmp_path))
    start = wait_connected(daemon, client)

    def big_moves_after_the_first_scoreboard():
        changes = observer.broadcasts("ranking_change")
        first_board = min((m["timestamp"] for m in changes), default=None)
        return [m for m in changes if m["timestamp"] != first_board and m["seq"] > start["seq"]
                and big_change_line(m)]
    genuine = wait_for(big_moves_after_the_first_scoreboard, 15,
                       "a ranking_change of 3 or more positions from a later scoreboard")
    end = ws_stats(daemon)
    assert end["connections"] == 2, client.describe()
    time.sleep(GRACE)
    code = client.stop()

    assert code is None, f"the client ended by itself\n{client.describe()}"
    assert client.stderr() == ""
    lines = client.lines()
    assert big_change_line(genuine[0])[0] in lines
    assert_consecutive_run(lines, render(observer.broadcasts("ranking_change"), big_change_line),
                           start["seq"], end["seq"])


def test_first_scoreboard_enters_from_outside_the_top10(tmp_path, procs):
    # A low rate (no start-up burst) and a first scoreboard 2 s in, so the client sees it.
    daemon = procs.daemon("--demo", "--demo-seed", "7", "--demo-rate", "2", "--announce-interval", "2",
                          "--heartbeat-interval", "1")
    observer = procs.observe(daemon.url)
    client = procs.python(guide_copy("python_websockets.py", daemon.url, tmp_path))
    # Preconditions fail with pytest.fail, not AssertionError, so that the xfail cannot hide them.
    wait_connected(daemon, client)
    if observer.broadcasts("ranking_change"):
        pytest.fail("the client connected after the first scoreboard")
    first = wait_for(lambda: observer.broadcasts("ranking_change"), 10, "the first scoreboard")
    time.sleep(GRACE)
    # Read again: the first of the scoreboard's messages may have been all there was at first.
    first_board = [m for m in observer.broadcasts("ranking_change") if m["timestamp"] == first[0]["timestamp"]]
    if client.stop() is not None:
        pytest.fail(f"the client ended by itself\n{client.describe()}")
    printed = re.findall(r"^📊 (\S+): (\d+) → (\d+)$", client.stdout(), re.M)
    if len(printed) != len(first_board) or {m["change"] for m in first_board} != {"new"}:
        pytest.fail(f"expected the first scoreboard's {len(first_board)} 'new' entries, printed {printed}")
    for repo, old, new in printed:
        assert int(old) > 10 >= int(new), f"{repo} 'entered' the Top 10 from rank {old} to {new}"


# ------------------------------------------------------------------- troubleshooting one-liner


def test_troubleshooting_one_liner_never_connects(daemon, tmp_path):
    """``asyncio.run(websockets.connect(...))``: ``connect(...)`` returns a connect object, not a
    coroutine, so ``asyncio.run`` rejects it before any connection is attempted."""
    argv = shlex.split(guide_copy(ONE_LINER, daemon.url, tmp_path).read_text(encoding="utf-8"))
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    result = subprocess.run([sys.executable, "-c", argv[2]], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert re.fullmatch(r"ValueError: a coroutine was expected, got "
                        r"<websockets\.asyncio\.client\.connect object at 0x[0-9a-f]+>",
                        result.stderr.strip().splitlines()[-1]), result.stderr
    stats = ws_stats(daemon)
    assert stats["clients_connected_total"] == 0 and stats["connections"] == 0
    # The same counter does see a client that connects.
    with connect(daemon.url) as ws:
        assert json.loads(ws.recv())["type"] == "connection"
    assert ws_stats(daemon)["clients_connected_total"] == 1


# ------------------------------------------------------------------- JavaScript LiveUpdatesClient


def js_client_lines(m: dict) -> list[str]:
    if m["type"] == "new_event":
        return [f"📨 New {m['event_type']}: {m['title']}", f"🖥 addEventToFeed {m['event_id']}"]
    if m["type"] == "ranking_change":
        return [f"📊 {m['repo_full_name']}: {m['old_rank']} → {m['new_rank']}",
                f"🖥 updateRanking {m['repo_full_name']} #{m['new_rank']}"]
    if m["type"] == "summary_update":
        return [f"📝 Summary updated: {m['repo_full_name']}", f"🖥 refreshRepoCard {m['repo_full_name']}"]
    return []


@pytest.mark.node
def test_javascript_live_updates_client(daemon, tmp_path, procs):
    wait_live(daemon)
    observer = procs.observe(daemon.url)
    client = procs.node(CLIENTS / "live_updates_client_harness.js",
                        guide_copy("live_updates_client.js", daemon.url, tmp_path))
    start = wait_connected(daemon, client)
    time.sleep(WINDOW)
    end = ws_stats(daemon)
    assert end["connections"] == 2, client.describe()
    time.sleep(GRACE)

    # The server goes away: the client says so and schedules its first retry, 2000 ms.
    port = daemon.port
    assert daemon.stop() == 0
    wait_for(lambda: "Reconnecting in 2000ms..." in client.lines(), 5,
             f"the client to schedule a reconnect\n{client.describe()}")
    lines = client.lines()
    closed = lines.index("❌ Connection closed")
    assert lines[0] == "✅ Connected to live updates"
    assert lines[closed + 1:] == ["Reconnecting in 2000ms..."]
    printed = lines[1:closed]
    assert sum(line.startswith("📨 New ") for line in printed) >= 10
    assert_consecutive_run(printed, render(observer.broadcasts("new_event", "ranking_change", "summary_update"),
                                           js_client_lines), start["seq"], end["seq"])

    # A new daemon on the same port: the retry connects, and the backoff starts over.
    again = procs.daemon("--demo", "--demo-seed", "7", "--demo-rate", "20", "--port", str(port))
    wait_for(lambda: client.lines().count("✅ Connected to live updates") == 2, 8,
             f"the client to reconnect\n{client.describe()}")
    wait_for(lambda: any(line.startswith("📨 New ") for line in client.lines()[closed + 3:]), 5,
             "events after the reconnect")
    assert again.stop() == 0
    wait_for(lambda: client.lines().count("Reconnecting in 2000ms...") == 2, 5,
             f"the second disconnect\n{client.describe()}")
    assert client.stop() is None
    after = client.lines()[closed + 2:]
    assert after[0] == "✅ Connected to live updates"
    assert after[-2:] == ["❌ Connection closed", "Reconnecting in 2000ms..."]
