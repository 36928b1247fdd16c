"""Issue 14, finding 3: one event dated in the future must not move "now".

A signed webhook dated 9999 (or one such line in a replay) used to become "now":
every other repository decayed to nothing and the Top 10 became that one
repository for good.  Live, a time more than ``FUTURE_SKEW`` after the wall clock
is scored as of then; a replay drops a time far from the file's other events
unless the events after it confirm the jump (concatenated hours with a gap).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json

import httpx
import trio
import trio_websocket

from conftest import collect_for, make_settings, receive_json, start_app, ws_url
from fakegithub import events_api_item
from osintd.models import Event, EventType
from osintd.replay import SpanGuard
from osintd.scorer import FUTURE_SKEW, ScoringModel, Scorer
from test_webhooks import SAMPLES, SECRET, _post, _sign

UTC = dt.timezone.utc


def _star(repo: str, login: str) -> bytes:
    body = json.loads((SAMPLES / "webhooks" / "watch.started.json").read_text())
    body["repository"]["full_name"] = repo
    body["repository"]["name"] = repo.split("/")[1]
    body["repository"]["owner"]["login"] = repo.split("/")[0]
    body["repository"]["html_url"] = f"https://github.com/{repo}"
    body["sender"]["login"] = login
    return json.dumps(body).encode()


async def test_a_signed_webhook_from_9999_does_not_empty_the_rankings(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(webhook_secret=SECRET))
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0")) as control:
        await receive_json(control)
        for n in range(4):  # four people star each of three repositories
            for repo in ("real/one", "real/two", "real/three"):
                body = _star(repo, f"person{n}")
                assert (await _post(app, "watch", body, f"d-{repo}-{n}", _sign(body))).status_code == 202
        await trio.sleep(3)
        before = {row.repo_full_name: row.activity_score for row in app.hub.snapshot().top}
        assert set(before) == {"real/one", "real/two", "real/three"}
        # A signed push from the year 9999 (its time is its own: repository.pushed_at, head_commit.timestamp).
        push = json.loads((SAMPLES / "webhooks" / "push.branch-created.json").read_text())
        push["head_commit"]["timestamp"] = "9999-12-31T23:59:59Z"
        push["repository"]["pushed_at"] = 253402300799
        raw = json.dumps(push).encode()
        assert (await _post(app, "push", raw, "d-evil-push", _sign(raw))).status_code == 202
        received = await collect_for(control, 3)
        assert any(m["type"] == "new_event" for m in received)  # the control client kept receiving
        after = {row.repo_full_name: row.activity_score for row in app.hub.snapshot().top}
        # Nothing decayed away: at most the decay of FUTURE_SKEW (5 minutes of a 6-hour half-life).
        assert all(after.get(name, 0.0) >= 0.95 * score for name, score in before.items()), (before, after)
        assert app.scorer._now() < dt.datetime(3000, 1, 1, tzinfo=UTC).timestamp()
        assert app.scorer.future_clamped >= 1
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{app.port}/metrics")).text
            health = await http.get(f"http://127.0.0.1:{app.port}/api/v1/health")
    assert f"osintd_events_future_clamped_total {float(app.scorer.future_clamped)}" in metrics
    assert health.status_code == 200


def test_a_live_event_from_the_future_is_scored_as_of_the_clock_plus_the_skew():
    wall = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    scorer = Scorer(ScoringModel(), wall_clock=lambda: wall)
    for n, at in enumerate((wall, wall + dt.timedelta(seconds=FUTURE_SKEW - 1), dt.datetime(9999, 1, 1, tzinfo=UTC))):
        assert scorer.accept(Event(f"e{n}", "org/repo", EventType.STAR, "", f"p{n}", "u", at, action="started"))
    assert scorer._now() == wall.timestamp() + FUTURE_SKEW and scorer.future_clamped == 1


def _events(times: list[float]) -> list[Event]:
    return [Event(f"e{n}", "org/r", EventType.COMMIT, "", "a", "u", dt.datetime.fromtimestamp(at, UTC))
            for n, at in enumerate(times)]


def test_the_span_guard_drops_a_lone_jump_and_keeps_a_confirmed_one():
    hour = dt.datetime(2015, 1, 1, tzinfo=UTC).timestamp()
    year_9999 = dt.datetime(9999, 1, 1, tzinfo=UTC).timestamp()
    # A hostile first line, one in the middle, one at the end; then a real gap of 30 hours.
    times = ([year_9999] + [hour + n for n in range(10)] + [year_9999 + 5] + [hour + 10 + n for n in range(10)]
             + [hour + 30 * 3600 + n for n in range(10)] + [year_9999 + 9])
    guard = SpanGuard()
    kept = guard.admit(_events(times)[:15]) + guard.admit(_events(times)[15:]) + guard.finish()
    assert guard.dropped == 3
    assert [e.event_id for e in kept] == [e.event_id for e in _events(times) if e.created_at.year < 9999]


async def test_a_replay_line_from_9999_is_dropped_and_counted(tmp_path, nursery, autojump_clock):
    end = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    lines = []
    for n in range(40):
        at = end - dt.timedelta(minutes=40 - n)
        lines.append(events_api_item(n, f"org/r{n % 4}", kind="WatchEvent", at=at.isoformat().replace("+00:00", "Z")))
        if n in (0, 20):
            lines.append(events_api_item(1000 + n, "evil/future", kind="WatchEvent", at="9999-12-31T23:59:59Z"))
    path = tmp_path / "hostile.json.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(line) for line in lines).encode()))
    app = await start_app(nursery, make_settings(replay=path))
    await app.sources[0].finished.wait()
    await trio.sleep(5)
    assert app.sources[0].out_of_span == 2
    assert app.scorer._now() <= end.timestamp()
    top = {row.repo_full_name: row.activity_score for row in app.hub.snapshot().top}
    assert set(top) == {f"org/r{k}" for k in range(4)} and all(score > 10 for score in top.values())
