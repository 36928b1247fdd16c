"""The hub on its own: overload shedding (full queues, a late fan-out) and slow-consumer drops, without sockets."""

from __future__ import annotations

import datetime as dt
import json

import trio

from osintd.hub import Hub, Subscriber
from osintd.messages import NewEvent, RankingChange, SummaryUpdate
from osintd.models import Event, EventRecord, EventType, Momentum, RankChange, TrendStatus

NOW = dt.datetime(2026, 1, 15, tzinfo=dt.timezone.utc)


def _event(n: int) -> NewEvent:
    return NewEvent(NOW, f"commit_{n}", "org/repo", "commit", "Fix bug", "alice", "https://github.com/org/repo", {})


def _drain(client: Subscriber) -> list[dict]:
    frames = []
    while True:
        try:
            frames.append(client.queue_out.receive_nowait())
        except trio.WouldBlock:
            return [json.loads(f.text) for f in frames if f.text]


async def test_server_behind_sheds_low_value_messages_instead_of_dropping_everyone(autojump_clock):
    hub = Hub(lambda: NOW)
    clients = [Subscriber(capacity=10) for _ in range(10)]
    for client in clients:
        hub.attach(client, snapshot=False)
    for n in range(6):  # everybody is six behind: the server, not a client, is slow
        hub.publish(_event(n))
    await trio.sleep(0.2)
    seq_before = hub.seq
    assert hub.publish(_event(99)) is None          # shed before stamping: no gap for anyone
    hub.publish(RankingChange(NOW, "org/repo", 3, 1, 20.0, RankChange.UP))
    assert hub.overloaded and hub.stats.shed_by_type["new_event"] == 1
    assert hub.stats.slow_consumers_dropped == 0 and hub.connection_count == 10
    received = _drain(clients[0])
    kinds = [m["type"] for m in received]
    assert kinds == ["new_event"] * 6 + ["error", "ranking_change"]
    assert received[-2]["error_code"] == "SERVER_OVERLOADED" and received[-2]["severity"] == "warning"
    assert [m["seq"] for m in received] == list(range(1, seq_before + 3))
    for client in clients[1:]:
        _drain(client)
    await trio.sleep(0.2)
    assert hub.publish(_event(100)) is not None and not hub.overloaded


async def test_one_client_behind_the_others_is_dropped(autojump_clock):
    hub = Hub(lambda: NOW)
    slow, *fast = [Subscriber(capacity=4) for _ in range(5)]
    for client in (slow, *fast):
        hub.attach(client, snapshot=False)
    for n in range(6):
        hub.publish(_event(n))
        for client in fast:
            _drain(client)
    assert slow.close_reason == (1013, "slow consumer") and hub.stats.slow_consumers_dropped == 1
    assert hub.connection_count == 4 and not hub.overloaded


def _record(n: int, queued_at: float) -> EventRecord:
    event = Event(f"commit_{n}", "org/repo", EventType.COMMIT, "Fix bug", "alice", "https://github.com/org/repo", NOW)
    return EventRecord(event, _event(n), queued_at)


async def test_a_cpu_bound_fan_out_sheds_only_what_waited_too_long(autojump_clock):
    # The clients keep up (their queues are empty); the hub itself is late: events waited in its inbox.
    hub = Hub(lambda: NOW, max_delay=2.0)
    clients = [Subscriber(capacity=1000) for _ in range(10)]
    for client in clients:
        hub.attach(client, snapshot=False)
    now = trio.current_time()
    assert hub.publish(_record(1, now - 0.5)) is not None          # late, but within max_delay
    assert hub.publish(_record(2, now - 2.5)) is None              # waited too long: shed
    assert hub.publish(_record(3, now - 3.0)) is None
    assert hub.overloaded and hub.stats.shed_late == 2 and hub.stats.shed_by_type["new_event"] == 2
    assert hub.publish(_record(4, now)) is not None                # on time: still broadcast while behind
    assert hub.publish(SummaryUpdate(NOW, "org/repo", "s", 1.0, TrendStatus.HOT, Momentum.STEADY, 3)) is None
    assert hub.publish(RankingChange(NOW, "org/repo", 3, 1, 20.0, RankChange.UP)) is not None
    await trio.sleep(1.5)                                          # a second with nothing late: caught up
    assert hub.publish(_record(5, trio.current_time())) is not None and not hub.overloaded
    for client in clients:
        received = _drain(client)
        assert [(m["type"], m.get("event_id")) for m in received] == [
            ("new_event", "commit_1"), ("error", None), ("new_event", "commit_4"), ("ranking_change", None),
            ("new_event", "commit_5")]
        assert received[1]["error_code"] == "SERVER_OVERLOADED" and received[1]["severity"] == "warning"
        assert [m["seq"] for m in received] == [1, 2, 3, 4, 5]      # shed before stamping: no gap
    assert hub.connection_count == 10 and hub.stats.slow_consumers_dropped == 0


async def test_a_replay_is_never_shed_for_lagging():
    hub = Hub(lambda: NOW)  # max_delay None: not live
    hub.attach(Subscriber(capacity=10), snapshot=False)
    assert hub.publish(_record(1, -1e9)) is not None and not hub.overloaded


async def test_a_late_event_loop_sheds_a_growing_share_of_new_events_then_recovers(autojump_clock):
    # CPU-bound, nothing queues: every task just gets its turn late. A "hog" makes each
    # scheduling round cost 0.2 s of (virtual) time; the hub must shed part of the stream.
    hub = Hub(lambda: NOW, max_delay=2.0)
    clients = [Subscriber(capacity=100_000) for _ in range(10)]
    for client in clients:
        hub.attach(client, snapshot=False)
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
            await inbox_in.send(_record(n, trio.current_time()))
        assert hub.overloaded and 0 < hub.shed_fraction <= 0.95
        hogging = False
        await trio.sleep(10.0)  # on time again: the shed fraction decays to nothing
        shed_while_hogging = hub.stats.shed_cpu
        assert 0 < shed_while_hogging < 200
        for n in range(200, 220):
            await inbox_in.send(_record(n, trio.current_time()))
        assert hub.shed_fraction == 0.0 and not hub.overloaded and hub.stats.shed_cpu == shed_while_hogging
        nursery.cancel_scope.cancel()
    received = _drain(clients[0])
    events = [m["event_id"] for m in received if m["type"] == "new_event"]
    assert len(events) == 220 - shed_while_hogging and events[-20:] == [f"commit_{n}" for n in range(200, 220)]
    warnings = [m for m in received if m["type"] == "error"]
    assert len(warnings) == 1 and warnings[0]["error_code"] == "SERVER_OVERLOADED"
    assert "CPU-bound" in warnings[0]["message"]
    assert [m["seq"] for m in received] == list(range(1, len(received) + 1))  # shed before stamping
    assert hub.connection_count == 10 and hub.stats.slow_consumers_dropped == 0
