"""Scoring: turns a stream of events into per-repository scores and trends.

Owns: the scoring model (weights, decay, velocity, momentum, trend hysteresis,
summaries) and the per-repository windows; it asks ``identity`` which events
are new (duplicates and merges are not scored).
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
import heapq
import math
import operator
import re
from collections.abc import Callable, Iterable

import attrs
import trio

from osintd.identity import Identity, Verdict
from osintd.models import (Backfill, Event, EventType, Momentum, RepoScore, ScoredItem, Scoreboard, SourceItem,
                           TrendStatus)

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
    "wiki": 0.5,
}

#: How many repositories, from the top, get a summary in each scoreboard.
SUMMARIZED = 30

#: Event types that count once per actor inside the window.
ONCE_PER_ACTOR = frozenset({EventType.STAR, EventType.FORK})

# Summary topics: the first topic whose pattern matches a title counts for it.  The patterns are
# written in lower case and searched in the lower-cased title.
_TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (topic, re.compile(pattern))
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
    def for_demo(cls, events_per_second: float) -> ScoringModel:
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


@attrs.define(slots=True)
class _Entry:
    at: float  # event time, seconds since the epoch
    weight: float
    title: str
    actor_key: tuple[str, str] | None
    #: The summary topic of ``title`` ("" for none), worked out the first time a summary needs it.
    topic: str | None = None


def _entry_time(entry: _Entry) -> float:
    return entry.at


class RepoWindow:
    """The events of one repository inside the window, in event-time order, with
    running sums so that a scoreboard need not walk them.

    Invariants, as of ``refreshed`` (the last :meth:`advance`) plus every entry
    added since:

    * ``entries`` is sorted by ``at``;
    * ``mass`` = Σ weight · 2^(−(anchor − at) / half_life) over ``entries``
      (a decayed sum anchored at ``anchor``: the score is ``mass`` decayed
      from ``anchor`` to "now");
    * ``total_weight`` = Σ weight over ``entries``;
    * ``entries[recent_index:]`` are the ones at or after ``refreshed − recent``
      (or added since), and ``recent_weight`` is their Σ weight.

    Subtracting expired entries from ``mass`` accumulates rounding error, so
    the sums are recomputed from scratch once as many entries have come and
    gone as the window holds (and after any out-of-order insert).
    """

    __slots__ = ("name", "entries", "counted_actors", "trend", "mass", "anchor", "total_weight",
                 "recent_index", "recent_weight", "rank_key", "scheduled", "titles_version",
                 "_focus", "_exact", "_churn", "shown", "shown_version")

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[_Entry] = []
        self.counted_actors: collections.Counter[tuple[str, str]] = collections.Counter()
        self.trend = TrendStatus.QUIET
        self.mass = 0.0
        self.anchor = 0.0
        self.total_weight = 0.0
        self.recent_index = 0
        self.recent_weight = 0.0
        #: Where the repository sits in the scorer's order (None: not placed yet).
        self.rank_key: float | None = None
        #: The time of this repository's live entry in the scorer's wake-up heap.
        self.scheduled = math.inf
        #: Bumped whenever entries come or go: the cached summary focus is then stale.
        self.titles_version = 0
        self._focus: tuple[int, str] | None = None
        self._exact = True
        self._churn = 0
        #: The last RepoScore made for a scoreboard's Top, reused while nothing in it changed,
        #: and the ``titles_version`` its summary is of.
        self.shown: RepoScore | None = None
        self.shown_version = -1

    def add(self, entry: _Entry, decay: float) -> None:
        if entry.actor_key is not None:
            if self.counted_actors[entry.actor_key]:
                entry.weight = 0.0
            self.counted_actors[entry.actor_key] += 1
        self.titles_version += 1
        self._churn += 1
        if not self.entries or self.entries[-1].at <= entry.at:
            self.entries.append(entry)  # after the recent pointer: counted as recent until advance()
            self.recent_weight += entry.weight
        else:  # out of order: rare (webhook vs poll); keep the list sorted, recount at advance()
            bisect.insort(self.entries, entry, key=_entry_time)
            self._exact = False
        self.total_weight += entry.weight
        if entry.at >= self.anchor:
            self.mass = self.mass * math.exp(-decay * (entry.at - self.anchor)) + entry.weight
            self.anchor = entry.at
        else:
            self.mass += entry.weight * math.exp(-decay * (self.anchor - entry.at))

    def advance(self, now: float, model: ScoringModel, decay: float) -> None:
        """Bring the sums to ``now``: entries leave the recent span, then the window."""
        entries = self.entries
        recent_start = now - model.recent
        index = self.recent_index
        while index < len(entries) and entries[index].at < recent_start:
            self.recent_weight -= entries[index].weight
            index += 1
        self.recent_index = index
        cutoff = now - model.window
        if entries and entries[0].at < cutoff:
            drop = bisect.bisect_left(entries, cutoff, key=_entry_time)
            for entry in entries[:drop]:
                self.mass -= entry.weight * math.exp(-decay * (self.anchor - entry.at))
                self.total_weight -= entry.weight
                if entry.actor_key is not None:
                    self.counted_actors[entry.actor_key] -= 1
                    if not self.counted_actors[entry.actor_key]:
                        del self.counted_actors[entry.actor_key]
            del entries[:drop]
            self.titles_version += 1  # with few entries left, the newest titles are different ones
            self.recent_index = max(self.recent_index - drop, 0)  # recent_start > cutoff: never negative
            self._churn += drop
        if not self._exact or self._churn > len(entries) + 64:
            self._recount(recent_start, decay)

    def _recount(self, recent_start: float, decay: float) -> None:
        entries = self.entries
        self.anchor = entries[-1].at if entries else self.anchor
        self.mass = math.fsum(e.weight * math.exp(-decay * (self.anchor - e.at)) for e in entries)
        self.total_weight = math.fsum(e.weight for e in entries)
        self.recent_index = bisect.bisect_left(entries, recent_start, key=_entry_time)
        self.recent_weight = math.fsum(e.weight for e in entries[self.recent_index:])
        self._exact = True
        self._churn = 0

    def score_at(self, now: float, decay: float) -> float:
        """The exact (unrounded) activity score at ``now``."""
        if self.mass <= 0.0:
            return 0.0
        return self.mass * math.exp(-decay * max(now - self.anchor, 0.0))

    def key(self, decay: float, origin: float) -> float:
        """log(score) + decay · (now − origin), the same at every "now": with no
        event in or out, decay keeps every repository's order, so this orders them."""
        if self.mass <= 1e-12:
            return -math.inf
        return math.log(self.mass) + decay * (self.anchor - origin)

    def focus_later(self, model: ScoringModel) -> Callable[[], str]:
        """The summary's "Recent focus on …" part as of now, worked out when first asked.

        Topics are found once per entry and the focus once per change of titles
        (``titles_version``): many summaries are never read, and most that are
        find it already known.  Asked later, it still gives the focus of the
        titles there were now: it keeps its own slice of the newest entries.
        """
        known = self._focus
        version = self.titles_version
        if known is not None and known[0] == version:
            focus = known[1]
            return lambda: focus
        newest = self.entries[-model.summary_titles:]

        def work_out() -> str:
            focus = _focus_of(newest)
            if self.titles_version == version:
                self._focus = (version, focus)
            return focus
        return work_out


class Scorer:
    """Holds every repository's window and computes scoreboards.

    A scoreboard costs what changed, not what is tracked: only repositories
    that got events, or whose wake-up time has come, are brought up to date.
    A repository's wake-up time is the earliest moment anything that decides
    its trend or its order can change without new events: its oldest entry
    leaving the window, its oldest recent entry leaving the recent span, its
    decaying score reaching the next trend threshold, or its velocity (which
    rises while the observed span grows) reaching the next one.  Between
    those, decay leaves the order of repositories unchanged (every score
    shrinks by the same factor), so the order is kept sorted by a key that
    does not depend on "now".

    Invariants: an event is scored only if ``identity`` finds it new (an id at
    most once while it is remembered, the ``dedupe_capacity`` most recent ids;
    one activity seen by webhook and by polling once); ``total_events`` counts
    events accepted, duplicates and merges excluded; ``_keys``/``_names`` are
    sorted together, worst first (ascending key, then descending name: the best-first order
    read backwards), and hold every tracked repository.
    """

    def __init__(
        self,
        model: ScoringModel,
        wall_clock: Callable[[], dt.datetime] | None = None,
        dedupe_capacity: int = 100_000,
    ) -> None:
        self.model = model
        self._decay = math.log(2) / model.half_life
        self._score_edges, self._velocity_edges = _edges(model)
        self._bounds = {status: _Bounds.of(model, status) for status in TrendStatus}
        self._wall_clock = wall_clock
        self._repos: dict[str, RepoWindow] = {}
        #: Which events are new, duplicates (an id seen before) or merged (the same activity
        #: seen through the other kind of source).
        self.identity = Identity(dedupe_capacity)
        self._watermark: float | None = None
        self._first_event_at: float | None = None
        self._origin: float | None = None
        # Best last: the busiest repositories, which move the most, are near the end of the
        # lists, where an insert or a delete shifts few entries (best first, it was 4x as many).
        self._keys: list[float] = []
        self._names: list[str] = []
        self._wakeups: list[tuple[float, str]] = []
        self._dirty: set[str] = set()
        #: Bring every repository up to date at the next scoreboard (after a restore, or
        #: when an event older than all others changed the observed span).
        self._everything_dirty = False
        self._trend_moves: dict[str, None] = {}
        self._untracked: list[str] = []
        self._board_time = -math.inf
        self.total_events = 0
        self.duplicates = 0
        #: Events not scored because the same activity came through the other kind of source.
        self.merged = 0
        #: Events accepted from a Backfill (counted in ``total_events`` too): scored, not news.
        self.backfilled = 0
        #: Events accepted by (source, type).
        self.ingested: collections.Counter[tuple[str, EventType]] = collections.Counter()
        self._weights: dict[tuple[EventType, str | None, bool], float] = {}

    # ------------------------------------------------------------------ input

    def accept(self, event: Event) -> bool:
        """Score ``event``; False if it is a duplicate or merged with one already scored."""
        verdict = self.identity.see(event)
        if verdict is not Verdict.NEW:
            if verdict is Verdict.DUPLICATE:
                self.duplicates += 1
            else:
                self.merged += 1
            return False
        self.total_events += 1
        event_type = event.event_type
        self.ingested[(event.source, event_type)] += 1
        at = event.created_at.timestamp()
        if self._watermark is None or at > self._watermark:
            self._watermark = at
        if self._first_event_at is None or at < self._first_event_at:
            if self._first_event_at is not None:
                self._everything_dirty = True  # "observed" changed: every velocity did
            self._first_event_at = at
        if self._origin is None:
            self._origin = at
        if at < self._now() - self.model.window:
            return True  # too old to count, but still news to the clients
        actor_key = (event_type, event.author) if event_type in ONCE_PER_ACTOR else None
        name = event.repo_full_name
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = RepoWindow(name)
        repo.add(_Entry(at, self._weight_of(event), event.title, actor_key), self._decay)
        self._dirty.add(name)
        return True

    def _weight_of(self, event: Event) -> float:
        """``model.weight_of``, remembered per (type, action, bot): the same few keys come again and again."""
        key = (event.event_type, event.action, event.is_bot)
        weight = self._weights.get(key)
        if weight is None:
            weight = self._weights[key] = self.model.weight_of(event)
        return weight

    def restore(self, events: list[Event], seen: list[str], trends: dict[str, TrendStatus]) -> None:
        """Rebuild from the state store: stored events scored silently (their activity
        keys registered again for merging), older ids remembered for dedupe, and each
        repository's last announced trend (hysteresis)."""
        rescored = {event.event_id for event in events}
        for event_id in seen:
            if event_id not in rescored:  # remembered once, in its turn as an event: never queued twice
                self.identity.remember(event_id)
        for event in events:
            self.accept(event)
        for name, trend in trends.items():
            if name in self._repos:
                self._repos[name].trend = trend
        self._everything_dirty = True

    # ----------------------------------------------------------------- output

    @property
    def active_repositories(self) -> int:
        return len(self._repos)

    def scoreboard(self, at: float | None = None) -> Scoreboard:
        """The Top ``SUMMARIZED`` (with summaries), every tracked repository's
        rank, and the trends that moved, at ``at`` (default "now"; never
        earlier than the previous scoreboard)."""
        now = max(self._now() if at is None else at, self._board_time)
        self._board_time = now
        if self._everything_dirty:
            due = set(self._repos)
            self._everything_dirty = False
        else:
            due = self._dirty
        self._dirty = set()
        wakeups = self._wakeups
        while wakeups and wakeups[0][0] <= now:
            when, name = heapq.heappop(wakeups)
            repo = self._repos.get(name)
            if repo is not None and repo.scheduled == when:
                repo.scheduled = math.inf
                due.add(name)
        observed = self._observed(now)  # the same for every repository: worked out once
        for name in due:
            repo = self._repos.get(name)
            if repo is not None:
                self._refresh(repo, now, observed)
        top, order = self._top(now, observed)
        moves = tuple(self._score(self._repos[name], now, observed)
                      for name in self._trend_moves if name in self._repos)
        board = Scoreboard(at=dt.datetime.fromtimestamp(now, dt.UTC), top=top, order=order,
                           trend_moves=moves, untracked=tuple(self._untracked))
        self._trend_moves = {}
        self._untracked = []
        return board

    def score_of(self, name: str) -> RepoScore | None:
        """One repository's standing now (for the HTTP API), without side effects on trends."""
        repo = self._repos.get(name)
        if repo is None:
            return None
        now = max(self._now(), self._board_time)
        return self._score(repo, now, self._observed(now))

    # -------------------------------------------------------------- internals

    def _now(self) -> float:
        watermark = self._watermark
        if self._wall_clock is None:
            return 0.0 if watermark is None else watermark
        live = self._wall_clock().timestamp()
        return live if watermark is None else max(live, watermark)

    def _observed(self, now: float) -> float:
        model = self.model
        return min(model.window, max(now - (self._first_event_at or now), model.recent))

    def _velocity(self, repo: RepoWindow, observed: float) -> float:
        expected_recent = repo.total_weight * self.model.recent / observed
        return (repo.recent_weight + 1.0) / (expected_recent + 1.0)

    def _refresh(self, repo: RepoWindow, now: float, observed: float) -> None:
        """Bring one repository to ``now``: sums, place in the order, trend, next wake-up."""
        repo.advance(now, self.model, self._decay)
        if not repo.entries:
            self._unplace(repo)
            del self._repos[repo.name]
            repo.shown = None  # its summary's closure refers back to it: a cycle only a full collection would free
            self._trend_moves.pop(repo.name, None)
            self._untracked.append(repo.name)
            return
        key = repo.key(self._decay, self._origin or 0.0)
        if key != repo.rank_key:
            self._move(repo, key)
        score = repo.score_at(now, self._decay)
        velocity = self._velocity(repo, observed)
        trend = self._bounds[repo.trend].classify(round(score, 2), round(velocity, 2))
        if trend is not repo.trend:
            repo.trend = trend
            self._trend_moves[repo.name] = None
        wake = self._next_wakeup(repo, now, score, velocity, observed)
        if wake < repo.scheduled:
            repo.scheduled = wake
            heapq.heappush(self._wakeups, (wake, repo.name))

    def _next_wakeup(self, repo: RepoWindow, now: float, score: float, velocity: float, observed: float) -> float:
        model = self.model
        entries = repo.entries
        wake = entries[0].at + model.window
        if repo.recent_index < len(entries):
            wake = min(wake, entries[repo.recent_index].at + model.recent)
        # The score only falls: the next edge below it.
        below = bisect.bisect_left(self._score_edges, score) - 1
        if below >= 0:
            wake = min(wake, now + math.log(score / self._score_edges[below]) / self._decay)
        # While the observed span grows, expected_recent shrinks and velocity rises: the next edge above.
        if repo.total_weight > 0 and observed < model.window:
            above = bisect.bisect_right(self._velocity_edges, velocity)
            if above < len(self._velocity_edges):
                headroom = (repo.recent_weight + 1.0) / self._velocity_edges[above] - 1.0
                if headroom > 0:
                    needed = repo.total_weight * model.recent / headroom
                    if needed < model.window:
                        wake = min(wake, (self._first_event_at or now) + max(needed, model.recent))
        return max(wake, now)

    def _move(self, repo: RepoWindow, key: float) -> None:
        """Give ``repo`` its new key.  Most moves keep the repository between the same
        neighbours: then the key changes in place, without shifting the lists."""
        if repo.rank_key is not None:
            index = self._index_of(repo, repo.rank_key)
            keys, names = self._keys, self._names
            name = repo.name
            after_previous = index == 0 or _stored_before(keys[index - 1], names[index - 1], key, name)
            before_next = index + 1 == len(keys) or _stored_before(key, name, keys[index + 1], names[index + 1])
            if after_previous and before_next:
                keys[index] = key
                repo.rank_key = key
                return
        self._unplace(repo)
        self._place(repo, key)

    def _index_of(self, repo: RepoWindow, key: float) -> int:
        """Where ``repo``, placed under ``key`` (its ``rank_key``), is in the lists."""
        index = bisect.bisect_left(self._keys, key)
        while self._names[index] != repo.name:
            index += 1
        return index

    def _place(self, repo: RepoWindow, key: float) -> None:
        index = bisect.bisect_left(self._keys, key)
        keys, names = self._keys, self._names
        while index < len(keys) and _stored_before(keys[index], names[index], key, repo.name):
            index += 1  # past equal keys stored before it (bisect_left leaves no smaller one)
        keys.insert(index, key)
        names.insert(index, repo.name)
        repo.rank_key = key

    def _unplace(self, repo: RepoWindow) -> None:
        if repo.rank_key is None:
            return
        index = self._index_of(repo, repo.rank_key)
        del self._keys[index]
        del self._names[index]
        repo.rank_key = None

    def _top(self, now: float, observed: float) -> tuple[tuple[RepoScore, ...], tuple[str, ...]]:
        """The best ``SUMMARIZED`` with summaries, and the whole order.

        The order is by exact score; the ranking by the rounded score the
        clients see, then by name.  They agree except among equal rounded
        scores, so the head is re-sorted over the whole group of ties at its end.
        """
        names = self._names  # best last
        last = len(names) - 1
        decay = self._decay
        head = [(round(self._repos[name].score_at(now, decay), 2), name) for name in names[:-SUMMARIZED - 1:-1]]
        limit = min(len(names), SUMMARIZED + 200)
        while head and len(head) < limit:
            name = names[last - len(head)]
            score = round(self._repos[name].score_at(now, decay), 2)
            if score != head[-1][0]:
                break
            head.append((score, name))
        head.sort(key=lambda pair: (-pair[0], pair[1]))
        head_names = [name for _, name in head]
        top = tuple(self._shown(self._repos[name], score, observed) for score, name in head[:SUMMARIZED])
        if head_names == names[:-len(head) - 1:-1]:  # as a rule: one copy of the whole order, not two
            return top, tuple(reversed(names))
        return top, (*head_names, *reversed(names[:len(names) - len(head)]))

    def _score(self, repo: RepoWindow, now: float, observed: float) -> RepoScore:
        """A repository's standing, without a summary (trend moves, the HTTP API)."""
        velocity = round(self._velocity(repo, observed), 2)
        return RepoScore(repo.name, round(repo.score_at(now, self._decay), 2), velocity,
                         momentum_of(self.model, velocity), repo.trend, len(repo.entries))

    def _shown(self, repo: RepoWindow, score: float, observed: float) -> RepoScore:
        """A Top entry, with its summary (``score`` is the rounded score).

        Most of the Top is as it was one scoreboard ago: the last entry made
        is reused whole while nothing in it changed, and its summary while
        the summary's own inputs (trend, count and titles) did not."""
        velocity = round(self._velocity(repo, observed), 2)
        count = len(repo.entries)
        trend = repo.trend
        shown = repo.shown
        if shown is not None and repo.shown_version == repo.titles_version \
                and shown.trend_status is trend and shown.events_in_window == count:
            if shown.activity_score == score and shown.velocity == velocity:
                return shown
            summarize = shown.summarize
        else:
            summarize = self._summary_later(repo, trend, count)
        repo.shown = RepoScore(repo.name, score, velocity, momentum_of(self.model, velocity), trend, count, summarize)
        repo.shown_version = repo.titles_version
        return repo.shown

    def _summary_later(self, repo: RepoWindow, trend: TrendStatus, count: int) -> Callable[[], str]:
        model = self.model
        focus = repo.focus_later(model)
        return lambda: summary_text(model, trend, count, focus())


def _stored_before(key: float, name: str, other_key: float, other_name: str) -> bool:
    """True if (key, name) comes before (other_key, other_name) in the scorer's lists:
    worse first; of equal keys, the later name first (the best-first order backwards)."""
    return key < other_key or key == other_key and name > other_name


def _edges(model: ScoringModel) -> tuple[list[float], list[float]]:
    """The values at which a rounded score or velocity crosses a trend threshold
    (with or without hysteresis): a repository's trend can only change there."""
    h = model.hysteresis
    scores = {t * f for t in (model.hot_score, model.active_score, model.quiet_score) for f in (1.0, 1.0 - h)}
    velocities = {t * f for t in (model.hot_velocity, model.active_velocity) for f in (1.0, 1.0 - h)}
    velocities |= {model.cooling_velocity * f for f in (1.0, 1.0 + h)}
    # round(x, 2) >= t  ⟺  x >= t − 0.005; a little earlier still, so a wake-up is never late.
    return (sorted(e - 0.005 - 1e-9 for e in scores if e - 0.005 > 0),
            sorted(e - 0.005 - 1e-9 for e in velocities if e - 0.005 > 0))


def momentum_of(model: ScoringModel, velocity: float) -> Momentum:
    if velocity >= model.accelerating:
        return Momentum.ACCELERATING
    if velocity <= model.decelerating:
        return Momentum.DECELERATING
    return Momentum.STEADY


def classify(model: ScoringModel, score: float, velocity: float, current: TrendStatus) -> TrendStatus:
    """The trend status, with the current status's own thresholds relaxed (hysteresis)."""
    return _Bounds.of(model, current).classify(score, velocity)


@attrs.frozen
class _Bounds:
    """The thresholds :func:`classify` applies to a repository whose status is
    ``current``: the model's, with ``current``'s own relaxed by the hysteresis.
    The scorer keeps one per status rather than working them out per call."""

    hot_score: float
    hot_velocity: float
    active_score: float
    active_velocity: float
    cooling_score: float
    cooling_velocity: float
    stable_score: float

    @classmethod
    def of(cls, model: ScoringModel, current: TrendStatus) -> _Bounds:
        S = TrendStatus

        def at_least(threshold: float, status: TrendStatus) -> float:
            return threshold * (1 - model.hysteresis) if status is current else threshold

        def below(threshold: float, status: TrendStatus) -> float:
            return threshold * (1 + model.hysteresis) if status is current else threshold

        return cls(hot_score=at_least(model.hot_score, S.HOT), hot_velocity=at_least(model.hot_velocity, S.HOT),
                   active_score=at_least(model.active_score, S.ACTIVE),
                   active_velocity=at_least(model.active_velocity, S.ACTIVE),
                   cooling_score=at_least(model.quiet_score, S.COOLING),
                   cooling_velocity=below(model.cooling_velocity, S.COOLING),
                   stable_score=at_least(model.quiet_score, S.STABLE))

    def classify(self, score: float, velocity: float) -> TrendStatus:
        """First match wins: HOT, ACTIVE, COOLING, STABLE, else QUIET."""
        if score >= self.hot_score and velocity >= self.hot_velocity:
            return TrendStatus.HOT
        if score >= self.active_score and velocity >= self.active_velocity:
            return TrendStatus.ACTIVE
        if score >= self.cooling_score and velocity < self.cooling_velocity:
            return TrendStatus.COOLING
        if score >= self.stable_score:
            return TrendStatus.STABLE
        return TrendStatus.QUIET


_LEVEL = {
    TrendStatus.HOT: "Very high",
    TrendStatus.ACTIVE: "High",
    TrendStatus.STABLE: "Moderate",
    TrendStatus.COOLING: "Slowing",
    TrendStatus.QUIET: "Low",
}


def topic_of(title: str) -> str:
    """The first topic whose pattern matches ``title``, or "" (case-insensitive)."""
    # Lower-casing once is a third cheaper than ten case-insensitive searches.
    title = title.lower()
    for topic, pattern in _TOPICS:
        if pattern.search(title):
            return topic
    return ""


def _focus_of(newest: list[_Entry]) -> str:
    """The focus of ``newest`` (oldest first); each entry's topic is found once."""
    topics = []
    for entry in reversed(newest):
        if entry.topic is None:
            entry.topic = topic_of(entry.title)
        topics.append(entry.topic)
    return _focus_from(topics)


def _focus_from(topics: Iterable[str]) -> str:
    """The two most frequent topics, ties to the one seen first (``topics`` newest first)."""
    counts = collections.Counter(filter(None, topics))
    if len(counts) <= 1:
        return next(iter(counts), "")
    # sorted() is stable, so ties keep the Counter's first-seen order (what most_common(2) does).
    ranked = sorted(counts.items(), key=operator.itemgetter(1), reverse=True)
    return f"{ranked[0][0]} and {ranked[1][0]}"


def summary_text(model: ScoringModel, status: TrendStatus, count: int, focus: str) -> str:
    noun = "event" if count == 1 else "events"
    text = f"{_LEVEL[status]} activity with {count} {noun} in {model.window_label}."
    if focus:
        text += f" Recent focus on {focus}."
    return text


async def run_scorer(scorer: Scorer, events: trio.MemoryReceiveChannel[SourceItem],
                     out: trio.MemorySendChannel[ScoredItem], interval: float,
                     on_tick: Callable[[], None] = lambda: None, live: bool = True) -> None:
    """The scorer task: score each event as it comes and pass it on (a Backfill's
    events as a Backfill of those accepted: scored and remembered, never news);
    every ``interval`` seconds pass on a scoreboard, coalescing all events since
    the last one.  When the sources end, one last scoreboard, then ``out`` closes.

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


async def _pass_on(scorer: Scorer, item: SourceItem, out: trio.MemorySendChannel[ScoredItem]) -> None:
    """Score an event (or a list of them, or a Backfill's) and pass on what is new, in
    the same form (a Backfill stays a Backfill); anything else (a CursorMark) just passes."""
    if isinstance(item, Event):
        if scorer.accept(item):
            await out.send(item)
    elif isinstance(item, (list, Backfill)):
        accepted = [event for event in _events_of(item) if scorer.accept(event)]
        if accepted:
            await out.send(_passed(scorer, item, accepted))
    else:
        await out.send(item)


def _events_of(item: Event | list[Event] | Backfill) -> list[Event] | tuple[Event]:
    if isinstance(item, Backfill):
        return item.events
    return item if isinstance(item, list) else (item,)


def _passed(scorer: Scorer, item: Event | list[Event] | Backfill, accepted: list[Event]) -> list[Event] | Backfill:
    """What goes on for the ``accepted`` events of ``item``: a Backfill (counted) for a
    Backfill, else the list."""
    if isinstance(item, Backfill):
        scorer.backfilled += len(accepted)
        return Backfill(accepted)
    return accepted


async def _score_live(scorer: Scorer, events: trio.MemoryReceiveChannel[SourceItem],
                      out: trio.MemorySendChannel[ScoredItem], interval: float, on_tick: Callable[[], None]) -> None:
    """Only the wait for the next item is under the tick's deadline: once an event
    is accepted (counted and remembered for dedupe) it must reach ``out``, so the
    send that passes it on is never inside a scope the tick could cancel."""
    next_tick = trio.current_time() + interval
    while True:
        with trio.move_on_at(next_tick) as waiting:
            try:
                item = await events.receive()
            except trio.EndOfChannel:
                return
        if not waiting.cancelled_caught:  # an item came before the tick
            await _pass_on(scorer, item, out)
        if trio.current_time() >= next_tick:
            await out.send(scorer.scoreboard())
            on_tick()
            next_tick += interval
            if next_tick <= trio.current_time():  # the send waited past the next tick: one interval from now
                next_tick = trio.current_time() + interval


#: A replay that jumps ahead by more than this many ticks takes one scoreboard, not all of them.
MAX_CATCH_UP_TICKS = 100


async def _score_event_time(scorer: Scorer, events: trio.MemoryReceiveChannel[SourceItem],
                            out: trio.MemorySendChannel[ScoredItem], interval: float,
                            on_tick: Callable[[], None]) -> None:
    next_tick: float | None = None
    async for item in events:
        if not isinstance(item, (Event, list, Backfill)):
            await out.send(item)
            continue
        accepted: list[Event] = []
        for event in _events_of(item):
            at = event.created_at.timestamp()
            if next_tick is None:
                next_tick = at + interval
            if at >= next_tick:
                if accepted:  # the events before the tick go before its scoreboard
                    await out.send(_passed(scorer, item, accepted))
                    accepted = []
                behind = int((at - next_tick) // interval) + 1
                if behind > MAX_CATCH_UP_TICKS:
                    next_tick += (behind - 1) * interval
                    behind = 1
                for _ in range(behind):
                    await out.send(scorer.scoreboard(at=next_tick))
                    next_tick += interval
            if scorer.accept(event):
                accepted.append(event)
        on_tick()
        if accepted:
            await out.send(_passed(scorer, item, accepted))
