"""The demo source: reproducible, every event kind, bursts that make trends move, incidents."""

from __future__ import annotations

import collections
import datetime as dt

import trio
import trio_websocket

from conftest import collect_for, make_settings, receive_json, start_app, ws_url
from osintd.demo import DemoSettings, DemoSource


def _events(seed: int, count: int) -> list:
    moment = dt.datetime(2026, 1, 15, tzinfo=dt.timezone.utc)
    source = DemoSource(DemoSettings(seed=seed), lambda: moment)
    return [source.make_event(moment, index * 0.25) for index in range(count)]


def test_same_seed_same_events_other_seed_other_events():
    first, again, other = _events(42, 300), _events(42, 300), _events(43, 300)
    assert first == again
    assert [e.event_id for e in first] != [e.event_id for e in other]


def test_every_event_kind_appears_with_believable_fields():
    events = _events(1, 3000)
    kinds = collections.Counter((str(e.event_type), e.action) for e in events)
    for kind in [("commit", None), ("pull_request", "opened"), ("pull_request", "merged"),
                 ("pull_request", "closed"), ("issue", "opened"), ("issue", "closed"), ("comment", "created"),
                 ("review", "submitted"), ("release", "published"), ("star", "started"), ("fork", None),
                 ("create", "tag")]:
        assert kinds[kind] > 0, kind
    repos = collections.Counter(e.repo_full_name for e in events)
    assert 25 <= len(repos) <= 40  # a few dozen repositories, long-tailed
    assert repos.most_common(1)[0][1] > 5 * repos.most_common()[-1][1]
    assert any(e.is_bot for e in events) and all(e.url.startswith("https://github.com/") for e in events)
    assert all(e.title for e in events)
    commit = next(e for e in events if str(e.event_type) == "commit" and not e.is_bot)
    assert {"additions", "deletions", "files_changed"} <= set(commit.data)


async def test_demo_trends_heat_up_and_cool_down_and_incidents_come_and_go(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(demo_seed=11, demo_rate=4.0, summary_interval=10.0))
        query = "snapshot=0&types=trend_change,system_status,error"
        async with trio_websocket.open_websocket_url(ws_url(app, query)) as ws:
            trends, statuses, errors = [], [], []
            with trio.move_on_after(15 * 60):
                while True:
                    message = await receive_json(ws)
                    if message["type"] in ("connection", "heartbeat"):
                        continue
                    {"trend_change": trends, "system_status": statuses, "error": errors}[message["type"]].append(message)
        nursery.cancel_scope.cancel()
    became_hot = {m["repo_full_name"] for m in trends if m["new_status"] == "🔥 HOT"}
    cooled = {m["repo_full_name"] for m in trends if m["old_status"] == "🔥 HOT"}
    assert became_hot and became_hot & cooled, "a burst should make a repository HOT and let it cool down"
    assert errors and errors[0]["error_code"] == "GITHUB_RATE_LIMITED" and errors[0]["details"]["simulated"]
    assert "degraded" in [m["status"] for m in statuses]
    degraded_at = [m["status"] for m in statuses].index("degraded")
    assert "healthy" in [m["status"] for m in statuses[degraded_at:]]


async def test_the_warm_up_history_is_scored_but_not_broadcast(autojump_clock):
    """Issue 12: the ~1,500 past events the demo starts with fill the ranking, but a
    client connecting at once gets live new_events only (it was flooded and dropped)."""
    history = DemoSource(DemoSettings(rate=20.0, seed=11), lambda: dt.datetime.now(dt.timezone.utc)).history()
    history_ids = {event.event_id for event in history}
    assert len(history_ids) > 1000
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(demo_seed=11, demo_rate=20.0))
        # At once, and resuming from seq 0: every broadcast there ever was reaches this client.
        async with trio_websocket.open_websocket_url(ws_url(app, f"since=0&epoch={app.hub.epoch}"),
                                                     message_queue_size=4096) as ws:
            messages = await collect_for(ws, 3.0)
        async with trio_websocket.open_websocket_url(ws_url(app)) as ws:
            await receive_json(ws)
            snapshot = await receive_json(ws)
        # The app's history is the one regenerated above: every event of it was scored already.
        rescored = [event.event_id for event in history if app.scorer.accept(event)]
        nursery.cancel_scope.cancel()
    assert messages[0]["type"] == "connection" and messages[1]["type"] == "resumed" and messages[1]["recovered"]
    new_events = [m["event_id"] for m in messages if m["type"] == "new_event"]
    assert not history_ids & set(new_events), "warm-up history was broadcast as new_event"
    assert len(new_events) >= 20 and len(set(new_events)) == len(new_events)  # live ones (about 60) do come
    assert any(m["type"] == "ranking_change" for m in messages)  # the warm-up still ranks
    top = snapshot["top"]
    assert snapshot["type"] == "snapshot" and len(top) == 10 and all(row["activity_score"] > 0 for row in top)
    # Scores from the warm-up, not only from the few live events so far.
    assert sum(row["events_in_window"] for row in top) > 2 * len(new_events)
    assert rescored == [] and app.scorer.backfilled == len(history)


async def test_high_demo_rate_keeps_up(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(demo_seed=5, demo_rate=3000.0))
        await trio.sleep(0.5)  # past the start-up history
        before = app.scorer.total_events
        await trio.sleep(2)
        after = app.scorer.total_events
        nursery.cancel_scope.cancel()
    assert 5000 <= after - before <= 7000  # 3,000/s for two (virtual) seconds


def test_a_demo_ramp_steps_through_its_rates_then_holds_the_base_rate():
    settings = DemoSettings(rate=7.0, ramp=((50.0, 10.0), (200.0, 5.0)))
    assert [settings.rate_at(t) for t in (0.0, 9.9, 10.0, 14.9, 15.0, 1e6)] == [50.0, 50.0, 200.0, 200.0, 7.0, 7.0]
    assert DemoSettings(rate=3.0).rate_at(0.0) == 3.0


async def test_the_demo_follows_its_ramp(autojump_clock):
    now = lambda: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # noqa: E731
    source = DemoSource(DemoSettings(rate=1.0, seed=3, history=0.0, incidents=False,
                                     ramp=((20.0, 10.0), (200.0, 10.0))), now)
    send, receive = trio.open_memory_channel(0)
    health_send, _ = trio.open_memory_channel(10)
    per_step = collections.Counter()

    async def count() -> None:
        started = trio.current_time()
        async for item in receive:
            per_step[int((trio.current_time() - started) // 10)] += len(item) if isinstance(item, list) else 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count)
        with trio.move_on_after(30.0):
            await source.run(send, health_send)
        nursery.cancel_scope.cancel()
    # Poisson counts: 200, 2,000 and 10 expected; the bounds are many standard deviations wide.
    assert 130 < per_step[0] < 270 and 1800 < per_step[1] < 2200 and per_step[2] < 30
