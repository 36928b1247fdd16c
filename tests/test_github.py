"""The GitHub poller against a real loopback HTTP server standing in for GitHub."""

from __future__ import annotations

import datetime as dt
import logging

import httpx
import trio
import trio_websocket

from conftest import collect_for, make_settings, receive_json, retired_type_items, start_app, ws_url
from fakegithub import FakeGitHub, events_api_item
from osintd.clock import WallClock
from osintd.normalize import from_events_api

TOKEN = "ghp_s3cretTOKENvalue0123456789"
REPO = "octo-org/alpha"
PATH = f"/repos/{REPO}/events"


async def _fake(nursery, **kwargs) -> FakeGitHub:
    clock = WallClock()
    return await nursery.start(FakeGitHub(lambda: clock.now().timestamp(), **kwargs).serve)


async def _app(nursery, fake: FakeGitHub, repos=(REPO,), token: str | None = TOKEN, **overrides):
    settings = make_settings(repos=tuple(repos), github_api_url=fake.url, github_token=token, **overrides)
    return await start_app(nursery, settings)


async def _new_events(ws, count: int) -> list[dict]:
    found = []
    while len(found) < count:
        message = await receive_json(ws)
        if message["type"] == "new_event":
            found.append(message)
    return found


async def test_conditional_requests_and_poll_interval(nursery, autojump_clock):
    fake = await _fake(nursery, poll_interval=90)
    fake.add_events(PATH, events_api_item(1, REPO), events_api_item(2, REPO))
    app = await _app(nursery, fake)
    await trio.sleep(400)
    requests = fake.requests_to(PATH)
    assert len(requests) == 5  # at 0, 90, 180, 270, 360 s
    gaps = [round(b.at - a.at) for a, b in zip(requests, requests[1:])]
    assert gaps == [90, 90, 90, 90]
    assert "if-none-match" not in requests[0].headers
    assert all(r.headers["if-none-match"].startswith('"') for r in requests[1:])
    assert [r.status for r in requests] == [200, 304, 304, 304, 304]
    assert fake.remaining == fake.limit - 1  # a 304 costs nothing
    assert app.scorer.total_events == 2


async def test_first_poll_paginates_then_dedupes(nursery, autojump_clock):
    fake = await _fake(nursery)
    fake.add_events(PATH, *(events_api_item(n, REPO, at=f"2026-01-15T10:{n % 60:02d}:00Z") for n in range(250)))
    app = await _app(nursery, fake)
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event"),
                                                 message_queue_size=512) as ws:
        await receive_json(ws)
        await trio.sleep(30)
        assert [r.query.get("page", "1") for r in fake.requests_to(PATH)] == ["1", "2", "3"]
        assert app.scorer.total_events == 250
        # New events plus the old ones again (the ETag changed): only the new ones come out.
        fake.add_events(PATH, events_api_item(500, REPO), events_api_item(501, REPO))
        await trio.sleep(61)
        assert app.scorer.total_events == 252
        assert [r.query.get("page", "1") for r in fake.requests_to(PATH)][3:] == ["1"]


async def test_the_first_poll_is_backfill_scored_not_broadcast_and_later_polls_are_news(nursery, autojump_clock):
    """Issue 12: the 300 events a target's first poll finds are old news (no cursor was
    stored for it): they rank the repository but are no new_event; what later polls find is."""
    fake = await _fake(nursery)
    clock = WallClock()
    old = [events_api_item(n, REPO, kind="WatchEvent", at=(clock.now() - dt.timedelta(minutes=300 - n)).isoformat())
           for n in range(300)]
    fake.add_events(PATH, *old)
    app = await _app(nursery, fake)
    http = f"http://127.0.0.1:{app.port}"
    # Resuming from seq 0: every broadcast there ever was reaches this client, however early.
    async with trio_websocket.open_websocket_url(ws_url(app, f"since=0&epoch={app.hub.epoch}&types=new_event"),
                                                 message_queue_size=1024) as ws, httpx.AsyncClient() as client:
        assert [(await receive_json(ws))["type"] for _ in range(2)] == ["connection", "resumed"]
        first = await collect_for(ws, 30, "new_event")
        assert [r.query.get("page", "1") for r in fake.requests_to(PATH)] == ["1", "2", "3"]
        assert first == [] and app.scorer.total_events == 300 and app.scorer.backfilled == 300
        repos = (await client.get(f"{http}/api/v1/repos")).json()["repositories"]
        assert [(r["repo_full_name"], r["events_in_window"]) for r in repos] == [(REPO, 300)]
        assert repos[0]["activity_score"] > 0
        assert (await client.get(f"{http}/api/v1/events")).json()["events"] == []
        assert "osintd_events_backfilled_total 300.0" in (await client.get(f"{http}/metrics")).text

        new = [events_api_item(500 + n, REPO, kind="PushEvent", at=clock.now().isoformat()) for n in range(2)]
        fake.add_events(PATH, *new)
        later = await collect_for(ws, 61, "new_event")
    assert [m["event_id"] for m in later] == [from_events_api(item).event_id for item in new]
    assert app.scorer.total_events == 302 and app.scorer.backfilled == 300


async def test_rate_limit_zero_waits_for_reset(nursery, autojump_clock):
    fake = await _fake(nursery)
    fake.add_events(PATH, events_api_item(1, REPO))
    reset = int(fake.wall_time()) + 1000
    fake.then(PATH, 403, b'{"message": "API rate limit exceeded"}',
              [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", str(reset))])
    app = await _app(nursery, fake)
    async with trio_websocket.open_websocket_url(ws_url(app, f"since=0&epoch={app.hub.epoch}&types=error,system_status")) as ws:
        await receive_json(ws)
        messages = [m for m in await collect_for(ws, 1200) if m["type"] in ("error", "system_status")]
    first, second = fake.requests_to(PATH)[:2]
    assert second.at - first.at >= 995
    error = next(m for m in messages if m["type"] == "error")
    assert error["error_code"] == "GITHUB_RATE_LIMITED" and 990 <= error["details"]["retry_in_seconds"] <= 1000
    assert any(m["type"] == "system_status" and m["status"] == "degraded"
               and m["components"]["github"] == "degraded" for m in messages)


async def test_secondary_limit_honours_retry_after(nursery, autojump_clock):
    fake = await _fake(nursery)
    fake.add_events(PATH, events_api_item(1, REPO))
    fake.then(PATH, 429, b'{"message": "secondary rate limit"}', [("Retry-After", "120")])
    app = await _app(nursery, fake)
    await trio.sleep(200)
    first, second = fake.requests_to(PATH)[:2]
    assert 119 <= second.at - first.at <= 125
    assert app.scorer.total_events == 1


async def test_server_errors_back_off_then_recover(nursery, autojump_clock):
    fake = await _fake(nursery)
    fake.add_events(PATH, events_api_item(1, REPO))
    for _ in range(4):
        fake.then(PATH, 502, b"<html>Bad gateway</html>", [("Content-Type", "text/html")])
    app = await _app(nursery, fake)
    async with trio_websocket.open_websocket_url(ws_url(app, f"since=0&epoch={app.hub.epoch}&types=error,system_status")) as ws:
        await receive_json(ws)
        messages = await collect_for(ws, 60)
        errors = [m for m in messages if m["type"] == "error"]
        statuses = [m for m in messages if m["type"] == "system_status"]
    times = [r.at for r in fake.requests_to(PATH)]
    gaps = [round(b - a) for a, b in zip(times, times[1:])]
    assert gaps[:4] == [2, 4, 8, 16]  # exponential backoff, then success
    assert [r.status for r in fake.requests_to(PATH)][:5] == [502, 502, 502, 502, 200]
    assert errors[0]["error_code"] == "GITHUB_UNAVAILABLE" and errors[0]["details"]["retry_in_seconds"] == 2
    assert errors[0]["details"]["affected_repos"] == [REPO]
    assert [s["status"] for s in statuses][-2:] == ["degraded", "healthy"]
    assert app.scorer.total_events == 1


async def test_malformed_json_is_an_error_and_polling_goes_on(nursery, autojump_clock):
    fake = await _fake(nursery)
    fake.add_events(PATH, events_api_item(1, REPO))
    fake.then(PATH, 200, b'[{"id": "1", "type": ', [("X-Poll-Interval", "60")])
    app = await _app(nursery, fake)
    async with trio_websocket.open_websocket_url(ws_url(app, f"since=0&epoch={app.hub.epoch}&types=error")) as ws:
        await receive_json(ws)
        errors = [m for m in await collect_for(ws, 10) if m["type"] == "error"]
    assert [e["error_code"] for e in errors] == ["GITHUB_BAD_RESPONSE"]
    assert app.scorer.total_events == 1  # the next poll worked


async def test_token_is_sent_and_never_logged(nursery, autojump_clock, caplog):
    caplog.set_level(logging.DEBUG)
    fake = await _fake(nursery)
    fake.add_events(PATH, events_api_item(1, REPO))
    fake.then(PATH, 500)
    await _app(nursery, fake, log_level="debug")
    await trio.sleep(10)
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake.requests_to(PATH))
    assert caplog.records and not any(TOKEN in record.getMessage() for record in caplog.records)
    assert TOKEN not in caplog.text


async def test_budget_spreads_requests_over_the_hour_without_token(nursery, autojump_clock):
    fake = await _fake(nursery, limit=60)
    repos = [f"octo-org/r{i}" for i in range(3)]
    for repo in repos:
        fake.add_events(f"/repos/{repo}/events", events_api_item(1, repo))
    app = await _app(nursery, fake, repos=repos, token=None)
    await trio.sleep(3600)
    assert len(fake.requests) <= 0.8 * 60 + len(repos)
    per_repo = [len(fake.requests_to(f"/repos/{repo}/events")) for repo in repos]
    assert per_repo == [16, 16, 16]  # every 3 × 3600 / (60 × 0.8) = 225 s
    assert "authorization" not in fake.requests[0].headers
    health = app.sources[0].status()
    assert health["budget"]["limit"] == 60 and [t["interval_seconds"] for t in health["targets"]] == [225.0] * 3


async def test_a_poll_whose_later_page_fails_is_read_again_whole(nursery, autojump_clock):
    """Page 1 answered, page 2 failed: the poll is retried from page 1 without page 1's
    ETag (which would bring a 304, and this poll's events would never come)."""
    fake = await _fake(nursery)
    fake.add_events(PATH, *(events_api_item(n, REPO, at=f"2026-01-15T10:{n % 60:02d}:00Z") for n in range(250)))
    fake.fail_page(PATH, 2, 500)
    app = await _app(nursery, fake)
    await trio.sleep(60)
    statuses = [(r.query.get("page", "1"), r.status) for r in fake.requests_to(PATH)]
    assert statuses[:5] == [("1", 200), ("2", 500), ("1", 200), ("2", 200), ("3", 200)]
    assert app.scorer.total_events == 250


async def test_gap_warning_when_a_whole_page_is_new(nursery, autojump_clock, caplog):
    fake = await _fake(nursery, per_page_max=10)
    fake.add_events(PATH, events_api_item(1, REPO))
    app = await _app(nursery, fake)
    await trio.sleep(5)
    fake.add_events(PATH, *(events_api_item(100 + n, REPO) for n in range(30)))
    await trio.sleep(70)
    assert "events may have been missed" in caplog.text and app.sources[0].stats.gaps == 1
    assert app.scorer.total_events == 31  # the next pages were fetched too


async def test_one_failing_repository_does_not_stop_the_others(nursery, autojump_clock):
    fake = await _fake(nursery)
    good = "octo-org/good"
    fake.add_events(f"/repos/{good}/events", events_api_item(1, good))
    app = await _app(nursery, fake, repos=("octo-org/missing", good))
    await trio.sleep(200)
    assert {r.status for r in fake.requests_to("/repos/octo-org/missing/events")} == {404}
    assert len(fake.requests_to(f"/repos/{good}/events")) >= 3
    assert app.scorer.total_events == 1
    status = app.sources[0].status()
    assert [t["last_status"] for t in status["targets"]] == ["GITHUB_HTTP_404", "ok"]


async def test_items_osintd_does_not_use_are_counted_by_type_in_metrics(nursery, autojump_clock):
    fake = await _fake(nursery)
    unused_action = events_api_item(7, REPO, kind="WatchEvent")
    unused_action.update(type="IssuesEvent", payload={"action": "labeled", "issue": {"number": 3}})
    fake.add_events(PATH, events_api_item(1, REPO), unused_action, *retired_type_items())
    app = await _app(nursery, fake)
    await trio.sleep(5)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{app.port}/metrics")).text
    assert app.scorer.total_events == 1
    for kind in ("IssuesEvent", "FollowEvent", "GistEvent", "DownloadEvent", "TeamAddEvent"):
        assert f'osintd_events_skipped_total{{source="poll",type="{kind}"}} 1.0' in metrics


async def test_no_gap_warning_for_a_target_that_remembers_no_ids(nursery, autojump_clock, caplog):
    """A target restored from the state store (or by a new cluster leader) is primed with an
    empty seen-id window: a whole page looks new without saying anything was missed."""
    fake = await _fake(nursery, per_page_max=10)
    fake.add_events(PATH, events_api_item(1, REPO))
    app = await _app(nursery, fake)
    await trio.sleep(5)
    target = app.sources[0].targets[0]
    assert target.primed
    target.seen.clear()  # as restore() leaves it: primed, ETag kept, no ids remembered
    fake.add_events(PATH, *(events_api_item(100 + n, REPO) for n in range(30)))
    await trio.sleep(70)
    assert "events may have been missed" not in caplog.text and app.sources[0].stats.gaps == 0
    assert app.scorer.total_events == 31  # the next pages were still fetched
