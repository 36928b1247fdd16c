"""osintd.client against real loopback servers: handlers, reconnect with backoff,
resume, resync after a restart, gap detection, de-duplication and the heartbeat timeout.

Timed tests run the daemon in-process on trio's autojump clock; one test stops and
restarts a real ``python -m osintd`` subprocess.  ``SteeredProxy`` sits between a
client and the server when a test needs the network to misbehave: it can drop or
duplicate chosen WebSocket frames, or stop forwarding on one connection.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Callable

import attrs
import pytest
import trio

from conftest import ScriptedSource, make_settings, spawn_daemon, start_app, ws_url
from osintd.client import (
    Backoff, ClientSettings, ConnectionState, Gap, HandshakeRefused, LiveUpdatesClient, Resync,
    SequenceTracker,
)
from osintd.scorer import ScoringModel

CONTROL = {"connection", "snapshot", "heartbeat", "resumed"}


# ------------------------------------------------------------------ helpers


@attrs.define
class Recorder:
    """Everything a client hands its handlers, in one timeline, with a way to wait for it."""

    timeline: list[tuple[str, Any]] = attrs.field(factory=list)
    last_message_at: float | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def attach(self, client: LiveUpdatesClient) -> "Recorder":
        client.on("*", lambda message: self._add("message", message))
        for event in ("state", "gap", "resync"):
            client.on(event, lambda record, event=event: self._add(event, record))
        return self

    def _add(self, kind: str, item: Any) -> None:
        self.timeline.append((kind, item))
        if kind == "message":
            self.last_message_at = trio.current_time()
        self._changed.set()
        self._changed = trio.Event()

    def of(self, kind: str) -> list:
        return [item for k, item in self.timeline if k == kind]

    @property
    def messages(self) -> list[dict]:
        return self.of("message")

    def typed(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    def broadcasts(self) -> list[dict]:
        return [m for m in self.messages if is_broadcast(m)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 120) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()


def is_broadcast(message: dict) -> bool:
    return "seq" in message and message["type"] not in CONTROL


def assert_contiguous(broadcasts: list[dict]) -> None:
    seqs = [m["seq"] for m in broadcasts]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"not one by one: {seqs}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kill_connections(app) -> None:
    """Close every client's connection from the server side, as a network fault would."""
    for subscriber in list(app.hub.clients.values()):
        subscriber.end((1011, "test"))


@attrs.define
class RunningServer:
    """An in-process daemon in its own cancel scope, so that a test can stop it and start another."""

    app: Any
    scope: trio.CancelScope
    stopped: trio.Event

    async def stop(self) -> None:
        await self.app.shutdown()
        self.scope.cancel()
        await self.stopped.wait()


async def serve_until_stopped(settings, source, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    stopped = trio.Event()
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                app = await start_app(nursery, settings, source=source)
                task_status.started(RunningServer(app, scope, stopped))
                await trio.sleep_forever()
    finally:
        stopped.set()


def new_client(url: str, **kwargs) -> LiveUpdatesClient:
    # random_fraction 0: every backoff delay is exactly half its ceiling (0.5, 1, 2, 4 ...).
    return LiveUpdatesClient(url, random_fraction=lambda: 0.0, **kwargs)


def _take_frame(buffer: bytes) -> tuple[bytes, int, bytes] | None:
    """(whole frame, opcode, unmasked payload) from the front of ``buffer``, once complete."""
    if len(buffer) < 2:
        return None
    opcode, masked, length, offset = buffer[0] & 0x0F, buffer[1] & 0x80, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    mask = buffer[offset:offset + 4] if masked else b""
    offset += len(mask)
    if len(buffer) < offset + length:
        return None
    payload = buffer[offset:offset + length]
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return buffer[:offset + length], opcode, payload


class SteeredProxy:
    """TCP between client and server; server-to-client WebSocket frames pass through
    ``copies(message)`` (0 drops, 2 duplicates); ``freeze(n)`` stops forwarding
    anything more to the client on connection ``n`` (numbered from 1)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port: int | None = None
        self.connections = 0
        self.frozen: set[int] = set()
        self.copies: Callable[[dict], int] = lambda message: 1

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/live-updates"

    def freeze(self, connection: int) -> None:
        self.frozen.add(connection)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._link, listeners, task_status=task_status)

    async def _link(self, client: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._raw, client, server, nursery.cancel_scope)
                nursery.start_soon(self._frames, server, client, nursery.cancel_scope, number)
        finally:
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(server)

    async def _raw(self, source, sink, scope: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _frames(self, source, sink, scope: trio.CancelScope, number: int) -> None:
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:  # the 101 response head passes as it is
                buffer += await self._receive(source, scope)
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            await sink.send_all(head + b"\r\n\r\n")
            while True:
                while (taken := _take_frame(buffer)) is None:
                    buffer += await self._receive(source, scope)
                frame, opcode, payload = taken
                buffer = buffer[len(frame):]
                if number in self.frozen:
                    await trio.sleep_forever()
                copies = self.copies(json.loads(payload)) if opcode == 0x1 else 1
                for _ in range(copies):
                    await sink.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    @staticmethod
    async def _receive(source, scope: trio.CancelScope) -> bytes:
        data = await source.receive_some(65536)
        if not data:  # the server closed: end this link
            scope.cancel()
            await trio.sleep_forever()
        return data


# ---------------------------------------------------------------- unit level


def test_backoff_doubles_from_base_to_cap_with_jitter_and_starts_again_after_reset():
    fractions = iter([0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.99])
    backoff = Backoff(1.0, 30.0, lambda: next(fractions))
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 2.0, 3.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.995)
    defaults = ClientSettings()
    assert (defaults.heartbeat_timeout, defaults.backoff_base, defaults.backoff_cap) == (60.0, 1.0, 30.0)


def _message(kind: str, seq: int | None = None, **fields) -> dict:
    return {"type": kind, **({"seq": seq} if seq is not None else {}), **fields}


def test_unfiltered_tracker_reports_gaps_drops_duplicates_and_resumes_from_the_last_seq():
    tracker = SequenceTracker(check_continuity=True)
    assert tracker.connection_opened() is None
    assert tracker.observe(_message("connection", 5, epoch="E")).deliver
    assert tracker.observe(_message("snapshot", 5, epoch="E")).resync is None  # the first one is the baseline
    assert tracker.observe(_message("new_event", 6)) == tracker.observe(_message("heartbeat", 6))
    assert tracker.observe(_message("new_event", 6)).duplicate
    verdict = tracker.observe(_message("new_event", 8))
    assert verdict.gap == Gap("E", 7, 7, "new_event") and not verdict.deliver
    assert tracker.observe(_message("heartbeat", 9)).gap == Gap("E", 7, 9, "heartbeat")
    assert tracker.last_seq == 6  # nothing past the gap was accepted

    assert tracker.connection_opened() == (6, "E")
    tracker.observe(_message("connection", 9, epoch="E"))
    tracker.observe(_message("resumed", since=6, epoch="E", seq=9, recovered=True, replayed=3))
    assert [tracker.observe(_message("ranking_change", seq)).deliver for seq in (7, 8, 9, 8)] == [
        True, True, True, False]
    assert tracker.resume_point() == (9, "E")


def test_filtered_tracker_sees_no_gaps_advances_by_heartbeat_and_drops_duplicates():
    tracker = SequenceTracker(check_continuity=False)
    tracker.connection_opened()
    tracker.observe(_message("connection", 10, epoch="E"))
    tracker.observe(_message("snapshot", 10, epoch="E"))
    assert tracker.observe(_message("new_event", 14)).deliver
    assert tracker.observe(_message("new_event", 20)) == tracker.observe(_message("heartbeat", 25))
    assert tracker.last_seq == 25
    assert tracker.observe(_message("new_event", 23)).duplicate
    assert tracker.connection_opened() == (25, "E")


def test_refused_resume_makes_the_next_snapshot_a_resync_and_resets_the_seq():
    tracker = SequenceTracker(check_continuity=True, since=40, epoch="OLD")
    assert tracker.connection_opened() == (40, "OLD")
    tracker.observe(_message("connection", 2, epoch="NEW"))
    tracker.observe(_message("resumed", since=40, epoch="NEW", seq=2, recovered=False, replayed=0,
                             reason="epoch 'OLD' is not the current epoch 'NEW'"))
    snapshot = _message("snapshot", 2, epoch="NEW", top=[])
    resync = tracker.observe(snapshot).resync
    assert resync == Resync("epoch 'OLD' is not the current epoch 'NEW'", "OLD", "NEW", 40, snapshot)
    assert tracker.observe(_message("new_event", 3)).deliver  # below 40, but of the new epoch
    assert tracker.resume_point() == (3, "NEW")


def test_bad_types_and_urls_are_refused_at_construction():
    with pytest.raises(ValueError, match="unknown types"):
        LiveUpdatesClient("ws://localhost:8000/ws/live-updates", types=["new_events"])
    with pytest.raises(ValueError, match="ws://"):
        LiveUpdatesClient("http://localhost:8000/ws/live-updates")
    assert LiveUpdatesClient("ws://h/ws/live-updates?types=new_event&repos=a/*").filtered


# ------------------------------------------------------------- in-process


async def test_handlers_sync_async_star_and_default_ping_and_close(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        # One person is enough to be ranked here: the ranking_change goes to the default handler.
        app = await start_app(nursery, source=source, model=attrs.evolve(ScoringModel(), trend_people=1))
        plain, awaited, defaulted, raised = [], [], [], []

        async def slow_handler(message: dict) -> None:
            await trio.sleep(0.1)
            awaited.append(message["title"])

        def faulty_handler(message: dict) -> None:
            raised.append(message["seq"])
            raise RuntimeError("handler bug")

        client = new_client(ws_url(app), default_handler=lambda m: defaulted.append(m["type"]))
        recorder = Recorder().attach(client)
        client.on("new_event", lambda m: plain.append(m["title"]))
        client.on("new_event", slow_handler)
        client.on("new_event")(faulty_handler)  # the decorator form
        async with client:
            await client.wait_connected()
            assert client.connected and client.client_id in app.hub.clients
            latency = await client.ping()
            assert latency is not None and latency >= 0
            await source.emit(source.event("a/one", title="first"), source.event("b/two", title="second"))
            await recorder.wait_for(lambda: len(awaited) == 2)
            await trio.sleep(3)
        assert client.state is ConnectionState.CLOSED
        await trio.sleep(1)
        assert app.hub.connection_count == 0
        nursery.cancel_scope.cancel()
    assert plain == awaited == ["first", "second"]
    assert len(raised) == 2 and client.stats.handler_errors == 2
    assert defaulted[:3] == ["connection", "snapshot", "pong"] and "new_event" not in defaulted
    assert "ranking_change" in defaulted
    assert [m["type"] for m in recorder.messages][:3] == ["connection", "snapshot", "pong"]
    assert [s.state for s in recorder.of("state")] == ["connecting", "connected", "closed"]
    stats = client.stats
    assert (stats.connects, stats.reconnects, stats.gaps) == (1, 0, 0)
    assert stats.messages_by_type["new_event"] == 2 and stats.epoch == app.hub.epoch
    assert stats.last_seq == recorder.broadcasts()[-1]["seq"]


async def test_resume_after_a_cut_delivers_every_missed_message_once_and_in_order(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        client = new_client(ws_url(app))
        recorder = Recorder().attach(client)
        nursery.start_soon(client.run)
        await client.wait_connected()
        before = [source.event("a/one", title=f"before {i}") for i in range(3)]
        await source.emit(*before)
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 3)
        await trio.sleep(2)
        last_seen = client.stats.last_seq

        kill_connections(app)
        await recorder.wait_for(lambda: any(s.retry_in for s in recorder.of("state")))
        assert not client.connected
        during = [source.event("b/two", title=f"during {i}") for i in range(5)]
        await source.emit(*during)
        await recorder.wait_for(lambda: client.stats.connects == 2)
        after = [source.event("c/three", title=f"after {i}") for i in range(2)]
        await source.emit(*after)
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 10)
        await trio.sleep(3)
        await client.close()
        nursery.cancel_scope.cancel()

    resumed = recorder.typed("resumed")
    assert len(resumed) == 1 and resumed[0]["recovered"] is True
    assert resumed[0]["since"] == last_seen and resumed[0]["replayed"] >= 5
    assert [m["event_id"] for m in recorder.typed("new_event")] == [e.event_id for e in before + during + after]
    assert_contiguous(recorder.broadcasts())
    stats = client.stats
    assert (stats.connects, stats.reconnects, stats.resumes, stats.gaps, stats.resyncs,
            stats.duplicates_dropped) == (2, 1, 1, 0, 0, 0)
    assert [s.retry_in for s in recorder.of("state") if s.retry_in] == [0.5]


async def test_server_restart_means_backoff_then_a_surfaced_resync_from_the_new_epoch(autojump_clock):
    port = free_port()
    async with trio.open_nursery() as nursery:
        first_source = ScriptedSource()
        first = await nursery.start(serve_until_stopped, make_settings(port=port), first_source)
        client = new_client(f"ws://127.0.0.1:{port}/ws/live-updates")
        recorder = Recorder().attach(client)
        nursery.start_soon(client.run)
        await client.wait_connected()
        await first_source.emit(*(first_source.event("a/one") for _ in range(4)))
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 4)
        await trio.sleep(2)
        last_seen, old_epoch = client.stats.last_seq, first.app.hub.epoch
        await first.stop()
        await trio.sleep(6)  # down for a while: refused attempts, backing off
        assert client.state is ConnectionState.RECONNECTING and client.stats.failed_attempts == 3

        second_source = ScriptedSource()
        second = await nursery.start(serve_until_stopped, make_settings(port=port), second_source)
        await recorder.wait_for(lambda: recorder.of("resync"))
        await second_source.emit(second_source.event("b/two", title="after the restart"))
        await recorder.wait_for(lambda: recorder.typed("new_event")[-1]["title"] == "after the restart")
        kill_connections(second.app)  # after a good connection, backing off starts from the base again
        await recorder.wait_for(lambda: client.stats.connects == 3)
        await client.close()
        await second.stop()

    [resync] = recorder.of("resync")
    assert (resync.old_epoch, resync.new_epoch, resync.since) == (old_epoch, second.app.hub.epoch, last_seen)
    assert "epoch" in resync.reason
    kinds = [(kind, item["type"] if kind == "message" else None) for kind, item in recorder.timeline]
    at = kinds.index(("resync", None))
    assert kinds[at - 1] == ("message", "resumed") and kinds[at + 1] == ("message", "snapshot")
    assert recorder.typed("resumed")[0]["recovered"] is False
    assert recorder.typed("snapshot")[-1] is resync.snapshot
    # The first server's close (1001), then refused attempts, doubling, until the second is up;
    # its good connection resets the count, so the cut after it waits the base delay again.
    delays = [s.retry_in for s in recorder.of("state") if s.retry_in]
    assert delays == [0.5, 1.0, 2.0, 4.0, 0.5]
    stats = client.stats
    assert (stats.connects, stats.reconnects, stats.resyncs, stats.resumes, stats.gaps) == (3, 2, 1, 1, 0)
    assert stats.epoch == second.app.hub.epoch != old_epoch
    # The new epoch counts from the start again; its messages are not mistaken for duplicates.
    after_restart = recorder.typed("new_event")[-1]
    assert after_restart["title"] == "after the restart" and after_restart["seq"] < last_seen


async def test_a_dropped_frame_is_reported_as_a_gap_and_filled_by_resume(autojump_clock):
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
        client = new_client(proxy.url)
        recorder = Recorder().attach(client)
        nursery.start_soon(client.run)
        await client.wait_connected()
        await source.emit(source.event("a/one", title="first"), source.event("a/one", title="lost in transit"),
                          source.event("a/one", title="third"))
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 3)
        await trio.sleep(3)
        await client.close()
        nursery.cancel_scope.cancel()

    assert len(dropped) == 1
    assert recorder.of("gap") == [Gap(app.hub.epoch, dropped[0], dropped[0], "new_event")]
    assert [m["title"] for m in recorder.typed("new_event")] == ["first", "lost in transit", "third"]
    assert_contiguous(recorder.broadcasts())
    assert recorder.typed("resumed")[0]["since"] == dropped[0] - 1
    stats = client.stats
    assert (stats.gaps, stats.missed_messages, stats.reconnects, stats.resumes) == (1, 1, 1, 1)
    assert proxy.connections == 2


async def test_a_duplicated_frame_reaches_the_handlers_once(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        proxy = SteeredProxy(app.port)
        await nursery.start(proxy.serve)
        proxy.copies = lambda message: 2 if message.get("title") == "echo" else 1
        client = new_client(proxy.url)
        recorder = Recorder().attach(client)
        nursery.start_soon(client.run)
        await client.wait_connected()
        await source.emit(source.event("a/one", title="echo"), source.event("a/one", title="after"))
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 2)
        await trio.sleep(3)
        await client.close()
        nursery.cancel_scope.cancel()
    assert [m["title"] for m in recorder.typed("new_event")] == ["echo", "after"]
    assert client.stats.duplicates_dropped == 1 and client.stats.gaps == 0 and client.stats.connects == 1
    assert_contiguous(recorder.broadcasts())


async def test_sixty_seconds_of_silence_means_dead_then_reconnect_and_resume(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=30.0), source=source)
        proxy = SteeredProxy(app.port)
        await nursery.start(proxy.serve)
        client = new_client(proxy.url)
        recorder = Recorder().attach(client)
        nursery.start_soon(client.run)
        await client.wait_connected()
        await trio.sleep(200)  # heartbeats every 30 s keep a quiet connection alive
        assert client.stats.heartbeat_timeouts == 0 and client.stats.connects == 1
        assert len(recorder.typed("heartbeat")) >= 6

        proxy.freeze(1)  # the network stops delivering; no close, no error
        frozen_at, last_heard = trio.current_time(), recorder.last_message_at
        await source.emit(source.event("a/one", title="sent into the void"))
        await recorder.wait_for(lambda: any(s.state == "reconnecting" for s in recorder.of("state")))
        noticed_at = trio.current_time()
        await recorder.wait_for(lambda: recorder.typed("new_event"))
        await trio.sleep(3)
        await client.close()
        nursery.cancel_scope.cancel()

    assert noticed_at - last_heard == pytest.approx(60.0, abs=0.1) and noticed_at - frozen_at <= 60.0
    reconnecting = [s for s in recorder.of("state") if s.retry_in]
    assert reconnecting[0].reason == "nothing received for 60 s"
    assert [m["title"] for m in recorder.typed("new_event")] == ["sent into the void"]
    assert recorder.typed("resumed")[0]["recovered"] is True
    stats = client.stats
    assert (stats.heartbeat_timeouts, stats.reconnects, stats.gaps) == (1, 1, 0)
    assert_contiguous(recorder.broadcasts())


async def test_filtered_client_sees_only_its_messages_reports_no_gaps_and_resumes(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=30.0), source=source)
        client = new_client(ws_url(app), types=["new_event"], repos=["a/*"])
        recorder = Recorder().attach(client)
        nursery.start_soon(client.run)
        await client.wait_connected()
        mine = []
        for round_number in range(3):
            mine.append(source.event("a/one", title=f"mine {round_number}"))
            await source.emit(mine[-1], source.event("b/two"), source.event("b/two"))
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 3)
        await trio.sleep(100)  # quiet for longer than the heartbeat timeout
        assert client.stats.heartbeat_timeouts == 0

        kill_connections(app)
        await recorder.wait_for(lambda: any(s.retry_in for s in recorder.of("state")))
        mine.append(source.event("a/two", title="while away"))
        await source.emit(source.event("b/two"), mine[-1])
        await recorder.wait_for(lambda: len(recorder.typed("new_event")) == 4)
        await trio.sleep(40)
        await client.close()
        nursery.cancel_scope.cancel()

    events = recorder.typed("new_event")
    assert [m["event_id"] for m in events] == [e.event_id for e in mine]
    assert any(b["seq"] - a["seq"] > 1 for a, b in zip(events, events[1:]))  # gaps by design ...
    assert recorder.of("gap") == [] and client.stats.gaps == 0  # ... are not reported
    assert {m["type"] for m in recorder.messages} <= {"connection", "snapshot", "resumed", "new_event"}
    assert client.stats.messages_by_type["heartbeat"] >= 3  # asked for, consumed, not handed out
    assert recorder.typed("resumed")[0]["recovered"] is True and client.stats.reconnects == 1


async def test_a_refusal_that_retrying_cannot_fix_ends_run(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery)
        client = new_client(f"ws://127.0.0.1:{app.port}/ws/elsewhere")
        with pytest.raises(HandshakeRefused) as refused, trio.fail_after(60):
            await client.run()
        assert refused.value.status_code == 404 and "/ws/live-updates" in refused.value.message
        assert client.state is ConnectionState.CLOSED and client.stats.failed_attempts == 1
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------- a real daemon


async def test_a_real_daemon_stopped_and_started_again_on_its_port(tmp_path):
    args = ("--demo", "--demo-rate", "40", "--heartbeat-interval", "1")
    daemon = await trio.to_thread.run_sync(lambda: spawn_daemon(tmp_path, *args))
    second = None
    client = new_client(daemon.url, settings=ClientSettings(backoff_base=0.1, backoff_cap=0.4))
    recorder = Recorder().attach(client)
    try:
        with trio.fail_after(25):
            async with client:
                await recorder.wait_for(lambda: len(recorder.typed("new_event")) >= 5)
                first_epoch = client.stats.epoch
                await trio.to_thread.run_sync(daemon.stop)
                await recorder.wait_for(lambda: client.stats.failed_attempts >= 1)
                second = await trio.to_thread.run_sync(
                    lambda: spawn_daemon(tmp_path, *args, "--port", str(daemon.port)))
                await recorder.wait_for(lambda: recorder.of("resync"))
                count = len(recorder.typed("new_event"))
                await recorder.wait_for(lambda: len(recorder.typed("new_event")) >= count + 5)
    finally:
        for process in (daemon, second):
            if process is not None and process.process.poll() is None:
                process.process.kill()
                process.process.wait()

    [resync] = recorder.of("resync")
    assert resync.old_epoch == first_epoch != resync.new_epoch
    stats = client.stats
    assert stats.connects == 2 and stats.gaps == 0 and stats.duplicates_dropped == 0
    # Within each epoch every broadcast arrives once, one seq after the other.
    at = next(i for i, (kind, _) in enumerate(recorder.timeline) if kind == "resync")
    before = [m for kind, m in recorder.timeline[:at] if kind == "message" and is_broadcast(m)]
    after = [m for kind, m in recorder.timeline[at:] if kind == "message" and is_broadcast(m)]
    assert_contiguous(before)
    assert_contiguous(after)
    assert after[0]["seq"] == resync.snapshot["seq"] + 1
