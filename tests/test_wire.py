"""The bytes ``wire.encode`` makes, pinned against ``json.dumps`` of the dict a
client must receive: ``type`` first, the fields in declaration order, fields
that are None left out, ``seq`` last; timestamps as ``clock.isoformat`` writes
them; non-ASCII kept as UTF-8.  Field order and None-omission are what a faster
encoder gets wrong first, so these compare whole outputs, not parsed values."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc

from osintd import wire
from osintd.messages import (
    Error, MetricsUpdate, NewEvent, RankedRepo, Resumed, Snapshot, Subscribed, SummaryUpdate, SystemStatus,
)
from osintd.models import Momentum, TrendStatus

MOMENT = dt.datetime(2026, 1, 15, 10, 30, 5, 123456, tzinfo=dt.timezone.utc)
MOMENT_TEXT = "2026-01-15T10:30:05.123456+00:00"


def _json(expected: dict) -> bytes:
    """What the wire must carry: compact, UTF-8 kept."""
    return json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()


def _encoded(message, seq=None) -> bytes:
    return wire.encode(message, seq=seq)


def _new_event(**changes) -> NewEvent:
    fields = dict(timestamp=MOMENT, event_id="pull_request_org/repo#7_opened", repo_full_name="org/repo",
                  event_type="pull_request", title="Fix ünïcode ✓ in 日本語 titles", author="ålice",
                  url="https://github.com/org/repo/pull/7",
                  data={"number": 7, "merged": False, "additions": 12, "head": "tøpic", "action": "opened"})
    fields.update(changes)
    return NewEvent(**fields)


def test_new_event_bytes_with_seq_and_non_ascii():
    assert _encoded(_new_event(), seq=42) == _json({
        "type": "new_event", "timestamp": MOMENT_TEXT, "event_id": "pull_request_org/repo#7_opened",
        "repo_full_name": "org/repo", "event_type": "pull_request", "title": "Fix ünïcode ✓ in 日本語 titles",
        "author": "ålice", "url": "https://github.com/org/repo/pull/7",
        "data": {"number": 7, "merged": False, "additions": 12, "head": "tøpic", "action": "opened"},
        "seq": 42,
    })


def test_new_event_without_seq_and_with_empty_data():
    assert _encoded(_new_event(title="plain", data={})) == _json({
        "type": "new_event", "timestamp": MOMENT_TEXT, "event_id": "pull_request_org/repo#7_opened",
        "repo_full_name": "org/repo", "event_type": "pull_request", "title": "plain", "author": "ålice",
        "url": "https://github.com/org/repo/pull/7", "data": {},
    })


def test_timestamps_are_utc_with_microseconds_whatever_the_zone():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    on_the_second = dt.datetime(2026, 1, 15, 12, 30, 5, tzinfo=plus_two)
    encoded = json.loads(_encoded(_new_event(timestamp=on_the_second)))
    assert encoded["timestamp"] == "2026-01-15T10:30:05.000000+00:00"
    # A batch shares one moment; the next, different moment must not reuse its text.
    assert json.loads(_encoded(_new_event()))["timestamp"] == MOMENT_TEXT


def test_optional_fields_left_out_when_none_and_kept_in_place_when_set():
    assert _encoded(Resumed(MOMENT, True, 5, "ep", 9, 4)) == _json({
        "type": "resumed", "timestamp": MOMENT_TEXT, "recovered": True, "since": 5, "epoch": "ep", "seq": 9,
        "replayed": 4,
    })
    assert _encoded(Resumed(MOMENT, False, 5, "ep", 9, 0, "gone")) == _json({
        "type": "resumed", "timestamp": MOMENT_TEXT, "recovered": False, "since": 5, "epoch": "ep", "seq": 9,
        "replayed": 0, "reason": "gone",
    })
    assert _encoded(Subscribed(MOMENT, None, ["org/*"])) == _json({
        "type": "subscribed", "timestamp": MOMENT_TEXT, "repos": ["org/*"],
    })


def test_nested_messages_enums_and_an_absent_optional():
    system = SystemStatus(MOMENT, "healthy", {"api": "operational"}, "All systems operational", "info")
    top = [RankedRepo(1, "org/repo", 12.5, TrendStatus.HOT, Momentum.ACCELERATING, 1.5, 30, "Busy ✓")]
    system_dict = {"timestamp": MOMENT_TEXT, "status": "healthy", "components": {"api": "operational"},
                   "message": "All systems operational", "severity": "info"}
    assert _encoded(Snapshot(MOMENT, "ep", 3, top, None, system)) == _json({
        "type": "snapshot", "timestamp": MOMENT_TEXT, "epoch": "ep", "seq": 3,
        "top": [{"rank": 1, "repo_full_name": "org/repo", "activity_score": 12.5, "trend_status": "🔥 HOT",
                 "momentum": "ACCELERATING", "velocity": 1.5, "events_in_window": 30, "summary": "Busy ✓"}],
        "system": system_dict,
    })
    metrics = MetricsUpdate(MOMENT, 10, 2, 0, 1, {"total_events": "+10"})
    assert _encoded(Snapshot(MOMENT, "ep", 3, [], metrics, system), seq=None) == _json({
        "type": "snapshot", "timestamp": MOMENT_TEXT, "epoch": "ep", "seq": 3, "top": [],
        "metrics": {"timestamp": MOMENT_TEXT, "total_events": 10, "active_repositories": 2, "total_queries": 0,
                    "websocket_connections": 1, "changes": {"total_events": "+10"}},
        "system": system_dict,
    })
    summary = SummaryUpdate(MOMENT, "org/repo", "Ça va", 3.25, TrendStatus.HOT, Momentum.STEADY, 4)
    assert _encoded(summary, seq=7) == _json({
        "type": "summary_update", "timestamp": MOMENT_TEXT, "repo_full_name": "org/repo", "summary": "Ça va",
        "activity_score": 3.25, "trend_status": "🔥 HOT", "momentum": "STEADY", "events_in_window": 4, "seq": 7,
    })


def test_values_of_any_type_go_through_the_converter():
    later = dt.datetime(2026, 1, 15, 11, 0, tzinfo=dt.timezone.utc)
    error = Error(MOMENT, "SOURCE_ERROR", "x", "warning", {"retry_at": later, "nested": [{"at": later}]})
    assert _encoded(error, seq=1) == _json({
        "type": "error", "timestamp": MOMENT_TEXT, "error_code": "SOURCE_ERROR", "message": "x",
        "severity": "warning",
        "details": {"retry_at": "2026-01-15T11:00:00.000000+00:00",
                    "nested": [{"at": "2026-01-15T11:00:00.000000+00:00"}]},
        "seq": 1,
    })


def test_what_orjson_refuses_is_written_by_json_escaped_to_ascii():
    lone_surrogate = _new_event(title="broken \ud800 ✓")
    assert _encoded(lone_surrogate, seq=1) == json.dumps({
        "type": "new_event", "timestamp": MOMENT_TEXT, "event_id": "pull_request_org/repo#7_opened",
        "repo_full_name": "org/repo", "event_type": "pull_request", "title": "broken \ud800 ✓", "author": "ålice",
        "url": "https://github.com/org/repo/pull/7",
        "data": {"number": 7, "merged": False, "additions": 12, "head": "tøpic", "action": "opened"},
        "seq": 1,
    }, separators=(",", ":")).encode()
    huge = _new_event(title="t", data={"n": 2**70, "at": MOMENT})
    assert json.loads(_encoded(huge))["data"] == {"n": 2**70, "at": MOMENT_TEXT}


def test_encoded_bytes_are_a_buffer_of_their_own_size():
    """orjson (3.12 on) hands back a buffer it does not shrink (4 KB behind a 500-byte
    message); whoever keeps encoded messages would pin the rest, so ``encode`` copies."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [wire.encode(_new_event(), seq=n) for n in range(200)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used < 2 * sum(len(encoded) for encoded in kept)
