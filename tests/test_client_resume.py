"""The same resume, gap, de-duplication and epoch scenarios against all three clients:
``osintd.client`` (trio), ``osintd.aio`` (asyncio) and ``osintd/static/client.js`` (in
Node, with the ``ws`` package from tests/node).

Each scenario runs an in-process daemon on the real clock (the asyncio client lives in a
thread with its own event loop and Node in a subprocess, so trio's autojump clock cannot
drive them) with short timings, and drives the network with ``SteeredProxy`` and
``kill_connections`` from tests/test_client.py, whose autojump versions of these
scenarios remain the trio client's detailed tests.  A *driver* runs one client and feeds
everything it hands its handlers into a :class:`Recorder`, as Python records (Gap,
Resync, StateChange), so that every assertion is written once.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import threading
from typing import Any

import attrs
import pytest
import trio

from conftest import ROOT, ScriptedSource, make_settings, missing, start_app, ws_url
from osintd import aio
from osintd.client import (
    ClientSettings, ConnectionState, Gap, HandshakeRefused, LiveUpdatesClient, Resync, StateChange,
)
from test_client import (
    Recorder, SteeredProxy, assert_contiguous, free_port, kill_connections, serve_until_stopped,
)

NODE_DIR = ROOT / "tests" / "node"
HARNESS = NODE_DIR / "live_client_harness.mjs"
CLIENT_JS = ROOT / "osintd" / "static" / "client.js"

BASE, CAP = 0.2, 1.6  # backoff seconds; with random_fraction 0 the delays are 0.1, 0.2, 0.4 ...
TIMEOUT = 20


# -------------------------------------------------------------------- drivers


@attrs.define
class Driver:
    """One client of some kind, run in the background, recording into ``recorder``."""

    recorder: Recorder = attrs.field(factory=Recorder)
    ended: trio.Event = attrs.field(factory=trio.Event)
    refused: HandshakeRefused | None = None
    #: The client's counters once it has ended, snake_case.
    stats: dict[str, Any] = attrs.field(factory=dict)

    def settings(self, heartbeat_timeout: float) -> ClientSettings:
        return ClientSettings(backoff_base=BASE, backoff_cap=CAP, heartbeat_timeout=heartbeat_timeout)

    async def wait_ended(self) -> None:
        with trio.fail_after(TIMEOUT):
            await self.ended.wait()


@attrs.define
class TrioDriver(Driver):
    client: LiveUpdatesClient | None = None

    async def start(self, nursery: trio.Nursery, url: str, heartbeat_timeout: float = 60.0, **options) -> None:
        self.client = LiveUpdatesClient(url, random_fraction=lambda: 0.0, settings=self.settings(heartbeat_timeout),
                                        **options)
        self.recorder.attach(self.client)
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        try:
            await self.client.run()
        except HandshakeRefused as refused:
            self.refused = refused
        finally:
            self.stats = _python_stats(self.client)
            self.ended.set()

    async def close(self) -> None:
        await self.client.close()
        await self.wait_ended()


@attrs.define
class AsyncioDriver(Driver):
    """``osintd.aio`` in a thread with its own event loop; its handlers post into trio."""

    loop: asyncio.AbstractEventLoop | None = None
    client: aio.LiveUpdatesClient | None = None

    async def start(self, nursery: trio.Nursery, url: str, heartbeat_timeout: float = 60.0, **options) -> None:
        token = trio.lowlevel.current_trio_token()
        ready = threading.Event()

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.client = client = aio.LiveUpdatesClient(url, random_fraction=lambda: 0.0,
                                                         settings=self.settings(heartbeat_timeout), **options)
            client.on("*", lambda message: token.run_sync_soon(self.recorder._add, "message", message))
            for event in ("state", "gap", "resync"):
                client.on(event, lambda record, event=event: token.run_sync_soon(self.recorder._add, event, record))
            ready.set()
            try:
                await client.run()
            except HandshakeRefused as refused:
                self.refused = refused
            finally:
                self.stats = _python_stats(client)
                token.run_sync_soon(self.ended.set)

        threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
        await trio.to_thread.run_sync(ready.wait)

    async def close(self) -> None:
        if not self.ended.is_set():
            future = asyncio.run_coroutine_threadsafe(self.client.close(), self.loop)
            await trio.to_thread.run_sync(future.result, TIMEOUT)
        await self.wait_ended()


@attrs.define
class NodeDriver(Driver):
    """client.js in ``node tests/node/live_client_harness.mjs``, one JSON line per record."""

    tmp_path: Any = None
    process: trio.Process | None = None

    async def start(self, nursery: trio.Nursery, url: str, heartbeat_timeout: float = 60.0, **options) -> None:
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
            missing("needs node and the ws package: cd tests/node && npm ci")
        module = self.tmp_path / "client.mjs"
        module.write_bytes(CLIENT_JS.read_bytes())
        options = {**options, "randomFraction": 0, "backoffBaseMs": BASE * 1000, "backoffCapMs": CAP * 1000,
                   "heartbeatTimeoutMs": heartbeat_timeout * 1000}
        config = json.dumps({"url": url, "options": options})
        self.process = await trio.lowlevel.open_process(
            [node, str(HARNESS), str(module), config], cwd=NODE_DIR, stdin=-1, stdout=-1,
            stderr=(self.tmp_path / "node.stderr").open("wb"))
        nursery.start_soon(self._read)

    async def _read(self) -> None:
        buffer = b""
        while chunk := await self.process.stdout.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._take(json.loads(line))
        await self.process.wait()
        self.ended.set()

    def _take(self, line: dict) -> None:
        kind, item = line["kind"], line.get("item")
        if kind == "message":
            self.recorder._add("message", item)
        elif kind == "state":
            retry_in = item["retryInMs"] / 1000 if item["retryInMs"] is not None else None
            self.recorder._add("state", StateChange(ConnectionState(item["state"]), item["failedAttempts"], retry_in,
                                                    item["reason"]))
        elif kind == "gap":
            self.recorder._add("gap", Gap(item["epoch"], item["firstMissing"], item["lastMissing"], item["noticedBy"]))
        elif kind == "resync":
            self.recorder._add("resync", Resync(item["reason"], item["oldEpoch"], item["newEpoch"], item["since"],
                                                item["snapshot"]))
        elif kind == "stats":
            self.stats = {re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), key): value for key, value in item.items()}
        elif kind == "ended" and line["error"] is not None:
            self.refused = HandshakeRefused(line["error"]["statusCode"], line["error"]["message"])

    async def close(self) -> None:
        try:
            await self.process.stdin.send_all(b"close\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the harness has ended already (a final refusal ends it): nothing to tell it
        await self.wait_ended()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)


def _python_stats(client: LiveUpdatesClient | aio.LiveUpdatesClient) -> dict[str, Any]:
    return attrs.asdict(client.stats)


@pytest.fixture(params=["trio", "asyncio", pytest.param("node", marks=pytest.mark.node)])
def driver(request, tmp_path):
    made = {"trio": TrioDriver, "asyncio": AsyncioDriver, "node": lambda: NodeDriver(tmp_path=tmp_path)}[
        request.param]()
    yield made
    if isinstance(made, NodeDriver):
        made.kill()


def stats_of(driver: Driver, *names: str) -> tuple:
    return tuple(driver.stats[name] for name in names)


def retry_delays(recorder: Recorder) -> list[float]:
    return [round(s.retry_in, 6) for s in recorder.of("state") if s.retry_in]


async def wait_for(recorder: Recorder, predicate) -> None:
    await recorder.wait_for(predicate, timeout=TIMEOUT)


def connects(recorder: Recorder) -> int:
    return sum(1 for s in recorder.of("state") if s.state == "connected")


# -------------------------------------------------------------------- scenarios


async def test_resume_after_a_cut_delivers_every_missed_message_once_and_in_order(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        recorder = driver.recorder
        await driver.start(nursery, ws_url(app))
        await wait_for(recorder, lambda: connects(recorder) == 1)
        before = [source.event("a/one", title=f"before {i}") for i in range(3)]
        await source.emit(*before)
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 3)
        last_seen = recorder.typed("new_event")[-1]["seq"]

        kill_connections(app)
        await wait_for(recorder, lambda: any(s.retry_in for s in recorder.of("state")))
        during = [source.event("b/two", title=f"during {i}") for i in range(5)]
        await source.emit(*during)
        await wait_for(recorder, lambda: connects(recorder) == 2)
        after = [source.event("c/three", title=f"after {i}") for i in range(2)]
        await source.emit(*after)
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 10)
        await driver.close()
        nursery.cancel_scope.cancel()

    resumed = recorder.typed("resumed")
    assert len(resumed) == 1 and resumed[0]["recovered"] is True and resumed[0]["since"] == last_seen
    assert [m["event_id"] for m in recorder.typed("new_event")] == [e.event_id for e in before + during + after]
    assert_contiguous(recorder.broadcasts())
    assert stats_of(driver, "connects", "reconnects", "resumes", "gaps", "resyncs", "duplicates_dropped") == (
        2, 1, 1, 0, 0, 0)
    assert retry_delays(recorder) == [BASE / 2]
    assert [s.state for s in recorder.of("state")][-1] == "closed"


async def test_a_server_restart_is_a_resync_from_the_new_epoch_after_backing_off(driver):
    port = free_port()
    async with trio.open_nursery() as nursery:
        first_source = ScriptedSource()
        first = await nursery.start(serve_until_stopped, make_settings(port=port), first_source)
        recorder = driver.recorder
        await driver.start(nursery, f"ws://127.0.0.1:{port}/ws/live-updates")
        await wait_for(recorder, lambda: connects(recorder) == 1)
        await first_source.emit(*(first_source.event("a/one") for _ in range(4)))
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 4)
        last_seen, old_epoch = recorder.typed("new_event")[-1]["seq"], first.app.hub.epoch
        await first.stop()
        await wait_for(recorder, lambda: len(retry_delays(recorder)) >= 4)  # refused attempts, backing off

        second_source = ScriptedSource()
        second = await nursery.start(serve_until_stopped, make_settings(port=port), second_source)
        await wait_for(recorder, lambda: recorder.of("resync"))
        await second_source.emit(second_source.event("b/two", title="after the restart"))
        await wait_for(recorder, lambda: recorder.typed("new_event")[-1]["title"] == "after the restart")
        kill_connections(second.app)  # after a good connection, backing off starts from the base again
        await wait_for(recorder, lambda: connects(recorder) == 3)
        await driver.close()
        await second.stop()

    [resync] = recorder.of("resync")
    assert (resync.old_epoch, resync.new_epoch, resync.since) == (old_epoch, second.app.hub.epoch, last_seen)
    assert "epoch" in resync.reason
    kinds = [(kind, item["type"] if kind == "message" else None) for kind, item in recorder.timeline]
    at = kinds.index(("resync", None))
    assert kinds[at - 1] == ("message", "resumed") and kinds[at + 1] == ("message", "snapshot")
    assert recorder.typed("resumed")[0]["recovered"] is False
    assert recorder.typed("snapshot")[-1] == resync.snapshot
    delays = retry_delays(recorder)
    assert delays[:4] == [BASE / 2, BASE, BASE * 2, BASE * 4] and delays[-1] == BASE / 2, delays
    assert stats_of(driver, "connects", "reconnects", "resyncs", "resumes", "gaps") == (3, 2, 1, 1, 0)
    assert driver.stats["epoch"] == second.app.hub.epoch != old_epoch
    # The new epoch counts from the start again; its messages are not mistaken for duplicates.
    after_restart = recorder.typed("new_event")[-1]
    assert after_restart["title"] == "after the restart" and after_restart["seq"] < last_seen


async def test_a_dropped_frame_is_a_gap_filled_by_resume(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        proxy = SteeredProxy(app.port)
        await nursery.start(proxy.serve)
        dropped = []

        def drop_one(message: dict) -> int:
            if message.get("title") == "lost in transit" and not dropped:
                dropped.append(message["seq"])
                return 0
            return 1

        proxy.copies = drop_one
        recorder = driver.recorder
        await driver.start(nursery, proxy.url)
        await wait_for(recorder, lambda: connects(recorder) == 1)
        await source.emit(source.event("a/one", title="first"), source.event("a/one", title="lost in transit"),
                          source.event("a/one", title="third"))
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 3)
        await driver.close()
        nursery.cancel_scope.cancel()

    assert recorder.of("gap") == [Gap(app.hub.epoch, dropped[0], dropped[0], "new_event")]
    assert [m["title"] for m in recorder.typed("new_event")] == ["first", "lost in transit", "third"]
    assert_contiguous(recorder.broadcasts())
    assert recorder.typed("resumed")[0]["since"] == dropped[0] - 1
    assert stats_of(driver, "gaps", "missed_messages", "reconnects", "resumes") == (1, 1, 1, 1)
    assert proxy.connections == 2


async def test_a_heartbeat_naming_a_later_seq_is_a_gap_filled_by_resume(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=0.3), source=source)
        proxy = SteeredProxy(app.port)
        await nursery.start(proxy.serve)
        dropped = []

        def drop_last(message: dict) -> int:
            if message.get("title") == "last one" and not dropped:
                dropped.append(message["seq"])
                return 0
            return 1

        proxy.copies = drop_last
        recorder = driver.recorder
        await driver.start(nursery, proxy.url)
        await wait_for(recorder, lambda: connects(recorder) == 1)
        await source.emit(source.event("a/one", title="first"), source.event("a/one", title="last one"))
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 2)  # no broadcast follows it
        await driver.close()
        nursery.cancel_scope.cancel()

    [gap] = recorder.of("gap")
    assert (gap.first_missing, gap.noticed_by) == (dropped[0], "heartbeat") and gap.last_missing >= dropped[0]
    assert [m["title"] for m in recorder.typed("new_event")] == ["first", "last one"]
    assert recorder.typed("resumed")[0]["recovered"] is True
    assert stats_of(driver, "gaps", "reconnects", "resumes", "duplicates_dropped") == (1, 1, 1, 0)


async def test_a_duplicated_frame_reaches_the_handlers_once(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        proxy = SteeredProxy(app.port)
        await nursery.start(proxy.serve)
        proxy.copies = lambda message: 2 if message.get("title") == "echo" else 1
        recorder = driver.recorder
        await driver.start(nursery, proxy.url)
        await wait_for(recorder, lambda: connects(recorder) == 1)
        await source.emit(source.event("a/one", title="echo"), source.event("a/one", title="after"))
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 2)
        await trio.sleep(0.3)
        await driver.close()
        nursery.cancel_scope.cancel()
    assert [m["title"] for m in recorder.typed("new_event")] == ["echo", "after"]
    assert stats_of(driver, "duplicates_dropped", "gaps", "connects") == (1, 0, 1)
    assert_contiguous(recorder.broadcasts())


async def test_silence_means_a_dead_connection_then_reconnect_and_resume(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=0.3), source=source)
        proxy = SteeredProxy(app.port)
        await nursery.start(proxy.serve)
        recorder = driver.recorder
        await driver.start(nursery, proxy.url, heartbeat_timeout=1.5)
        await wait_for(recorder, lambda: connects(recorder) == 1)
        await trio.sleep(2.5)  # heartbeats keep a quiet connection alive
        assert len(recorder.typed("heartbeat")) >= 4 and not any(s.retry_in for s in recorder.of("state"))

        proxy.freeze(1)  # the network stops delivering; no close, no error
        last_heard = recorder.last_message_at
        await source.emit(source.event("a/one", title="sent into the void"))
        await wait_for(recorder, lambda: any(s.retry_in for s in recorder.of("state")))
        noticed_at = trio.current_time()
        await wait_for(recorder, lambda: recorder.typed("new_event"))
        await driver.close()
        nursery.cancel_scope.cancel()

    assert 1.4 <= noticed_at - last_heard <= 2.5
    reconnecting = [s for s in recorder.of("state") if s.retry_in]
    assert reconnecting[0].reason == "nothing received for 1.5 s"
    assert [m["title"] for m in recorder.typed("new_event")] == ["sent into the void"]
    assert recorder.typed("resumed")[0]["recovered"] is True
    assert stats_of(driver, "heartbeat_timeouts", "reconnects", "gaps") == (1, 1, 0)


async def test_a_filtered_client_reports_no_gaps_consumes_heartbeats_and_resumes(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=0.3), source=source)
        recorder = driver.recorder
        await driver.start(nursery, ws_url(app), types=["new_event"], repos=["a/*"])
        await wait_for(recorder, lambda: connects(recorder) == 1)
        mine = []
        for round_number in range(3):
            mine.append(source.event("a/one", title=f"mine {round_number}"))
            await source.emit(mine[-1], source.event("b/two"), source.event("b/two"))
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 3)
        await trio.sleep(1)

        kill_connections(app)
        await wait_for(recorder, lambda: any(s.retry_in for s in recorder.of("state")))
        mine.append(source.event("a/two", title="while away"))
        await source.emit(source.event("b/two"), mine[-1])
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 4)
        await trio.sleep(0.5)
        await driver.close()
        nursery.cancel_scope.cancel()

    events = recorder.typed("new_event")
    assert [m["event_id"] for m in events] == [e.event_id for e in mine]
    assert any(b["seq"] - a["seq"] > 1 for a, b in zip(events, events[1:]))  # gaps by design ...
    assert recorder.of("gap") == [] and driver.stats["gaps"] == 0  # ... are not reported
    assert {m["type"] for m in recorder.messages} <= {"connection", "snapshot", "resumed", "new_event"}
    assert driver.stats["messages_by_type"]["heartbeat"] >= 3  # asked for, consumed, not handed out
    assert recorder.typed("resumed")[0]["recovered"] is True and driver.stats["reconnects"] == 1


async def test_a_saved_resume_point_is_resumed_from_on_the_first_connection(driver):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        await source.emit(*(source.event("a/one", title=f"old {i}") for i in range(3)))
        await source.emit(*(source.event("a/one", title=f"missed {i}") for i in range(2)))
        with trio.fail_after(TIMEOUT):
            while app.hub.seq < 5:
                await trio.sleep(0.05)
        saved = app.hub.seq - 2  # as if an earlier run had seen everything up to "old 2"
        recorder = driver.recorder
        await driver.start(nursery, ws_url(app), since=saved, epoch=app.hub.epoch)
        await wait_for(recorder, lambda: len(recorder.typed("new_event")) == 2)
        await driver.close()
        nursery.cancel_scope.cancel()
    [resumed] = recorder.typed("resumed")
    assert resumed["recovered"] is True and resumed["since"] == saved
    assert [m["title"] for m in recorder.typed("new_event")] == ["missed 0", "missed 1"]
    assert recorder.typed("snapshot") == [] and recorder.of("resync") == []
    assert driver.stats["last_seq"] == saved + 2


async def test_a_refusal_that_retrying_cannot_fix_ends_the_client(driver):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery)
        await driver.start(nursery, f"ws://127.0.0.1:{app.port}/ws/elsewhere")
        await driver.wait_ended()
        nursery.cancel_scope.cancel()
    assert driver.refused is not None and driver.refused.status_code == 404
    assert driver.stats["state"] == "closed" and driver.stats["failed_attempts"] == 1
    assert not any(s.retry_in for s in driver.recorder.of("state"))


def test_importing_osintd_aio_without_websockets_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['websockets'] = None\n"
            "try:\n    import osintd.aio\nexcept ImportError as error:\n    print(error)\n")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    assert "pip install 'osintd[aio]'" in output


@pytest.mark.node
def test_the_typescript_declarations_compile_a_usage_example_and_reject_misuse():
    """tests/node/client_usage.mts against osintd/static/client.d.ts (its @ts-expect-error
    lines must be errors, so the declarations cannot silently become ``any``)."""
    tsc = NODE_DIR / "node_modules" / ".bin" / "tsc"
    if shutil.which("node") is None or not tsc.exists():
        missing("needs node and typescript: cd tests/node && npm ci")
    result = subprocess.run([str(tsc), "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
                             "--moduleResolution", "bundler", "--lib", "es2022,dom", "client_usage.mts"],
                            cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asyncio_client_as_a_context_manager_with_async_handlers_ping_and_a_refusal(daemon):
    """osintd.aio's own API against a real daemon: ``async with``, sync and async
    handlers, ``ping``, and a final refusal coming out of the ``async with``."""
    async def main() -> tuple:
        titles, awaited = [], []

        async def slow(message: dict) -> None:
            await asyncio.sleep(0.01)
            awaited.append(message["event_id"])

        client = aio.LiveUpdatesClient(daemon.url, types=["new_event"])
        client.on("new_event", lambda m: titles.append(m["title"]))
        client.on("new_event", slow)
        async with client:
            await asyncio.wait_for(client.wait_connected(), 10)
            rtt = await client.ping()
            while len(awaited) < 5:
                await asyncio.sleep(0.05)
        refused = None
        try:
            async with aio.LiveUpdatesClient(daemon.url.replace("/ws/live-updates", "/ws/elsewhere")):
                await asyncio.sleep(10)
        except* HandshakeRefused as group:
            refused = group.exceptions[0]
        return titles, awaited, rtt, client.state, refused

    titles, awaited, rtt, state, refused = asyncio.run(asyncio.wait_for(main(), 30))
    assert len(titles) >= 5 and len(awaited) >= 5 and rtt is not None and rtt >= 0
    assert state is ConnectionState.CLOSED
    assert refused is not None and refused.status_code == 404 and "/ws/live-updates" in refused.message
