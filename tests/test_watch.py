"""``osintd watch``: the live view under a real pseudo-terminal, ``--json`` lines,
bad flags, and the screen layout at several terminal sizes.

Subprocesses (the daemon and ``osintd watch``) are ended by their PIDs in ``finally``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from typing import Callable

import pytest

from conftest import ROOT, spawn_daemon
from osintd import watch
from osintd.client import ConnectionState, StateChange
from osintd.watch import (
    CLEAR_LINE_REST, CLEAR_SCREEN_REST, HOME, LEAVE_SCREEN, WatchView, display_width, paint, render,
)

TRENDS = "🔥 HOT|📈 ACTIVE|📊 STABLE|📉 COOLING|💤 QUIET"
BOARD_ROW = re.compile(rf"^\s*(\d+) (.) (\S+/\S+)\s+(\d+\.\d)\s+({TRENDS})\s+(ACCELERATING|STEADY|DECELERATING)")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env() -> dict[str, str]:
    # As a user's shell would have it: no size override, and stdout buffered (so flushing is on us).
    env = {key: value for key, value in os.environ.items()
           if key not in ("COLUMNS", "LINES", "NO_COLOR", "PYTHONUNBUFFERED")}
    env["TERM"] = "xterm-256color"
    return env


def _kill(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


class PtyWatch:
    """``osintd watch`` with a pseudo-terminal as its controlling terminal, as over ssh."""

    def __init__(self, *args: str, columns: int = 110, rows: int = 32) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.initial_modes = termios.tcgetattr(slave)

        def own_terminal() -> None:  # so that typing Ctrl-C on it sends SIGINT, as in a shell
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen([sys.executable, "-m", "osintd", "watch", *args], stdin=slave,
                                        stdout=slave, stderr=slave, cwd=ROOT, env=_env(), preexec_fn=own_terminal)
        os.close(slave)
        self.master = master
        self.output = b""

    def _pump(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every copy of the terminal's other side is closed
            return False
        self.output += data
        return bool(data)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def screen(self) -> list[str]:
        """The last complete frame, as plain text lines."""
        frames = [frame for frame in self.text().split(HOME) if CLEAR_SCREEN_REST in frame]
        if not frames:
            return []
        return [ESCAPE.sub("", line).rstrip("\r") for line in frames[-1].split("\n")]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.screen()):
                return self.screen()
            if not self._pump(0.05):
                break
        raise AssertionError(f"no {what} on screen within {timeout} s:\n" + "\n".join(self.screen()))

    def finish(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._pump(0.05)
        while self._pump(0.05) and select.select([self.master], [], [], 0)[0]:
            pass
        return self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        _kill(self.process)
        os.close(self.master)


def board_rows(screen: list[str]) -> list[re.Match]:
    return [match for line in screen if (match := BOARD_ROW.match(line))]


def test_the_live_view_shows_the_leaderboard_survives_a_restart_and_exits_0_on_ctrl_c(tmp_path):
    args = ("--demo", "--demo-seed", "7", "--demo-rate", "30", "--heartbeat-interval", "1",
            "--metrics-interval", "1")
    daemon, restarted, view = spawn_daemon(tmp_path, *args), None, None
    try:
        view = PtyWatch("--url", daemon.url, columns=110, rows=32)
        screen = view.wait_for(lambda s: len(board_rows(s)) >= 8 and "● connected" in s[0], 15, "leaderboard")
        rows = board_rows(screen)
        assert [int(row.group(1)) for row in rows] == list(range(1, len(rows) + 1))
        for row in rows:  # real repositories the server tracks, each with a trend badge
            with urllib.request.urlopen(f"{daemon.http}/api/v1/repos/{row.group(3)}", timeout=5) as answer:
                assert answer.status == 200
        assert "RECENT EVENTS" in screen and any(re.match(r"\d\d:\d\d:\d\d  \w", line) for line in screen)
        assert all(display_width(line) < 110 for line in screen) and len(screen) <= 32
        assert not termios.tcgetattr(view.master)[3] & termios.ECHO  # typing does not garble the view

        daemon.stop()
        view.wait_for(lambda s: s and "reconnecting" in s[0] and "(not live)" in "\n".join(s), 10, "reconnecting")
        restarted = spawn_daemon(tmp_path, *args, "--port", str(daemon.port))
        view.wait_for(lambda s: s and "● connected" in s[0] and len(board_rows(s)) >= 5, 15, "live data again")

        os.write(view.master, b"\x03")  # Ctrl-C
        assert view.finish() == 0
        text = view.text()
        assert "Traceback" not in text
        assert text.rstrip("\r\n").endswith(LEAVE_SCREEN)  # cursor shown, normal screen back
        modes = termios.tcgetattr(view.master)
        assert modes[3] & (termios.ECHO | termios.ICANON) == view.initial_modes[3] & (termios.ECHO | termios.ICANON)
    finally:
        if view is not None:
            view.close()
        _kill(daemon.process)
        if restarted is not None:
            _kill(restarted.process)


def _read_lines(process: subprocess.Popen, enough: Callable[[list[str]], bool], timeout: float) -> list[str]:
    buffer, lines = b"", []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not enough(lines):
        ready, _, _ = select.select([process.stdout], [], [], 0.05)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode("utf-8") for line in complete]
    return lines


def _start_json(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "osintd", "watch", "--json", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=_env())


def test_json_prints_one_parseable_message_per_line_and_filters_apply(daemon):
    everything = filtered = rare = None
    try:
        everything = _start_json("--url", daemon.url)
        filtered = _start_json("--url", daemon.url, "--types", "new_event", "--repos", "openai/*")
        rare = _start_json("--url", daemon.url + "?snapshot=0", "--types", "system_status")
        all_lines = _read_lines(everything, lambda lines: len(lines) >= 40, 15)
        few_lines = _read_lines(filtered, lambda lines: len(lines) >= 5, 15)
        # Each line is flushed as it is printed: a lone short line arrives while nothing else does.
        assert [json.loads(line)["type"] for line in _read_lines(rare, lambda lines: len(lines) >= 1, 10)] == [
            "connection"]
        for process in (everything, filtered, rare):
            process.send_signal(signal.SIGINT)
        outputs = [process.communicate(timeout=10) for process in (everything, filtered, rare)]
        assert [everything.returncode, filtered.returncode, rare.returncode] == [0, 0, 0]
    finally:
        for process in (everything, filtered, rare):
            _kill(process)
    all_lines += outputs[0][0].decode().splitlines()
    few_lines += outputs[1][0].decode().splitlines()
    for stderr in (output[1] for output in outputs):
        assert b"Traceback" not in stderr
    assert len(all_lines) >= 40
    messages = [json.loads(line) for line in all_lines]  # every line is one JSON object
    assert all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in messages)
    assert [m["type"] for m in messages[:2]] == ["connection", "snapshot"]
    assert {"new_event", "heartbeat"} <= {m["type"] for m in messages}
    assert not any("\x1b" in line for line in all_lines)
    assert all(line == json.dumps(m, ensure_ascii=False, separators=(",", ":")) for line, m in zip(all_lines, messages))

    chosen = [json.loads(line) for line in few_lines]
    assert [m["type"] for m in chosen[:2]] == ["connection", "snapshot"] and len(chosen) >= 5
    assert all(m["type"] == "new_event" and m["repo_full_name"].startswith("openai/") for m in chosen[2:])


def test_json_into_a_pipe_that_closes_ends_quietly_with_0(daemon):
    writer = reader = None
    try:
        writer = _start_json("--url", daemon.url)
        reader = subprocess.Popen(["head", "-n", "3"], stdin=writer.stdout, stdout=subprocess.PIPE)
        writer.stdout.close()  # head holds the only reading end now
        head_output = reader.communicate(timeout=10)[0]
        assert writer.wait(timeout=10) == 0
        assert writer.stderr.read() == b""
    finally:
        _kill(writer)
        _kill(reader)
    assert len(head_output.decode().splitlines()) == 3


@pytest.mark.parametrize("argv, complaint", [
    (["--types", "new_events"], "unknown types new_events"),
    (["--types", ","], "at least one type"),
    (["--repos", " , "], "at least one"),
    (["--url", "http://127.0.0.1:8000/ws/live-updates"], "is not a ws:// or wss:// URL"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ([], "not a terminal; use --json"),  # pytest's captured stdout is no terminal
])
def test_bad_flags_are_one_line_and_exit_2(argv, complaint, capsys):
    assert watch.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("osintd watch: error: ") and complaint in lines[0], captured.err
    assert captured.out == ""


def test_the_console_script_dispatches_watch_flags():
    result = subprocess.run([sys.executable, "-m", "osintd", "watch", "--types", "bogus"], capture_output=True,
                            text=True, timeout=20, cwd=ROOT, env=_env())
    assert result.returncode == 2
    assert result.stderr.startswith("osintd watch: error: ") and len(result.stderr.splitlines()) == 1


def test_a_refusing_server_is_exit_1_with_one_line(daemon):
    result = subprocess.run([sys.executable, "-m", "osintd", "watch", "--json", "--url",
                             f"ws://127.0.0.1:{daemon.port}/ws/elsewhere"],
                            capture_output=True, text=True, timeout=20, cwd=ROOT, env=_env())
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("osintd watch: error: server refused the connection: 404")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ the screen


def _snapshot(rows: list[tuple[str, str]]) -> dict:
    return {"type": "snapshot", "epoch": "E", "seq": 7, "timestamp": "2026-01-15T10:00:00.000000+00:00",
            "top": [{"rank": rank, "repo_full_name": repo, "activity_score": 100.0 - rank, "trend_status": trend,
                     "momentum": "STEADY", "velocity": 1.0, "events_in_window": 3, "summary": "s"}
                    for rank, (repo, trend) in enumerate(rows, start=1)],
            "metrics": {"total_events": 12345, "active_repositories": 40, "total_queries": 3,
                        "websocket_connections": 2, "changes": {}},
            "system": {"status": "healthy", "components": {}, "message": "ok", "severity": "info"}}


def _sample_view() -> WatchView:
    view = WatchView("ws://127.0.0.1:8000/ws/live-updates")
    trends = TRENDS.split("|")
    repos = [(f"org{i}/repo-{i}", trends[i % 5]) for i in range(1, 10)]
    repos.append(("a-very-long-organisation-name/an-even-longer-repository-name-that-goes-on", "🔥 HOT"))
    view.apply(_snapshot(repos))
    for number in range(30):
        view.apply({"type": "new_event", "seq": 8 + number, "timestamp": "2026-01-15T10:00:01.000000+00:00",
                    "event_id": f"e{number}", "repo_full_name": "org1/repo-1", "event_type": "pull_request",
                    "title": f"Evil \x1b[2J\x07 title 🚀 number {number} " + "x" * 80, "author": "mallory",
                    "url": "https://github.com/org1/repo-1/pull/1", "data": {"action": "merged"}})
    return view


@pytest.mark.parametrize("columns, rows", [(120, 40), (80, 24), (50, 14), (20, 6)])
async def test_the_screen_fits_any_terminal_and_carries_no_control_characters(columns, rows):
    view = _sample_view()
    view.on_state(StateChange(ConnectionState.CONNECTED))
    lines = render(view, columns, rows, now=0.0)
    assert len(lines) <= rows
    for line in lines:
        assert display_width(line.text) <= columns - 1, (line.text, display_width(line.text))
        assert not any(ord(ch) < 32 or ch == "\x7f" for ch in line.text), repr(line.text)
    text = "\n".join(line.text for line in lines)
    assert "● connected" in text
    if rows >= 24:
        assert len(board_rows(text.splitlines())) == 10 and "Evil" in text and "events 12,345" in text
    framed = paint(lines, color=True)
    assert framed.startswith(HOME) and framed.endswith(CLEAR_SCREEN_REST)
    assert framed.count(CLEAR_LINE_REST) == len(lines) and "\x1b[2J" not in framed  # no full clear: no flicker


async def test_reconnecting_is_shown_and_the_numbers_are_marked_not_live():
    view = _sample_view()
    view.on_state(StateChange(ConnectionState.RECONNECTING, failed_attempts=2, retry_in=3.0, reason="closed"))
    lines = [line.text for line in render(view, 100, 30, now=view.retry_at - 3.0)]
    assert "◌ reconnecting in 3 s, attempt 3…" in lines[0]
    assert "(not live)" in lines[3]


async def test_ranking_trend_and_summary_messages_keep_the_board_current():
    view = WatchView("ws://x/ws/live-updates")
    view.apply(_snapshot([("a/one", "📈 ACTIVE"), ("b/two", "📊 STABLE")]))
    view.apply({"type": "trend_change", "seq": 8, "repo_full_name": "c/three", "old_status": "💤 QUIET",
                "new_status": "🔥 HOT", "momentum": "ACCELERATING", "velocity": 9.0, "activity_score": 150.0})
    for change in (("c/three", 11, 1, "new"), ("a/one", 1, 2, "down"), ("b/two", 2, 11, "dropped")):
        repo, old, new, kind = change
        view.apply({"type": "ranking_change", "seq": 9, "repo_full_name": repo, "old_rank": old, "new_rank": new,
                    "activity_score": 150.0 if repo == "c/three" else 90.0, "change": kind})
    view.apply({"type": "summary_update", "seq": 12, "repo_full_name": "a/one", "summary": "busy",
                "activity_score": 91.5, "trend_status": "📉 COOLING", "momentum": "DECELERATING",
                "events_in_window": 4})
    rows = sorted(view.board.values(), key=lambda row: row.rank)
    assert [(row.rank, row.repo, row.trend, row.momentum, row.score, row.last_move) for row in rows] == [
        (1, "c/three", "🔥 HOT", "ACCELERATING", 150.0, "new"),
        (2, "a/one", "📉 COOLING", "DECELERATING", 91.5, "down"),
    ]
    screen = [line.text for line in render(view, 100, 30, now=rows[0].moved_at + 1)]
    assert any(line.startswith(" 1 ★ c/three") for line in screen)
    assert any(line.startswith(" 2 ▼ a/one") for line in screen)
