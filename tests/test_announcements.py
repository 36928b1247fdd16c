"""Scoring and announcements through the real pipeline: rankings, trends, summaries."""

from __future__ import annotations

import datetime as dt

import trio
import trio_websocket

from conftest import collect_for, ScriptedSource, make_settings, receive_json, receive_until, start_app, ws_url
from osintd.models import Event, EventType, TrendStatus
from osintd.scorer import DIGITS, ScoringModel, Scorer, classify


def _burst(source: ScriptedSource, repo: str, count: int, at: dt.datetime) -> list[Event]:
    return [source.event(repo, at=at) for _ in range(count)]


async def test_ranking_change_up_down_new_dropped(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source, model=ScoringModel())
        async with trio_websocket.open_websocket_url(ws_url(app, "types=ranking_change&snapshot=0")) as ws:
            await receive_json(ws)
            at = app.clock.now()
            # r01 gets 12 events … r12 gets 1: the ranking is r01..r12.
            for index in range(1, 13):
                await source.emit(*_burst(source, f"org/r{index:02d}", 13 - index, at))
            first = await collect_for(ws, 5.0, "ranking_change")
            assert [(m["repo_full_name"], m["new_rank"], m["change"]) for m in first] == [
                (f"org/r{index:02d}", index, "new") for index in range(1, 11)]

            # r12 jumps to first place: it enters, r01..r09 move down, r10 drops out.
            await source.emit(*_burst(source, "org/r12", 15, at))
            second = {m["repo_full_name"]: (m["old_rank"], m["new_rank"], m["change"])
                      for m in await collect_for(ws, 5.0, "ranking_change")}
            assert second.pop("org/r12") == (12, 1, "new")
            assert second.pop("org/r10") == (10, 11, "dropped")
            assert second == {f"org/r{index:02d}": (index, index + 1, "down") for index in range(1, 10)}

            # r05 (8 events) overtakes everyone: up from 6 to 1; the five above it move down.
            await source.emit(*_burst(source, "org/r05", 9, at))
            third = {m["repo_full_name"]: (m["old_rank"], m["new_rank"], m["change"])
                     for m in await collect_for(ws, 5.0, "ranking_change")}
            assert third == {"org/r05": (6, 1, "up"), "org/r12": (1, 2, "down"), "org/r01": (2, 3, "down"),
                             "org/r02": (3, 4, "down"), "org/r03": (4, 5, "down"), "org/r04": (5, 6, "down")}
        nursery.cancel_scope.cancel()


async def test_trend_goes_hot_then_cools_down(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(announce_interval=60.0), source=source, model=ScoringModel())
        async with trio_websocket.open_websocket_url(ws_url(app, "types=trend_change&snapshot=0")) as ws:
            await receive_json(ws)
            now = app.clock.now()
            # A baseline from 20 hours ago, then 25 people star a repository now: velocity far above 1.
            await source.emit(source.event("calm/base", at=now - dt.timedelta(hours=20)))
            await source.emit(*(source.event("hot/repo", EventType.STAR, action="started", author=f"fan{n}", at=now)
                                for n in range(25)))
            up = await receive_until(ws, lambda m: m.get("repo_full_name") == "hot/repo")
            up = up[-1]
            assert (up["old_status"], up["new_status"], up["momentum"]) == ("💤 QUIET", "🔥 HOT", "ACCELERATING")
            assert up["velocity"] > 1.5 and up["activity_score"] >= 40
            # The reasons: 25 people, all in the last hour, starring.
            assert (up["people"], up["people_recent"], up["drivers"]) == (25, 25, ["star"])
            # Taken only once it held for the model's trend_hold (10 minutes), on the 60 s ticks.
            assert dt.datetime.fromisoformat(up["timestamp"]) - now >= dt.timedelta(minutes=10)
            # Two quiet hours later: the score has decayed a little, the rate has fallen away.
            down = (await receive_until(ws, lambda m: m["type"] == "trend_change"))[-1]  # heartbeats pass filters
            assert down["repo_full_name"] == "hot/repo"
            assert (down["old_status"], down["new_status"]) == ("🔥 HOT", "📉 COOLING")
            assert down["velocity"] < 0.67 and down["momentum"] == "DECELERATING"
        nursery.cancel_scope.cancel()


def test_hysteresis_keeps_a_status_at_its_threshold():
    model = ScoringModel()
    S = TrendStatus
    hot, active, quiet = model.hot_score, model.active_score, model.quiet_score
    assert classify(model, hot, 1.5, S.ACTIVE) is S.HOT                 # enters at the threshold
    assert classify(model, hot * 0.87, 1.4, S.HOT) is S.HOT             # stays just below it
    assert classify(model, hot * 0.87, 1.4, S.ACTIVE) is S.ACTIVE       # but does not enter there
    assert classify(model, hot * 0.73, 1.4, S.HOT) is S.ACTIVE          # leaves well below it
    assert active < hot * 0.73
    assert classify(model, quiet * 3, 0.7, S.COOLING) is S.COOLING      # cooling holds up to 0.67 × 1.2
    assert classify(model, quiet * 3, 0.7, S.STABLE) is S.STABLE


def _event(repo, kind, action=None, author="alice", at=None, n=[0]):
    n[0] += 1
    return Event(f"e{n[0]}", repo, kind, "t", author, "u", at or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                 action=action, is_bot=author.endswith("[bot]"))


def test_people_count_machines_saturate_bots_weigh_nothing_and_scores_decay():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    model = ScoringModel()
    w = model.weights
    scorer = Scorer(model)
    for person in ("ann", "bob", "cy"):
        scorer.accept(_event("a/people", EventType.PULL_REQUEST, "merged", author=person, at=t0))
    for _ in range(40):  # one account pushing like a machine, two people once each
        scorer.accept(_event("a/machine", EventType.COMMIT, author="cron", at=t0))
    for person in ("ann", "bob"):
        scorer.accept(_event("a/machine", EventType.COMMIT, author=person, at=t0))
    for _ in range(3):  # a star counts once per actor
        scorer.accept(_event("a/stars", EventType.STAR, "started", author="same", at=t0))
    scorer.accept(_event("a/stars", EventType.STAR, "started", author="other", at=t0))
    scorer.accept(_event("a/bot", EventType.COMMIT, author="dependabot[bot]", at=t0))
    scorer.accept(_event("a/bot", EventType.COMMIT, author="ann", at=t0))
    scorer.scoreboard()
    score = {name: scorer.score_of(name).activity_score for name in ("a/people", "a/machine", "a/stars", "a/bot")}
    assert score["a/people"] == 3 * w["pull_request.merged"]
    # 40 pushes add at most twice one push (1 + 1/2 + 1/4 …), and one account making 40 of
    # the 42 events leaves a breadth of 2 · (1 − 40/42).
    saturated = w["commit"] * (2 - 0.5 ** 39)
    assert score["a/machine"] == round((saturated + 2 * w["commit"]) * 2 * (1 - 40 / 42), DIGITS) < 0.5
    assert score["a/stars"] == round(2 * w["star"] * 2 * (1 - 3 / 4), DIGITS)  # "same" made 3 of the 4 events
    assert score["a/bot"] == w["commit"]  # ann's push: the bot's weighs nothing
    people = scorer.score_of("a/people")
    assert (people.people, people.people_recent, people.drivers) == (3, 3, ("pull_request",))
    assert scorer.score_of("a/bot").people == 1  # a bot is not one of the people
    # One half-life later every score has halved (event time moves "now").
    scorer.accept(_event("a/clock", EventType.COMMIT, at=t0 + dt.timedelta(seconds=model.half_life)))
    scorer.scoreboard()
    assert scorer.score_of("a/people").activity_score == round(score["a/people"] / 2, DIGITS)
    # A duplicate id is not scored twice.
    duplicate = _event("a/push", EventType.COMMIT, at=t0)
    assert scorer.accept(duplicate) and not scorer.accept(duplicate)


async def test_summary_names_recent_focus(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source, model=ScoringModel())
        async with trio_websocket.open_websocket_url(ws_url(app, "types=summary_update&snapshot=0")) as ws:
            await receive_json(ws)
            await source.emit(*(source.event("docs/repo", title=t) for t in (
                "Fix crash in parser", "Fix bug in tokenizer", "Update docs for CLI", "Fix typo")))
            summary = await receive_json(ws)
        nursery.cancel_scope.cancel()
    assert summary["repo_full_name"] == "docs/repo" and summary["events_in_window"] == 4
    assert summary["summary"].startswith("Low activity with 4 events from 4 people in 24h. Recent focus on bug fixes")
    assert "documentation" in summary["summary"]


async def test_min_people_decides_who_is_ranked(autojump_clock):
    """--min-people: a repository of one person is ranked with 1, not with the default 3."""
    for min_people, ranked in ((3, []), (1, ["solo/repo"])):
        source = ScriptedSource()
        async with trio.open_nursery() as nursery:
            app = await start_app(nursery, make_settings(min_people=min_people), source=source)
            await source.emit(*(source.event("solo/repo", author="only") for _ in range(3)))
            await trio.sleep(3)
            assert [row.repo_full_name for row in app.hub.snapshot().top] == ranked
            nursery.cancel_scope.cancel()
