"""The console script as a user runs it: start-up, bad values, signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import trio
import trio_websocket

from conftest import ROOT, spawn_daemon


def run_cli(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-m", "osintd", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, complaint", [
    (["--port", "99999"], "out of range"),
    (["--port", "http"], "is not a port number"),
    (["--demo-rate", "0"], "out of range"),
    (["--demo-rate", "fast"], "is not events per second"),
    (["--heartbeat-interval", "-1"], "out of range"),
    (["--client-queue", "1"], "out of range"),
    (["--max-clients", "0"], "out of range"),
    (["--allowed-origin", "evil.example"], "is not an origin"),
    (["--log-level", "loud"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_value_is_one_line_and_exit_2(args, complaint):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("osintd: error:") and complaint in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_demo_mode_env_is_exit_2():
    result = run_cli(env={"DEMO_MODE": "perhaps"})
    assert result.returncode == 2 and "DEMO_MODE" in result.stderr and len(result.stderr.splitlines()) == 1


def test_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port), timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"osintd: error: cannot serve on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_help_lists_the_flags():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--demo", "--demo-rate", "--demo-seed", "--heartbeat-interval",
                 "--metrics-interval", "--client-queue", "--max-clients", "--allowed-origin", "--log-level"):
        assert flag in result.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_console_script_serves_then_stops_with_1001_and_exit_0(tmp_path, sig):
    started = time.monotonic()
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-seed", "1", "--demo-rate", "50")
    startup = time.monotonic() - started
    try:
        async with trio_websocket.open_websocket_url(daemon.url) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "connection"
            with trio.fail_after(10):
                while json.loads(await ws.get_message())["type"] != "new_event":
                    pass
            daemon.process.send_signal(sig)
            sent = time.monotonic()
            with trio.fail_after(5):
                try:
                    while True:
                        await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    reason = closed.reason
        status = await trio.to_thread.run_sync(daemon.process.wait, 10)
        elapsed = time.monotonic() - sent
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
    assert (reason.code, reason.reason) == (1001, "server shutting down")
    assert status == 0 and elapsed < 5, daemon.log()
    assert "Traceback" not in daemon.log()
    print(f"start-up to serving: {startup:.2f}s (includes the Python interpreter)")


def test_demo_mode_env_starts_the_demo(tmp_path):
    daemon = spawn_daemon(tmp_path, env={"DEMO_MODE": "true"})
    try:
        assert "source: demo" in daemon.log()
    finally:
        assert daemon.stop() == 0
