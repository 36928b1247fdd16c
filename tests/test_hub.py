"""The hub on its own: overload shedding and slow-consumer drops, without sockets."""

from __future__ import annotations

import datetime as dt
import json

import trio

from osintd.hub import Hub, Subscriber
from osintd.messages import NewEvent, RankingChange
from osintd.models import RankChange

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
