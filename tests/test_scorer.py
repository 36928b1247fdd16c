"""The incremental scorer against the model computed the slow, obvious way.

The scorer brings a repository up to date only when it got events or its
wake-up time came; the reference here recomputes every repository from its
raw events at every tick, exactly as the README states the model.  Over a
random stream with bursts, quiet spells, out-of-order and expired events,
accounts that push like machines and bots, both must agree at every tick on
the order, the Top 30 with its reasons, and every trend.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import random

import attrs
import pytest
import trio

from osintd.models import Backfill, CursorMark, Event, EventType, TrendStatus
from osintd.scorer import (DIGITS, DRIVERS, ONCE_PER_ACTOR, SUMMARIZED, ScoringModel, Scorer, breadth, classify,
                           momentum_of, run_scorer, summary_text, topic_of)

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).timestamp()
KINDS = [(EventType.COMMIT, None), (EventType.PULL_REQUEST, "merged"), (EventType.ISSUE, "opened"),
         (EventType.STAR, "started"), (EventType.COMMENT, None), (EventType.RELEASE, "published")]


@attrs.define
class RawEvent:
    at: float
    weight: float  # after the per-person saturation
    actor: str
    kind: str
    person: bool
    once: bool
    title: str


class ReferenceModel:
    """Every repository from its raw events, at every tick; trends with hysteresis and hold."""

    def __init__(self, model: ScoringModel) -> None:
        self.model = model
        self.events: dict[str, list[RawEvent]] = {}
        self.trends: dict[str, TrendStatus] = {}
        self.candidates: dict[str, tuple[TrendStatus, float]] = {}
        self.first: float | None = None

    def add(self, event: Event, now: float) -> None:
        m = self.model
        at = event.created_at.timestamp()
        self.first = at if self.first is None else min(self.first, at)
        if at < now - m.window:
            return
        events = self.events.setdefault(event.repo_full_name, [])
        kind, actor = event.event_type.value, event.author
        once = event.event_type in ONCE_PER_ACTOR
        # The events held as of the last board (expired ones go at a board), plus those added since.
        if once and any(e.once and e.kind == kind and e.actor == actor for e in events):
            weight = 0.0
        else:
            weight = m.weight_of(event) * m.repeat_factor ** sum(1 for e in events if e.actor == actor)
        events.append(RawEvent(at, weight, actor, kind, not event.is_bot, once, event.title))

    def board(self, now: float) -> list[tuple]:
        """(name, score, velocity, trend, count, people, people_recent, drivers, enough), ranked."""
        m = self.model
        decay = math.log(2) / m.half_life
        rows = []
        for repo in list(self.events):
            inside = sorted((e for e in self.events[repo] if e.at >= now - m.window), key=lambda e: e.at)
            self.events[repo] = inside
            if not inside:
                del self.events[repo]
                self.trends.pop(repo, None)
                self.candidates.pop(repo, None)
                continue
            mass = sum(e.weight * math.exp(-decay * max(now - e.at, 0.0)) for e in inside)
            top_count = max(collections.Counter(e.actor for e in inside).values())
            score = breadth(top_count, len(inside)) * mass
            recent = [e for e in inside if e.at >= now - m.recent]
            window_weight = sum(e.weight for e in inside)
            recent_weight = sum(e.weight for e in recent)
            observed = min(m.window, max(now - self.first, m.recent))
            velocity = (recent_weight + 1) / (window_weight * m.recent / observed + 1)
            score, velocity = round(score, DIGITS), round(velocity, DIGITS)
            people = len({e.actor for e in inside if e.person})
            people_recent = len({e.actor for e in recent if e.person})
            kinds: dict[str, float] = collections.defaultdict(float)
            for e in recent:
                kinds[e.kind] += e.weight
            drivers = tuple(k for w, k in sorted((-round(w, 6), k) for k, w in kinds.items() if round(w, 6) > 0))
            trend = self._trend(repo, now, score, velocity, people)
            rows.append((repo, score, velocity, trend, len(inside), people, people_recent, drivers[:DRIVERS],
                         people >= m.trend_people))
        rows.sort(key=lambda r: (not r[8], -r[1], r[0]))
        return rows

    def _trend(self, repo: str, now: float, score: float, velocity: float, people: int) -> TrendStatus:
        m = self.model
        current = self.trends.get(repo, TrendStatus.QUIET)
        status = TrendStatus.QUIET if people < m.trend_people else classify(m, score, velocity, current)
        if status is current:
            self.candidates.pop(repo, None)
            return current
        candidate = self.candidates.get(repo)
        if candidate is None or candidate[0] is not status:
            candidate = self.candidates[repo] = (status, now)
        if now >= candidate[1] + m.trend_hold:
            self.trends[repo] = status
            del self.candidates[repo]
            return status
        return current

    def summary(self, repo: str, trend: TrendStatus) -> str:
        """The summary of ``repo`` as of the last :meth:`board`: level, count, people, and the two
        most frequent topics of the newest titles (ties to the one seen first, newest first)."""
        inside = self.events[repo]
        newest_first = [e.title for e in inside[::-1][:self.model.summary_titles]]
        topics = collections.Counter(topic for topic in map(topic_of, newest_first) if topic)
        focus = " and ".join(topic for topic, _ in topics.most_common(2))
        return summary_text(self.model, trend, len(inside), focus, len({e.actor for e in inside if e.person}))


def _stream(seed: int, ticks: int):
    """(tick, events) with bursts on a few repositories, quiet spells, stragglers, and
    accounts that push to their own repository like machines."""
    rng = random.Random(seed)
    repos = [f"org{i % 7}/repo-{i}" for i in range(40)]
    hot = rng.sample(repos, 4)
    machines = {"logger/data": ["cron"], "beat/heartbeat": ["beat", "beat-helper"]}
    serial = 0
    for tick in range(ticks):
        count = rng.choice([0, 0, 1, 2, 3, 5, 8]) if tick % 300 < 200 else 0  # quiet spells
        if tick % 97 < 6:
            count += 12
        batch = []
        for _ in range(count):
            serial += 1
            repo = rng.choice(hot) if tick % 97 < 6 and rng.random() < 0.8 else rng.choice(repos)
            at = T0 + tick + rng.random()
            if rng.random() < 0.03:
                at -= rng.uniform(0, 120)  # out of order
            if rng.random() < 0.005:
                at -= 2000  # older than the window: news, but not scored
            kind, action = rng.choice(KINDS)
            author = f"user{rng.randrange(12)}" + ("[bot]" if rng.random() < 0.05 else "")
            batch.append(Event(f"e{serial}", repo, kind, rng.choice(["Fix crash", "Add API", "Bump deps", "Docs"]),
                               author, "https://github.com/x", dt.datetime.fromtimestamp(at, dt.timezone.utc),
                               action=action, is_bot=author.endswith("[bot]")))
        for repo, accounts in machines.items():
            if tick % 5 == 0:
                serial += 1
                author = accounts[0] if rng.random() < 0.9 else accounts[-1]
                if rng.random() < 0.1:
                    author = f"user{rng.randrange(12)}"  # now and then a person comes by
                batch.append(Event(f"e{serial}", repo, EventType.COMMIT, "Update data", author, "https://github.com/x",
                                   dt.datetime.fromtimestamp(T0 + tick + 0.5, dt.timezone.utc)))
        yield tick, batch


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_scoreboards_match_the_model_at_every_tick(seed):
    model = ScoringModel.for_demo(3.0)
    scorer = Scorer(model)
    reference = ReferenceModel(model)
    trend_changes = 0
    trends: dict[str, TrendStatus] = {}
    previous_top, previous_summaries = (), []
    for tick, batch in _stream(seed, 2400):
        now = T0 + tick
        for event in batch:
            before = scorer._now()
            assert scorer.accept(event)
            reference.add(event, max(before, event.created_at.timestamp()))
        # Summaries are written when read: read one tick late, after more events came,
        # they must still be the ones of their own scoreboard.
        if tick % 3 == 0:
            assert [s.summary for s in previous_top] == previous_summaries, f"summaries at tick {tick - 1}"
        previous_order = scorer.order()
        board = scorer.scoreboard(at=now + 1)
        expected = reference.board(now + 1)
        previous_top = board.top
        # The rank each Top entry had in the previous scoreboard (what a "new" enters from).
        for name in board.previous_ranks.keys() & {s.repo_full_name for s in board.top}:
            assert board.previous_ranks[name] == previous_order.index(name) + 1, f"previous rank at tick {tick}"
        assert {s.repo_full_name for s in board.top} & set(previous_order) <= board.previous_ranks.keys()
        previous_summaries = [reference.summary(s.repo_full_name, s.trend_status) for s in board.top]
        order = scorer.order()
        # Beyond the Top 30, equal rounded scores may come in any order (the exact one).
        assert sorted(order) == sorted(r[0] for r in expected), f"tracked at tick {tick}"
        assert board.tracked == len(expected)
        row_of = {r[0]: r for r in expected}
        along = [(row_of[name][8], row_of[name][1]) for name in order]
        assert along == sorted(along, reverse=True), f"order at tick {tick}"
        head = [r for r in expected if r[8]][:SUMMARIZED]
        assert [(s.repo_full_name, s.activity_score, s.velocity, s.trend_status, s.events_in_window, s.people,
                 s.people_recent, s.drivers, True) for s in board.top] == head, f"top at tick {tick}"
        assert order[:len(head)] == tuple(r[0] for r in head)
        assert all(s.momentum is momentum_of(model, s.velocity) for s in board.top)
        for rank, name in enumerate(order[:SUMMARIZED], start=1):
            assert board.rank(name) == scorer.rank_of(name) == rank
        current = {name: scorer.score_of(name).trend_status for name in order}
        trend_changes += sum(1 for name, trend in current.items() if trends.get(name, TrendStatus.QUIET) is not trend)
        trends = current
        assert {n: t for n, t in current.items() if t is not TrendStatus.QUIET} == \
            {r[0]: r[3] for r in expected if r[3] is not TrendStatus.QUIET}, f"trends at tick {tick}"
    assert trend_changes > 20  # the stream does exercise trends
    assert board.top and all(s.people >= model.trend_people for s in board.top)


def test_a_scoreboard_brings_up_to_date_only_what_changed():
    model = ScoringModel.for_demo(3.0)
    scorer = Scorer(model)
    for index in range(2000):
        scorer.accept(Event(f"e{index}", f"org/r{index}", EventType.COMMIT, "t", "a", "u",
                            dt.datetime.fromtimestamp(T0, dt.timezone.utc)))
    scorer.scoreboard(at=T0 + 1)
    refreshed = []
    original = scorer._refresh
    scorer._refresh = lambda repo, now, observed: (refreshed.append(repo.name), original(repo, now, observed))
    scorer.accept(Event("one-more", "org/r7", EventType.COMMIT, "t", "b", "u",  # a second person
                        dt.datetime.fromtimestamp(T0 + 1.5, dt.timezone.utc)))
    board = scorer.scoreboard(at=T0 + 2)
    assert refreshed == ["org/r7"]
    assert scorer.order()[0] == "org/r7" and board.tracked == 2000 and board.rank("org/r7") == 1


async def test_a_batch_of_events_passes_as_one_item_without_its_duplicates(autojump_clock):
    def event(n: int) -> Event:
        return Event(f"e{n}", "org/r", EventType.COMMIT, "t", "a", "u", dt.datetime.fromtimestamp(T0, dt.timezone.utc))

    scorer = Scorer(ScoringModel())
    events_in, events_out = trio.open_memory_channel(10)
    scored_in, scored_out = trio.open_memory_channel(10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_scorer, scorer, events_out, scored_in, 3600.0)
        await events_in.send([event(1), event(2)])
        await events_in.send([event(2), event(3)])  # e2 again: only e3 is new
        await events_in.send([event(1)])            # nothing new: nothing passed on
        await events_in.aclose()
        items = [item async for item in scored_out]
    assert [[e.event_id for e in item] for item in items[:2]] == [["e1", "e2"], ["e3"]]
    assert len(items) == 3 and items[2].tracked == 1  # then the last scoreboard


@pytest.mark.parametrize("live", [True, False], ids=["live", "event-time"])
async def test_a_backfill_passes_as_one_backfill_without_its_duplicates(autojump_clock, live):
    """A Backfill's events are scored, counted and remembered like any others, and
    go on as a Backfill of those accepted: the stages after know they are not news."""
    scorer = Scorer(ScoringModel())
    events_in, events_out = trio.open_memory_channel(10)
    scored_in, scored_out = trio.open_memory_channel(10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_scorer, scorer, events_out, scored_in, 3600.0, lambda: None, live)
        await events_in.send(_commit("e1"))
        await events_in.send(Backfill([_commit("e1"), _commit("b1"), _commit("b2"), _commit("b1")]))
        await events_in.send(CursorMark("org/r", '"etag"'))
        await events_in.send(Backfill([_commit("b2"), _commit("e1")]))  # nothing new: nothing passed on
        await events_in.send([_commit("b2"), _commit("e2")])  # a backfilled id is a duplicate later too
        await events_in.aclose()
        items = [item async for item in scored_out]
    assert items[0] in (_commit("e1"), [_commit("e1")])  # as it came (live) or in a list (event time)
    assert type(items[1]) is Backfill and [e.event_id for e in items[1].events] == ["b1", "b2"]
    assert items[2] == CursorMark("org/r", '"etag"')
    assert type(items[3]) is list and [e.event_id for e in items[3]] == ["e2"]
    assert len(items) == 5 and items[4].tracked == 1  # then the last scoreboard
    assert (scorer.total_events, scorer.backfilled, scorer.duplicates) == (4, 2, 5)


def _commit(event_id: str, at: float = T0) -> Event:
    return Event(event_id, "org/r", EventType.COMMIT, "t", "a", "u", dt.datetime.fromtimestamp(at, dt.timezone.utc))


def test_an_id_is_a_duplicate_while_it_is_among_the_most_recent_ones_remembered():
    scorer = Scorer(ScoringModel.for_demo(3.0), dedupe_capacity=3)
    assert [scorer.accept(_commit(i)) for i in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    # "a" is now the fourth most recent id: forgotten, so it counts again (and "b" goes).
    assert [scorer.accept(_commit(i)) for i in ("c", "a", "b")] == [False, True, True]
    assert scorer.duplicates == 2 and scorer.total_events == 6


def test_a_restore_remembers_ids_stored_both_as_seen_and_as_events_once_in_their_place():
    scorer = Scorer(ScoringModel.for_demo(3.0), dedupe_capacity=3)
    # "x" was seen long ago and is also a stored event: it is remembered in the events' turn,
    # so the two ids remembered after it are not enough to forget it.
    scorer.restore([_commit("x"), _commit("y")], seen=["old", "x"], trends={})
    assert not scorer.accept(_commit("x"))
    assert scorer.accept(_commit("z")) and not scorer.accept(_commit("x"))
    assert scorer.accept(_commit("old"))  # the oldest went first


def test_a_repository_that_leaves_the_window_is_freed_at_once():
    """No reference cycle keeps it (a summary's closure refers to its repository):
    with the collector off, it is gone as soon as nothing else holds it."""
    import gc

    from osintd.scorer import RepoWindow

    model = attrs.evolve(ScoringModel.for_demo(3.0), trend_people=1)
    scorer = Scorer(model)
    scorer.accept(Event("e1", "org/gone", EventType.COMMIT, "Fix crash", "a", "u",
                        dt.datetime.fromtimestamp(T0, dt.timezone.utc)))
    board = scorer.scoreboard(at=T0 + 1)
    assert board.top[0].summary.startswith("Low activity with 1 event from 1 person")  # the summary was made
    del board
    gc.disable()
    try:
        assert scorer.scoreboard(at=T0 + model.window + 2).untracked == ("org/gone",)
        assert not [o for o in gc.get_objects() if isinstance(o, RepoWindow) and o.name == "org/gone"]
    finally:
        gc.enable()


@pytest.mark.parametrize("backfill", [False, True], ids=["event", "backfill"])
async def test_an_event_accepted_while_the_next_stage_is_full_is_passed_on_when_the_tick_fires(autojump_clock,
                                                                                              backfill):
    """The live scorer's tick must not cancel a send of events it has already
    accepted (and so remembered): those events would never be broadcast, nor
    fetched again (nor stored, for a Backfill).  Here every send blocks across several ticks."""
    scorer = Scorer(ScoringModel())
    events_in, events_out = trio.open_memory_channel(100)
    scored_in, scored_out = trio.open_memory_channel(0)  # every send waits for the reader
    sent = [_commit(f"e{n}") for n in range(20)]
    passed: list[str] = []
    with trio.fail_after(600):  # 20 events need about 100 s here; a scorer that spins never ends
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_scorer, scorer, events_out, scored_in, 1.0)
            for event in sent:
                await events_in.send(Backfill([event]) if backfill else event)
            await events_in.aclose()
            async for item in scored_out:
                await trio.sleep(2.5)  # a slow reader: ticks pass while the scorer's send waits
                if isinstance(item, Event):
                    passed.append(item.event_id)
                elif isinstance(item, list):
                    passed.extend(e.event_id for e in item)
                elif isinstance(item, Backfill):
                    passed.extend(e.event_id for e in item.events)
    assert scorer.total_events == 20
    assert passed == [e.event_id for e in sent]  # every accepted event passed on, in order, once
