"""Delivery as people meet it: real daemons, real sockets, clients reading at Python speed.

* A burst (GitHub's first poll round after an outage: 300 new events for each
  of 30 repositories) reaches every client of the ``websockets`` library that
  parses every message: none dropped, every event once, ``seq`` consecutive.
* Clients connected while the demo starts are not flooded by its warm-up
  history (backfill is not news) and none is dropped.
* A stalled client that reads again after being dropped finds its 1013 Close.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time

import trio

import wsraw
from conftest import ROOT, ScriptedSource, make_settings, spawn_daemon, start_app
from fakegithub import FakeGitHub, events_api_item

REPOS = [f"burst-org/repo{n:02d}" for n in range(30)]
PER_REPO = 300
CLIENTS = 10


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _push(n: int, repo: str, at: str) -> dict:
    # A distinct head SHA per push: each is a different activity, never merged with another.
    return events_api_item(n, repo, kind="PushEvent", at=at)


async def _start_clients(url: str, expect: int, *extra: str) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "tests" / "python_clients.py"), url, "--clients", str(CLIENTS),
         "--expect", str(expect), *extra], stdout=subprocess.PIPE, cwd=ROOT)


async def _lines(process: trio.Process, count: int, timeout: float) -> list[str]:
    """The next ``count`` lines the process prints (within ``timeout`` seconds of real time)."""
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(timeout):
        while buffer.count(b"\n") < count:
            chunk = await process.stdout.receive_some(65536)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode().splitlines()


async def test_a_9000_event_burst_reaches_every_python_client_whole(nursery, tmp_path):
    fake = FakeGitHub(time.time, poll_interval=1, limit=1_000_000)
    await nursery.start(fake.serve)
    numbers = iter(range(1, 10**9))
    early = _iso(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30))
    for repo in REPOS:  # what the first poll finds: backfill, scored but not broadcast
        fake.add_events(f"/repos/{repo}/events", *(_push(next(numbers), repo, early) for _ in range(3)))
    args = [arg for repo in REPOS for arg in ("--repo", repo)]
    daemon = spawn_daemon(tmp_path, *args, "--github-api-url", fake.url, "--heartbeat-interval", "3600")
    clients = None
    try:
        with trio.fail_after(30):
            while len({r.path for r in fake.requests if r.status == 200}) < len(REPOS):
                await trio.sleep(0.1)
        clients = await _start_clients(daemon.url, PER_REPO * len(REPOS), "--idle", "30", "--stop-after", "150")
        assert await _lines(clients, 1, 30) == ["ready"]
        now = _iso(dt.datetime.now(dt.timezone.utc))
        for repo in REPOS:  # the next poll round brings 300 new events for each repository at once
            fake.add_events(f"/repos/{repo}/events", *(_push(next(numbers), repo, now) for _ in range(PER_REPO)))
        results = [json.loads(line) for line in await _lines(clients, CLIENTS, 170)]
    finally:
        if clients is not None and clients.returncode is None:
            clients.kill()
        daemon.stop()
    log = daemon.log()
    assert len(results) == CLIENTS, log[-2000:]
    for result in results:
        assert result["close_code"] is None, (result, log[-2000:])  # nobody was closed
        assert result["new_events"] == result["distinct"] == PER_REPO * len(REPOS), result
        assert result["consecutive"], result
    assert "slow consumer" not in log


async def test_clients_connected_as_the_demo_starts_are_neither_flooded_nor_dropped(nursery, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/ws/live-updates"
    clients = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "tests" / "python_clients.py"), url, "--clients", str(CLIENTS),
         "--expect", "100000", "--idle", "30", "--stop-after", "6", "--retry-connect"],
        stdout=subprocess.PIPE, cwd=ROOT)
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-seed", "3", "--port", str(port))
    try:
        lines = await _lines(clients, CLIENTS + 1, 60)
    finally:
        if clients.returncode is None:
            clients.kill()
        daemon.stop()
    results = [json.loads(line) for line in lines[1:]]
    assert len(results) == CLIENTS
    for result in results:
        assert result["close_code"] is None, result  # none dropped
        # About 6 s of the demo's 4 events a second, not its 1,500-event warm-up history.
        assert 0 < result["new_events"] < 200, result
        assert result["consecutive"], result
    assert "slow consumer" not in daemon.log()


async def test_a_stalled_client_that_reads_again_after_its_drop_gets_1013(autojump_clock):
    """Dropped for reading nothing (its socket took nothing for the stall limit), it
    starts reading a second later: what was begun on the wire, then the Close."""
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(slow_client_timeout=3.0), source=source)
        stalled = await wsraw.open_raw(app.port, receive_buffer=4096)
        for _ in range(600):  # 2 KB events, 20 every 0.1 s, until it is dropped
            await source.emit(*(source.event("org/a", title="x" * 2000) for _ in range(20)))
            await trio.sleep(0.1)
            if app.hub.stats.slow_consumers_dropped:
                break
        assert app.hub.stats.slow_consumers_dropped == 1
        await trio.sleep(1.0)
        with trio.fail_after(30):
            data = await wsraw.read_all(stalled)
        nursery.cancel_scope.cancel()
    assert wsraw.close_code(data) == 1013 and data.endswith(b"slow consumer")


async def test_a_stalled_client_that_reads_again_during_shutdown_gets_1001(autojump_clock):
    """The daemon stops while a client is stalled mid-frame: its write stops at the end of
    the frame on the wire, then 1001 follows, once the client reads again."""
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(), source=source)
        stalled = await wsraw.open_raw(app.port, receive_buffer=4096)
        for _ in range(20):  # enough to fill its socket's buffers: a write is waiting
            await source.emit(*(source.event("org/a", title="x" * 2000) for _ in range(20)))
            await trio.sleep(0.1)
        assert app.hub.stats.slow_consumers_dropped == 0
        nursery.start_soon(app.shutdown)
        await trio.sleep(1.0)
        with trio.fail_after(30):
            data = await wsraw.read_all(stalled)
    assert wsraw.close_code(data) == 1001 and data.endswith(b"server shutting down")
