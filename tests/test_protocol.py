"""The guide's message types and fields, design.md's additions, over real loopback sockets."""

from __future__ import annotations

import datetime as dt
import re

import trio
import trio_websocket

from conftest import ScriptedSource, receive_json, receive_until, start_app, make_settings, ws_url
from osintd.models import EventType

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")

# Every field the guide shows for each type (design.md adds seq to data messages).
GUIDE_FIELDS = {
    "connection": {"type", "status", "client_id", "message", "timestamp", "epoch", "seq"},
    "heartbeat": {"type", "timestamp", "seq"},
    "new_event": {"type", "timestamp", "event_id", "repo_full_name", "event_type", "title", "author", "url",
                  "data", "seq"},
    "summary_update": {"type", "timestamp", "repo_full_name", "summary", "activity_score", "trend_status",
                       "momentum", "events_in_window", "seq"},
    "ranking_change": {"type", "timestamp", "repo_full_name", "old_rank", "new_rank", "activity_score", "change",
                       "seq"},
    "trend_change": {"type", "timestamp", "repo_full_name", "old_status", "new_status", "momentum", "velocity",
                     "activity_score", "seq"},
    "metrics_update": {"type", "timestamp", "total_events", "active_repositories", "total_queries",
                       "websocket_connections", "changes", "seq"},
    "system_status": {"type", "timestamp", "status", "components", "message", "severity", "seq"},
    "error": {"type", "timestamp", "error_code", "message", "severity", "details"},
    "pong": {"type", "timestamp"},
}
TRENDS = {"🔥 HOT", "📈 ACTIVE", "📊 STABLE", "📉 COOLING", "💤 QUIET"}


async def test_demo_shows_all_ten_types_with_every_field(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=30.0, demo_seed=3, demo_rate=8.0,
                                                     summary_interval=10.0))
        async with trio_websocket.open_websocket_url(ws_url(app)) as ws:
            await ws.send_message('{"type": "ping"}')
            seen: dict[str, dict] = {}
            with trio.move_on_after(45):
                while len(seen.keys() & GUIDE_FIELDS.keys()) < len(GUIDE_FIELDS):
                    message = await receive_json(ws)
                    seen.setdefault(message["type"], message)
        nursery.cancel_scope.cancel()
    assert set(GUIDE_FIELDS) <= set(seen), f"missing {set(GUIDE_FIELDS) - set(seen)}"
    for kind, fields in GUIDE_FIELDS.items():
        assert fields <= set(seen[kind]), f"{kind} lacks {fields - set(seen[kind])}"
        assert TIMESTAMP.match(seen[kind]["timestamp"]), seen[kind]["timestamp"]
    assert seen["connection"]["status"] == "connected"
    assert re.fullmatch(r"client_\d+", seen["connection"]["client_id"])
    assert seen["ranking_change"]["change"] in {"up", "down", "new", "dropped"}
    assert isinstance(seen["ranking_change"]["old_rank"], int) and isinstance(seen["ranking_change"]["new_rank"], int)
    assert seen["trend_change"]["new_status"] in TRENDS and seen["summary_update"]["trend_status"] in TRENDS
    assert seen["system_status"]["severity"] in {"info", "warning", "error", "critical"}
    assert seen["error"]["details"]["retry_in_seconds"] > 0  # the demo's simulated rate limit
    assert "snapshot" in seen


async def test_connection_then_snapshot_then_live_with_rising_seq(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        # Ranked: repositories where at least three people are active (authors take turns).
        await source.emit(*(source.event("a/one") for _ in range(4)), *(source.event("b/two") for _ in range(3)))
        await trio.sleep(2)
        async with trio_websocket.open_websocket_url(ws_url(app)) as ws:
            connection = await receive_json(ws)
            snapshot = await receive_json(ws)
            assert connection["type"] == "connection" and snapshot["type"] == "snapshot"
            assert connection["epoch"] == snapshot["epoch"] == app.hub.epoch
            assert snapshot["seq"] == connection["seq"] == app.hub.seq
            assert [row["repo_full_name"] for row in snapshot["top"]] == ["a/one", "b/two"]
            assert snapshot["system"]["type"] if "type" in snapshot["system"] else True
            await source.emit(source.event("b/two", EventType.RELEASE, action="published", title="Release v2"))
            message = await receive_until(ws, lambda m: m["type"] == "new_event")
            assert message[-1]["seq"] == connection["seq"] + 1
            assert message[-1]["event_type"] == "release" and message[-1]["title"] == "Release v2"
            later = await receive_until(ws, lambda m: m["type"] == "ranking_change")
            assert later[-1]["seq"] > message[-1]["seq"]
        nursery.cancel_scope.cancel()


async def test_snapshot_can_be_turned_off(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=ScriptedSource())
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0")) as ws:
            assert (await receive_json(ws))["type"] == "connection"
            await ws.send_message('{"type":"ping"}')
            assert (await receive_json(ws))["type"] == "pong"
        nursery.cancel_scope.cancel()


async def test_heartbeat_period_and_seq(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=30.0), source=ScriptedSource())
        async with trio_websocket.open_websocket_url(ws_url(app, "types=heartbeat&snapshot=0")) as ws:
            await receive_json(ws)  # connection
            beats = [await receive_json(ws) for _ in range(3)]
        nursery.cancel_scope.cancel()
    times = [dt.datetime.fromisoformat(b["timestamp"]) for b in beats]
    assert [round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:])] == [30.0, 30.0]
    assert all(b["type"] == "heartbeat" and b["seq"] == beats[0]["seq"] for b in beats)


async def test_metrics_only_when_changed(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(metrics_interval=5.0, heartbeat_interval=1000.0), source=source)
        async with trio_websocket.open_websocket_url(ws_url(app, "types=metrics_update&snapshot=0")) as ws:
            await receive_json(ws)
            first = await receive_json(ws)  # our own connection changed websocket_connections
            assert first["websocket_connections"] == 1 and first["changes"]["websocket_connections"] == "+1"
            start = trio.current_time()
            # Nothing changes for a minute: no metrics message.
            with trio.move_on_after(60) as quiet:
                await receive_json(ws)
            assert quiet.cancelled_caught
            await source.emit(*(source.event("a/one") for _ in range(5)))
            update = await receive_json(ws)
            assert update["total_events"] == 5 and update["changes"] == {"total_events": "+5",
                                                                         "active_repositories": "+1"}
            assert trio.current_time() - start >= 60
        nursery.cancel_scope.cancel()
