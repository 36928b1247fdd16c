"""Scoring: turns a stream of events into per-repository scores and trends.

Owns: the scoring model (weights, decay, velocity, momentum, trend hysteresis,
summaries), the per-repository windows, and event-id dedupe.
Must not: decide what to announce (``differ`` compares scoreboards) or talk to
clients.

The model, written down once more in the README:

* Each event has a weight by ``event_type.action`` (``weights``); bot authors
  weigh nothing, and a star or fork counts once per actor within the window.
* ``activity_score`` = Σ weight · 2^(−age / half_life) over the events inside
  ``window`` (age measured in event time).
* ``velocity`` = the weighted rate over the last ``recent`` seconds divided by
  the weighted rate over the whole window (or over the time observed so far,
  if shorter), with one unit of weight added to both sides so that a handful of
  events cannot produce extreme values.  1.0 is a steady repository.
* ``momentum``: ACCELERATING at velocity ≥ ``accelerating``, DECELERATING at
  ≤ ``decelerating``, STEADY between.
* ``trend_status``, first match wins: HOT (score ≥ ``hot_score`` and velocity ≥
  ``hot_velocity``), ACTIVE (score ≥ ``active_score`` and velocity ≥
  ``active_velocity``), COOLING (score ≥ ``quiet_score`` and velocity <
  ``cooling_velocity``), STABLE (score ≥ ``quiet_score``), else QUIET.
  Hysteresis: the thresholds of the status a repository already has are
  relaxed by ``hysteresis`` (lower bounds × (1 − h), upper bounds × (1 + h)),
  so a value hovering at a threshold does not make the status flap.

"Now" is event time: the newest event seen, or the wall clock when the source
is live (so that scores decay while nothing happens).
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import math
import re
from typing import Callable, Iterable

import attrs
import trio

from osintd.models import Event, EventType, Momentum, RepoScore, Scoreboard, TrendStatus

DEFAULT_WEIGHTS: dict[str, float] = {
    "release": 8.0,
    "pull_request.merged": 5.0,
    "pull_request.opened": 2.5,
    "pull_request.closed": 1.0,
    "pull_request": 1.0,
    "create.tag": 3.0,
    "create": 0.5,
    "delete": 0.2,
    "review": 1.5,
    "issue.opened": 1.5,
    "issue.closed": 1.0,
    "issue": 1.0,
    "comment": 0.5,
    "commit": 1.0,
    "discussion": 1.0,
    "fork": 2.0,
    "star": 1.0,
    "member": 0.5,
    "public": 5.0,
}

#: How many repositories, from the top, get a summary in each scoreboard.
SUMMARIZED = 30

#: Event types that count once per actor inside the window.
ONCE_PER_ACTOR = frozenset({EventType.STAR, EventType.FORK})

# Summary topics: the first topic whose pattern matches a title counts for it.
_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (topic, re.compile(pattern, re.IGNORECASE))
    for topic, pattern in (
        ("bug fixes", r"\b(fix(e[sd])?|bug|crash|regression|hotfix|patch)\b"),
        ("security", r"\b(security|cve|vuln\w*|xss|csrf)\b"),
        ("performance", r"\b(perf(ormance)?|speed|faster|optimi[sz]\w*|latency|memory)\b"),
        ("releases", r"\b(release[sd]?|v\d+\.\d+)\b"),
        ("documentation", r"\b(docs?|documentation|readme|typo|example)\b"),
        ("tests", r"\b(tests?|testing|coverage|flaky|ci)\b"),
        ("dependency updates", r"\b(bump|deps?|dependenc\w+|upgrade)\b"),
        ("refactoring", r"\b(refactor\w*|cleanup|clean up|rename|simplif\w+)\b"),
        ("API improvements", r"\b(api|endpoint|client|sdk)\b"),
        ("new features", r"\b(add(s|ed)?|feat(ure)?|support|implement\w*|new)\b"),
    )
)


@attrs.frozen
class ScoringModel:
    """Every tunable of the scoring model; see the module docstring for their meaning."""

    window: float = 86_400.0
    half_life: float = 6 * 3600.0
    recent: float = 3600.0
    hot_score: float = 15.0
    active_score: float = 6.0
    quiet_score: float = 1.5
    hot_velocity: float = 1.5
    active_velocity: float = 1.0
    cooling_velocity: float = 0.67
    accelerating: float = 1.25
    decelerating: float = 0.8
    hysteresis: float = 0.2
    window_label: str = "24h"
    summary_titles: int = 12
    weights: dict[str, float] = attrs.field(factory=lambda: dict(DEFAULT_WEIGHTS))

    @classmethod
    def for_demo(cls, events_per_second: float) -> "ScoringModel":
        """The real model on a clock 96× faster (a day in 15 minutes).

        About four demo events a second over a few dozen repositories look like a
        real day of those repositories, so the score thresholds scale with the rate
        relative to that, and trends behave the same at any ``--demo-rate``.
        """
        scale = max(events_per_second, 0.01) / 4.0
        base = cls()
        return attrs.evolve(
            base,
            window=900.0,
            half_life=225.0,
            recent=60.0,
            hot_score=base.hot_score * scale,
            active_score=base.active_score * scale,
            quiet_score=base.quiet_score * scale,
            window_label="15m",
        )

    def weight_of(self, event: Event) -> float:
        if event.is_bot:
            return 0.0
        key = event.weight_key
        if key in self.weights:
            return self.weights[key]
        return self.weights.get(str(event.event_type), 0.5)


@attrs.define
class _Entry:
    at: float  # event time, seconds since the epoch
    weight: float
    title: str
    actor_key: tuple[str, str] | None


class RepoWindow:
    """The events of one repository inside the window, in event-time order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[_Entry] = []
        self.counted_actors: dict[tuple[str, str], int] = collections.Counter()
        self.trend = TrendStatus.QUIET

    def add(self, entry: _Entry) -> None:
        if entry.actor_key is not None:
            if self.counted_actors[entry.actor_key]:
                entry.weight = 0.0
            self.counted_actors[entry.actor_key] += 1
        if not self.entries or self.entries[-1].at <= entry.at:
            self.entries.append(entry)
        else:  # out of order: rare (webhook vs poll), keep the list sorted
            bisect.insort(self.entries, entry, key=lambda e: e.at)

    def expire(self, cutoff: float) -> None:
        drop = bisect.bisect_left(self.entries, cutoff, key=lambda e: e.at)
        for entry in self.entries[:drop]:
            if entry.actor_key is not None:
                self.counted_actors[entry.actor_key] -= 1
                if not self.counted_actors[entry.actor_key]:
                    del self.counted_actors[entry.actor_key]
        del self.entries[:drop]


class Scorer:
    """Holds every repository's window and computes scoreboards.

    Invariants: an event id is scored at most once while it is remembered
    (the ``dedupe_capacity`` most recent ids); ``total_events`` counts events
    accepted, duplicates excluded.
    """

    def __init__(
        self,
        model: ScoringModel,
        wall_clock: Callable[[], dt.datetime] | None = None,
        dedupe_capacity: int = 100_000,
    ) -> None:
        self.model = model
        self._wall_clock = wall_clock
        self._repos: dict[str, RepoWindow] = {}
        self._seen_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._dedupe_capacity = dedupe_capacity
        self._watermark: float | None = None
        self._first_event_at: float | None = None
        self.total_events = 0
        self.duplicates = 0
        self.ingested: collections.Counter[tuple[str, str]] = collections.Counter()  # (source, type)

    # ------------------------------------------------------------------ input

    def accept(self, event: Event) -> bool:
        """Score ``event``; False if its id was already scored (a duplicate)."""
        if event.event_id in self._seen_ids:
            self.duplicates += 1
            return False
        self._remember(event.event_id)
        self.total_events += 1
        self.ingested[(event.source, str(event.event_type))] += 1
        at = event.created_at.timestamp()
        self._watermark = at if self._watermark is None else max(self._watermark, at)
        if self._first_event_at is None or at < self._first_event_at:
            self._first_event_at = at
        if at < self._now() - self.model.window:
            return True  # too old to count, but still news to the clients
        actor_key = (str(event.event_type), event.author) if event.event_type in ONCE_PER_ACTOR else None
        repo = self._repos.get(event.repo_full_name)
        if repo is None:
            repo = self._repos[event.repo_full_name] = RepoWindow(event.repo_full_name)
        repo.add(_Entry(at, self.model.weight_of(event), event.title, actor_key))
        return True

    def restore(self, events: list[Event], seen: list[str], trends: dict[str, TrendStatus]) -> None:
        """Rebuild from the state store: stored events scored silently, older ids
        remembered for dedupe, and each repository's last announced trend (hysteresis)."""
        for event_id in seen:
            self._remember(event_id)
        for event in events:
            self._seen_ids.pop(event.event_id, None)
            self.accept(event)
        for name, trend in trends.items():
            if name in self._repos:
                self._repos[name].trend = trend

    def _remember(self, event_id: str) -> None:
        self._seen_ids[event_id] = None
        if len(self._seen_ids) > self._dedupe_capacity:
            self._seen_ids.popitem(last=False)

    # ----------------------------------------------------------------- output

    @property
    def active_repositories(self) -> int:
        return len(self._repos)

    def scoreboard(self, at: float | None = None) -> Scoreboard:
        """Every tracked repository's score at ``at`` (default "now"), best first; updates trends."""
        now = self._now() if at is None else at
        cutoff = now - self.model.window
        scores = []
        for name in list(self._repos):
            repo = self._repos[name]
            repo.expire(cutoff)
            if not repo.entries:
                del self._repos[name]
                continue
            scores.append(self._score(repo, now))
        scores.sort(key=lambda s: (-s.activity_score, s.repo_full_name))
        # Summaries are text work: only the repositories near the top get one.
        for index in range(min(SUMMARIZED, len(scores))):
            score = scores[index]
            repo = self._repos[score.repo_full_name]
            text = summarize(self.model, score.trend_status, score.events_in_window,
                             (e.title for e in reversed(repo.entries)))
            scores[index] = attrs.evolve(score, summary=text)
        return Scoreboard(at=dt.datetime.fromtimestamp(now, dt.timezone.utc), ranking=tuple(scores))

    # -------------------------------------------------------------- internals

    def _now(self) -> float:
        live = self._wall_clock().timestamp() if self._wall_clock is not None else None
        candidates = [t for t in (live, self._watermark) if t is not None]
        return max(candidates) if candidates else 0.0

    def _score(self, repo: RepoWindow, now: float) -> RepoScore:
        model = self.model
        decay = math.log(2) / model.half_life
        score = 0.0
        window_weight = 0.0
        recent_weight = 0.0
        recent_start = now - model.recent
        for entry in repo.entries:
            age = max(now - entry.at, 0.0)
            score += entry.weight * math.exp(-decay * age)
            window_weight += entry.weight
            if entry.at >= recent_start:
                recent_weight += entry.weight
        observed = min(model.window, max(now - (self._first_event_at or now), model.recent))
        expected_recent = window_weight * model.recent / observed
        velocity = (recent_weight + 1.0) / (expected_recent + 1.0)
        score = round(score, 2)
        velocity = round(velocity, 2)
        repo.trend = classify(model, score, velocity, repo.trend)
        return RepoScore(
            repo_full_name=repo.name,
            activity_score=score,
            velocity=velocity,
            momentum=momentum_of(model, velocity),
            trend_status=repo.trend,
            events_in_window=len(repo.entries),
            summary="",  # filled in by scoreboard() for the top SUMMARIZED
        )


def momentum_of(model: ScoringModel, velocity: float) -> Momentum:
    if velocity >= model.accelerating:
        return Momentum.ACCELERATING
    if velocity <= model.decelerating:
        return Momentum.DECELERATING
    return Momentum.STEADY


def classify(model: ScoringModel, score: float, velocity: float, current: TrendStatus) -> TrendStatus:
    """The trend status, with the current status's own thresholds relaxed (hysteresis)."""

    def at_least(threshold: float, status: TrendStatus) -> float:
        return threshold * (1 - model.hysteresis) if status is current else threshold

    def below(threshold: float, status: TrendStatus) -> float:
        return threshold * (1 + model.hysteresis) if status is current else threshold

    S = TrendStatus
    if score >= at_least(model.hot_score, S.HOT) and velocity >= at_least(model.hot_velocity, S.HOT):
        return S.HOT
    if score >= at_least(model.active_score, S.ACTIVE) and velocity >= at_least(model.active_velocity, S.ACTIVE):
        return S.ACTIVE
    if score >= at_least(model.quiet_score, S.COOLING) and velocity < below(model.cooling_velocity, S.COOLING):
        return S.COOLING
    if score >= at_least(model.quiet_score, S.STABLE):
        return S.STABLE
    return S.QUIET


_LEVEL = {
    TrendStatus.HOT: "Very high",
    TrendStatus.ACTIVE: "High",
    TrendStatus.STABLE: "Moderate",
    TrendStatus.COOLING: "Slowing",
    TrendStatus.QUIET: "Low",
}


def summarize(model: ScoringModel, status: TrendStatus, count: int, titles_newest_first: Iterable[str]) -> str:
    """"High activity with 45 events in 24h. Recent focus on X and Y." from recent titles."""
    topics: collections.Counter[str] = collections.Counter()
    for index, title in enumerate(titles_newest_first):
        if index >= model.summary_titles:
            break
        for topic, pattern in _TOPICS:
            if pattern.search(title):
                topics[topic] += 1
                break
    noun = "event" if count == 1 else "events"
    text = f"{_LEVEL[status]} activity with {count} {noun} in {model.window_label}."
    top = [topic for topic, _ in topics.most_common(2)]
    if top:
        text += f" Recent focus on {' and '.join(top)}."
    return text


async def run_scorer(scorer: Scorer, events, out, interval: float,
                     on_tick: Callable[[], None] = lambda: None, live: bool = True) -> None:
    """The scorer task: score each event as it comes and pass it on; every
    ``interval`` seconds pass on a scoreboard, coalescing all events since the
    last one.  When the sources end, one last scoreboard, then ``out`` closes.

    Live, the interval is on trio's clock.  Replaying, it is on event time: a
    scoreboard is taken each time the events cross the next tick, so the
    announcements do not depend on how fast the file is read.
    """
    async with out:
        if live:
            await _score_live(scorer, events, out, interval, on_tick)
        else:
            await _score_event_time(scorer, events, out, interval, on_tick)
        await out.send(scorer.scoreboard())


async def _pass_on(scorer: Scorer, item, out) -> None:
    """Score an event and pass it on if new; anything else (a CursorMark) just passes."""
    if not isinstance(item, Event):
        await out.send(item)
    elif scorer.accept(item):
        await out.send(item)


async def _score_live(scorer: Scorer, events, out, interval: float, on_tick: Callable[[], None]) -> None:
    next_tick = trio.current_time() + interval
    while True:
        with trio.move_on_at(next_tick):
            try:
                while True:
                    await _pass_on(scorer, await events.receive(), out)
                    if trio.current_time() >= next_tick:
                        break
            except trio.EndOfChannel:
                return
        await out.send(scorer.scoreboard())
        on_tick()
        next_tick = max(next_tick + interval, trio.current_time())


#: A replay that jumps ahead by more than this many ticks takes one scoreboard, not all of them.
MAX_CATCH_UP_TICKS = 100


async def _score_event_time(scorer: Scorer, events, out, interval: float, on_tick: Callable[[], None]) -> None:
    next_tick: float | None = None
    async for event in events:
        if not isinstance(event, Event):
            await out.send(event)
            continue
        at = event.created_at.timestamp()
        if next_tick is None:
            next_tick = at + interval
        if at >= next_tick:
            behind = int((at - next_tick) // interval) + 1
            if behind > MAX_CATCH_UP_TICKS:
                next_tick += (behind - 1) * interval
                behind = 1
            for _ in range(behind):
                await out.send(scorer.scoreboard(at=next_tick))
                next_tick += interval
        on_tick()
        if scorer.accept(event):
            await out.send(event)
