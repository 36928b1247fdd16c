"""The hub on its own: overload shedding (clients behind, a hub at capacity, a late
event loop) and slow-consumer drops, without sockets: clients are bare outboxes."""

from __future__ import annotations

import datetime as dt
import json

import trio

from osintd.broadcaster import EVERYTHING
from osintd.hub import Hub
from osintd.outbox import Outbox
from osintd.messages import NewEvent, RankingChange, SummaryUpdate
from osintd.models import Event, EventBatch, EventType, Momentum, RankChange, TrendStatus

NOW = dt.datetime(2026, 1, 15, tzinfo=dt.timezone.utc)


def _event(n: int) -> NewEvent:
    return NewEvent(NOW, f"commit_{n}", "org/repo", "commit", "Fix bug", "alice", "https://github.com/org/repo", {})


def _client(capacity: int = 100_000, stall_after: float = 600.0, max_behind: float = 600.0) -> Outbox:
    return Outbox(EVERYTHING, capacity, stall_after, max_behind)


def _drain(client: Outbox) -> list[dict]:
    """The broadcasts a sender would write now: everything queued, taken and written."""
    frames = client.take(10**9)
    client.written(trio.current_time())
    return [json.loads(f.payload) for f in frames if f.seq is not None]  # not the connection message


async def test_server_behind_sheds_low_value_messages_instead_of_dropping_everyone(autojump_clock):
    hub = Hub(lambda: NOW, clients_behind=5.0)
    clients = [_client() for _ in range(10)]
    for client in clients:
        hub.attach(client, snapshot=False)
    for n in range(6):
        hub.publish(_event(n))
    await trio.sleep(4.0)
    hub.publish(_event(6))
    assert not hub.overloaded  # four seconds behind: a burst being worked through, not an overload
    await trio.sleep(1.5)  # everybody is over five seconds behind: the server, not a client, is slow
    seq_before = hub.seq
    assert hub.publish(_event(99)) is None          # shed before stamping: no gap for anyone
    hub.publish(RankingChange(NOW, "org/repo", 3, 1, 20.0, RankChange.UP))
    assert hub.overloaded and hub.stats.shed_by_type["new_event"] == 1
    assert hub.stats.slow_consumers_dropped == 0 and hub.connection_count == 10
    received = _drain(clients[0])
    kinds = [m["type"] for m in received]
    assert kinds == ["new_event"] * 7 + ["error", "ranking_change"]
    assert received[-2]["error_code"] == "SERVER_OVERLOADED" and received[-2]["severity"] == "warning"
    assert [m["seq"] for m in received] == list(range(1, seq_before + 3))
    for client in clients[1:]:
        _drain(client)
    await trio.sleep(0.2)
    assert hub.publish(_event(100)) is not None and not hub.overloaded


async def test_a_client_behind_for_longer_than_its_limit_is_dropped_not_one_in_a_burst(autojump_clock):
    hub = Hub(lambda: NOW)
    slow, *fast = [_client(stall_after=10.0) for _ in range(5)]
    for client in (slow, *fast):
        hub.attach(client, snapshot=False)
    for n in range(20_000):  # a burst: far more than any fixed queue would hold
        hub.publish(_event(n))
    assert hub.connection_count == 5 and slow.queued == 20_001  # connection + burst; a pointer each
    for second in range(12):  # the fast ones read it all at once, the slow one reads nothing
        for client in fast:
            _drain(client)
        await trio.sleep(1.0)
        hub.publish(_event(20_000 + second))
    assert slow.close_reason == (1013, "slow consumer") and hub.stats.slow_consumers_dropped == 1
    assert slow.queued == 0  # let go: the frames it held are not kept for a client that is gone
    assert hub.connection_count == 4 and not hub.overloaded
    assert all(client.close_reason is None for client in fast)


async def test_a_client_that_reads_at_its_own_pace_survives_a_burst_however_long_it_takes(autojump_clock):
    """A 20,000-frame burst taken 2,000 a second keeps the client behind for ten
    seconds, five times its stall limit: it is never dropped, since its socket
    keeps taking batches, and it catches up before ``max_behind``."""
    hub = Hub(lambda: NOW)
    client = _client(stall_after=2.0, max_behind=30.0)
    hub.attach(client, snapshot=False)
    for n in range(20_000):
        hub.publish(_event(n))
    rounds = 0
    while client.queued > 1 and rounds < 100:  # one live event may wait for the next round
        client.take(2_000)
        client.written(trio.current_time())
        await trio.sleep(1.0)
        hub.publish(_event(90_000 + rounds))  # live traffic goes on meanwhile
        rounds += 1
    assert 10 <= rounds < 100 and client.close_reason is None and hub.stats.slow_consumers_dropped == 0
    assert client.lag(trio.current_time()) == 0.0 or client.queued <= 1


async def test_a_client_that_reads_more_slowly_than_the_feed_is_dropped_after_max_behind(autojump_clock):
    hub = Hub(lambda: NOW)
    client = _client(stall_after=2.0, max_behind=30.0)
    hub.attach(client, snapshot=False)
    for second in range(40):
        for n in range(100):  # 100 a second, of which it reads 90
            hub.publish(_event(second * 100 + n))
        client.take(90)
        client.written(trio.current_time())
        await trio.sleep(1.0)
        if client.close_reason is not None:
            break
    assert client.close_reason == (1013, "slow consumer") and 30 <= second <= 32


async def test_a_client_over_its_queue_bound_is_dropped_at_once():
    hub = Hub(lambda: NOW)
    client = _client(capacity=4)
    hub.attach(client, snapshot=False)
    for n in range(6):
        hub.publish(_event(n))
    assert client.close_reason == (1013, "slow consumer") and hub.connection_count == 0


def _live_hub_with_clients(capacity: int) -> tuple[Hub, list[Outbox]]:
    # Nobody reads in these tests: "most clients behind" must not be what they see.
    hub = Hub(lambda: NOW, live=True, clients_behind=3600.0)
    clients = [_client(capacity, stall_after=1e9, max_behind=1e9) for _ in range(10)]
    for client in clients:
        hub.attach(client, snapshot=False)
    return hub, clients


def _record(n: int) -> EventBatch:
    event = Event(f"commit_{n}", "org/repo", EventType.COMMIT, "Fix bug", "alice", "https://github.com/org/repo", NOW)
    return EventBatch([event])


async def test_a_hub_at_capacity_tells_clients_but_every_new_event_flows(autojump_clock):
    # The hub is the bottleneck: its inbox never empties, the sources wait, nothing is lost.
    # After two seconds of that, clients are told and summary updates are shed; new_events flow.
    hub, clients = _live_hub_with_clients(capacity=1000)
    inbox_in, inbox_out = trio.open_memory_channel(200)
    summary = SummaryUpdate(NOW, "org/repo", "s", 1.0, TrendStatus.HOT, Momentum.STEADY, 3)
    real_publish, busy = hub._publish_event, [True]

    def slow_publish(event, at):  # each event costs 40 ms of (virtual) CPU while "busy": a late loop
        if busy[0]:
            trio.lowlevel.current_clock().jump(0.04)
        return real_publish(event, at)

    hub._publish_event = slow_publish
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run, inbox_out)
        for n in range(100):  # four seconds of work arrives at once
            inbox_in.send_nowait(_record(n))
        await trio.sleep(1.0)
        assert not hub.overloaded            # a moment's backlog is not an overload
        await trio.sleep(1.5)
        assert hub.overloaded and hub.governor.at_capacity
        await inbox_in.send(summary)
        await inbox_in.send(RankingChange(NOW, "org/repo", 3, 1, 20.0, RankChange.UP))
        busy[0] = False
        await trio.sleep(1.0)                # the backlog drains: caught up
        assert not hub.overloaded
        await inbox_in.send(summary)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    for client in clients:
        received = _drain(client)
        kinds = [m["type"] for m in received]
        assert kinds.count("new_event") == 100 and kinds.count("error") == 1
        assert kinds[-2:] == ["ranking_change", "summary_update"]  # the first summary was shed
        error = next(m for m in received if m["type"] == "error")
        assert error["error_code"] == "SERVER_OVERLOADED" and "held back" in error["message"]
        assert error["details"] == {"shedding": ["summary_update"]}
    assert hub.stats.shed_by_type == {"summary_update": 1} and hub.connection_count == 10


async def test_a_replay_is_never_overloaded():
    hub = Hub(lambda: NOW)  # not live
    hub.attach(_client(), snapshot=False)
    assert hub.publish(_record(1)) is not None and not hub.overloaded


async def test_a_late_event_loop_sheds_a_growing_share_of_new_events_then_recovers(autojump_clock):
    # CPU-bound, nothing queues: every task just gets its turn late. A "hog" makes each
    # scheduling round cost 0.2 s of (virtual) time; the hub must shed part of the stream.
    hub, clients = _live_hub_with_clients(capacity=100_000)
    inbox_in, inbox_out = trio.open_memory_channel(0)
    hogging = True

    async def hog() -> None:
        while hogging:
            autojump_clock.jump(0.2)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run, inbox_out)
        nursery.start_soon(hog)
        for n in range(200):
            await inbox_in.send(_record(n))
        assert hub.overloaded and 0 < hub.governor.shed_fraction <= 0.95
        hogging = False
        await trio.sleep(10.0)  # on time again: the shed fraction decays to nothing
        shed_while_hogging = hub.stats.shed_cpu
        assert 0 < shed_while_hogging < 200
        for n in range(200, 220):
            await inbox_in.send(_record(n))
        assert hub.governor.shed_fraction == 0.0 and not hub.overloaded and hub.stats.shed_cpu == shed_while_hogging
        nursery.cancel_scope.cancel()
    received = _drain(clients[0])
    events = [m["event_id"] for m in received if m["type"] == "new_event"]
    assert len(events) == 220 - shed_while_hogging and events[-20:] == [f"commit_{n}" for n in range(200, 220)]
    warnings = [m for m in received if m["type"] == "error"]
    assert len(warnings) == 1 and warnings[0]["error_code"] == "SERVER_OVERLOADED"
    assert "CPU-bound" in warnings[0]["message"]
    assert [m["seq"] for m in received] == list(range(1, len(received) + 1))  # shed before stamping
    assert hub.connection_count == 10 and hub.stats.slow_consumers_dropped == 0


async def test_with_nobody_connected_nothing_is_encoded_until_a_client_resumes(monkeypatch):
    """Frames are made when first read: a replay with no client costs no encoding, and
    a client resuming later still gets every message, byte for byte as encoded at once."""
    import osintd.broadcaster
    from osintd import wire
    from osintd.wsio import frame_text

    encoded: list[int | None] = []
    real_encode = osintd.broadcaster.encode
    monkeypatch.setattr(osintd.broadcaster, "encode", lambda message, seq=None: (
        seq is not None and encoded.append(seq), real_encode(message, seq=seq))[1])  # broadcasts only
    hub = Hub(lambda: NOW)
    messages = [_event(n) for n in range(50)]
    for message in messages:
        hub.publish(message)
    assert encoded == [] and hub.seq == 50
    client = _client()
    hub.attach(client, snapshot=False, since=20, epoch=hub.epoch)
    frames = [f for f in client.take(1000) if f.seq is not None]
    assert [f.wire for f in frames] == [frame_text(wire.encode(m, seq=n)) for n, m in enumerate(messages[20:], 21)]
    assert encoded == list(range(21, 51))  # each once, and only those read
    assert all(f._message is None for f in frames)  # the message is let go once encoded


async def test_an_event_nobody_reads_never_becomes_a_message_yet_resumes_as_one():
    """A new_event is made from its event only when its frame is first read; the frame
    a resuming client gets is byte for byte the one NewEvent.of would have given at once."""
    from osintd import wire
    from osintd.wsio import frame_text

    hub = Hub(lambda: NOW)
    events = [Event(f"e{n}", "org/repo", EventType.PULL_REQUEST, "Add API", "bob", "https://github.com/org/repo/pull/1",
                    NOW, action="opened", data={"number": n}) for n in range(20)]
    at = NOW + dt.timedelta(seconds=3)
    hub = Hub(lambda: at)  # the moment the hub broadcasts them is their new_event's timestamp
    hub.publish(EventBatch(events[:10]))
    hub.publish(EventBatch(events[10:]))
    assert all(frame._message is None and frame._event is not None for frame in hub.ring)  # nothing made yet
    client = _client()
    hub.attach(client, snapshot=False, since=5, epoch=hub.epoch)
    frames = [f for f in client.take(1000) if f.seq is not None]
    assert [f.wire for f in frames] == [frame_text(wire.encode(NewEvent.of(e, at), seq=n))
                                        for n, e in enumerate(events[5:], 6)]
    assert json.loads(frames[0].payload)["data"] == {"number": 5, "action": "opened"}
    assert all(f._event is None and f._message is None for f in frames)  # let go once made


async def test_a_cluster_follower_says_it_is_overloaded_unstamped(autojump_clock):
    """A follower stamps nothing: its seq is the leader's, and what it stamped could never be
    stored (its write-ahead retried the commit forever and its ring was cleared).  Its
    clients are told of an overload without a new seq, as of system_status."""
    hub = Hub(lambda: NOW, clients_behind=5.0, clustered=True)
    assert not hub.stamping
    client = _client()
    hub.attach(client, snapshot=False)
    client.take(10**9)  # the connection message
    seq_before = hub.seq
    hub._tell_overloaded("behind", ["new_event"])
    told = [json.loads(f.payload) for f in client.take(10**9)]
    assert [(m["type"], m["error_code"]) for m in told] == [("error", "SERVER_OVERLOADED")]
    assert told[0]["seq"] == seq_before and hub.seq == seq_before
