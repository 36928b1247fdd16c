"""Scoring: turns a stream of events into per-repository scores and trends.

Owns: the scoring model (weights, per-person saturation, breadth, decay,
velocity, momentum, trend hysteresis and hold, the reasons behind a standing,
summaries), the per-repository windows, and the order of repositories; it asks
``identity`` which events are new (duplicates and merges are not scored).
Must not: decide what to announce (``differ`` compares scoreboards) or talk to
clients.

The model ranks what people do, not how many events machines make.  Written
down once more, with the reasons, in the README ("Scoring"):

* Each event has a base weight by ``event_type.action`` (``weights``): what
  takes a person's attention (a star, a fork, a pull request, an issue, a
  comment) weighs more than a push.  Bot authors (``[bot]``, type Bot) weigh
  nothing, and a star or fork counts once per actor within the window.
* Per person, per repository, contributions saturate: an actor's n-th event
  inside the repository's window (counting the actor's events it holds when
  the event comes) weighs base · ``repeat_factor``^(n−1), so one account adds at
  most about twice its largest weight however many events it makes: a
  heartbeat repository pushed every minute scores as one person pushing.
* ``breadth`` = min(1, 2 · (1 − share)), where share is the fraction of the
  repository's events in the window made by its busiest actor: a repository
  where one account makes most of the events is that account's, not where
  people gather (one actor: 0; no actor above half: 1).
* ``activity_score`` = breadth · Σ weight · 2^(−age / half_life) over the
  events inside ``window`` (age measured in event time).
* ``velocity`` = the weighted rate over the last ``recent`` seconds divided by
  the weighted rate over the whole window (or over the time observed so far,
  if shorter), with one unit of weight added to both sides so that a handful of
  events cannot produce extreme values.  1.0 is a steady repository.
* ``momentum``: ACCELERATING at velocity ≥ ``accelerating``, DECELERATING at
  ≤ ``decelerating``, STEADY between.
* ``trend_status``, first match wins: QUIET with fewer than ``trend_people``
  distinct people in the window; HOT (score ≥ ``hot_score`` and velocity ≥
  ``hot_velocity``), ACTIVE (score ≥ ``active_score`` and velocity ≥
  ``active_velocity``), COOLING (score ≥ ``quiet_score`` and velocity <
  ``cooling_velocity``), STABLE (score ≥ ``quiet_score``), else QUIET.
  Hysteresis: the thresholds of the status a repository already has are
  relaxed by ``hysteresis`` (lower bounds × (1 − h), upper bounds × (1 + h)),
  so a value hovering at a threshold does not make the status flap; and a new
  status is taken only once it has held for ``trend_hold`` seconds.
* The reasons: ``people`` (distinct non-bot actors in the window),
  ``people_recent`` (in the last ``recent`` seconds) and ``drivers`` (the
  event kinds with the most weight in the last ``recent`` seconds).

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
from typing import TypeAlias, TypeVar

import attrs
import trio

from osintd.identity import Identity, Verdict
from osintd.models import (Backfill, Event, EventType, Momentum, RepoScore, ScoredItem, Scoreboard, SourceItem,
                           TrendStatus)

DEFAULT_WEIGHTS: dict[str, float] = {
    "release": 4.0,
    "public": 3.0,
    "pull_request.merged": 3.0,
    "pull_request.opened": 2.5,
    "pull_request.closed": 1.0,
    "pull_request": 1.0,
    "star": 2.0,
    "fork": 2.0,
    "issue.opened": 2.0,
    "issue.closed": 1.0,
    "issue": 1.0,
    "review": 1.5,
    "discussion": 1.5,
    "comment": 1.0,
    "create.tag": 1.5,
    "create": 0.3,
    "delete": 0.1,
    "commit": 0.5,
    "member": 0.5,
    "wiki": 0.3,
}

#: How many repositories, from the top, get a summary in each scoreboard.
SUMMARIZED = 30

#: Event types that count once per actor inside the window.
ONCE_PER_ACTOR = frozenset({EventType.STAR, EventType.FORK})

_Key = TypeVar("_Key")

#: Where a repository sorts: repositories with ``trend_people`` people or more first, then by score.
RankKey: TypeAlias = tuple[bool, float]

#: Decimals of the activity_score and velocity clients see (the guide's examples have one),
#: which trends are decided on; a rounded value changes only HALF_STEP away from it.
DIGITS = 1
HALF_STEP = 0.5 * 10.0 ** -DIGITS

#: How far after the wall clock a live event's time may be (clocks differ a little); later
#: ones are scored as of this far ahead, so one event cannot move "now" (see ``accept``).
#: The model's ``future_skew``; the demo's clock runs 96× faster, so its skew is 96× shorter.
FUTURE_SKEW = 300.0

#: How many event kinds a standing names as what drove it.
DRIVERS = 3

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
    hot_score: float = 40.0
    active_score: float = 15.0
    quiet_score: float = 5.0
    hot_velocity: float = 1.5
    active_velocity: float = 1.0
    cooling_velocity: float = 0.67
    accelerating: float = 1.25
    decelerating: float = 0.8
    hysteresis: float = 0.2
    trend_people: int = 3
    trend_hold: float = 600.0
    future_skew: float = FUTURE_SKEW
    repeat_factor: float = 0.5
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
            trend_hold=base.trend_hold / 96,
            future_skew=base.future_skew / 96,
            hot_score=base.hot_score * scale,
            active_score=base.active_score * scale,
            quiet_score=base.quiet_score * scale,
            window_label="15m",
        )

    def weight_of(self, event: Event) -> float:
        """The base weight of ``event`` (before the per-person saturation)."""
        if event.is_bot:
            return 0.0
        key = event.weight_key
        if key in self.weights:
            return self.weights[key]
        return self.weights.get(str(event.event_type), 0.5)


def breadth(top_count: int, count: int) -> float:
    """The factor for a repository whose busiest actor made ``top_count`` of its ``count`` events."""
    if count <= 0:
        return 0.0
    return min(1.0, 2.0 * (1.0 - top_count / count))


@attrs.define(slots=True)
class _Entry:
    at: float  # event time, seconds since the epoch
    weight: float  # after the per-person saturation
    title: str
    actor: str
    kind: str  # the event type's wire name: what a standing names as its drivers
    person: bool  # not a bot: one of the repository's people
    once: bool  # a star or fork: counts once per actor
    #: The summary topic of ``title`` ("" for none), worked out the first time a summary needs it.
    topic: str | None = None


def _entry_time(entry: _Entry) -> float:
    return entry.at


class RepoWindow:
    """The events of one repository inside the window, in event-time order, with
    running sums and counts so that a scoreboard need not walk them.

    Invariants, as of ``refreshed`` (the last :meth:`advance`) plus every entry
    added since:

    * ``entries`` is sorted by ``at``;
    * ``mass`` = Σ weight · 2^(−(anchor − at) / half_life) over ``entries``
      (a decayed sum anchored at ``anchor``: the score is breadth · ``mass``
      decayed from ``anchor`` to "now");
    * ``total_weight`` = Σ weight over ``entries``;
    * ``actors`` counts ``entries`` by actor, ``people`` by actor for the
      non-bot ones, ``once_actors`` the star/fork entries by (kind, actor);
      ``top_count`` is the largest count in ``actors`` (0 when stale:
      worked out again when read);
    * ``entries[recent_index:]`` are the ones at or after ``refreshed − recent``
      (or added since); ``recent_weight`` is their Σ weight, ``recent_people``
      counts them by non-bot actor and ``recent_kinds`` sums their weight by kind.

    Subtracting expired entries from ``mass`` accumulates rounding error, so
    the sums are recomputed from scratch once as many entries have come and
    gone as the window holds (and after any out-of-order insert).
    """

    __slots__ = ("name", "entries", "actors", "people", "once_actors", "_top_count", "trend", "candidate",
                 "candidate_since", "mass", "anchor", "total_weight", "recent_index", "recent_weight",
                 "recent_people", "recent_kinds", "_drivers", "rank_key", "scheduled", "titles_version",
                 "_focus", "_exact", "_churn", "shown", "shown_version", "shown_until",
                 "score_until", "score_shown")

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[_Entry] = []
        # Plain dicts, not Counters: a repository is made per new name (most real ones have one
        # or two events), and a Counter costs five times a dict to make.
        self.actors: dict[str, int] = {}
        self.people: dict[str, int] = {}
        self.once_actors: dict[tuple[str, str], int] = {}
        self._top_count = 0
        self.trend = TrendStatus.QUIET
        #: A status the classification gives but not yet held for ``trend_hold``, and since when.
        self.candidate: TrendStatus | None = None
        self.candidate_since = 0.0
        self.mass = 0.0
        self.anchor = 0.0
        self.total_weight = 0.0
        self.recent_index = 0
        self.recent_weight = 0.0
        self.recent_people: dict[str, int] = {}
        self.recent_kinds: dict[str, float] = {}
        self._drivers: tuple[str, ...] | None = None  # worked out from recent_kinds when asked
        #: Where the repository sits in the scorer's order (None: not placed yet).
        self.rank_key: RankKey | None = None
        #: The time of this repository's live entry in the scorer's wake-up heap.
        self.scheduled = math.inf
        #: Bumped whenever entries come or go: the cached summary focus is then stale.
        self.titles_version = 0
        self._focus: tuple[int, str] | None = None
        self._exact = True
        self._churn = 0
        #: The last RepoScore made for a scoreboard's Top, the ``titles_version`` its summary
        #: is of, and until when it holds as it is (reset when the repository is refreshed).
        self.shown: RepoScore | None = None
        self.shown_version = -1
        self.shown_until = -math.inf
        #: The rounded score last worked out for the head, and until when it holds (likewise).
        self.score_shown = 0.0
        self.score_until = -math.inf

    def add(self, at: float, base: float, title: str, actor: str, kind: str, person: bool, once: bool,
            repeat_factor: float, decay: float) -> None:
        """One more event: its weight is ``base`` after the per-person saturation."""
        seen = self.actors.get(actor, 0)
        if once and (kind, actor) in self.once_actors:
            weight = 0.0
        else:
            weight = base * repeat_factor ** seen if seen else base
        if once:
            self.once_actors[(kind, actor)] = self.once_actors.get((kind, actor), 0) + 1
        self.actors[actor] = seen + 1
        if self._top_count and seen + 1 > self._top_count:
            self._top_count = seen + 1
        if person:
            self.people[actor] = self.people.get(actor, 0) + 1
        entry = _Entry(at, weight, title, actor, kind, person, once)
        self.titles_version += 1
        self._churn += 1
        if not self.entries or self.entries[-1].at <= at:
            self.entries.append(entry)  # after the recent pointer: counted as recent until advance()
            self._enter_recent(entry)
        else:  # out of order: rare (webhook vs poll); keep the list sorted, recount at advance()
            bisect.insort(self.entries, entry, key=_entry_time)
            self._exact = False
        self.total_weight += weight
        if at >= self.anchor:
            self.mass = self.mass * math.exp(-decay * (at - self.anchor)) + weight
            self.anchor = at
        else:
            self.mass += weight * math.exp(-decay * (self.anchor - at))

    def _enter_recent(self, entry: _Entry) -> None:
        self.recent_weight += entry.weight
        if entry.person:
            self.recent_people[entry.actor] = self.recent_people.get(entry.actor, 0) + 1
        kinds = self.recent_kinds
        kinds[entry.kind] = kinds.get(entry.kind, 0.0) + entry.weight
        self._drivers = None

    def _leave_recent(self, entry: _Entry) -> None:
        self.recent_weight -= entry.weight
        if entry.person:
            _discount(self.recent_people, entry.actor)
        kinds = self.recent_kinds
        kinds[entry.kind] -= entry.weight
        self._drivers = None

    def advance(self, now: float, model: ScoringModel, decay: float) -> None:
        """Bring the sums to ``now``: entries leave the recent span, then the window."""
        entries = self.entries
        recent_start = now - model.recent
        if self._exact:  # else an out-of-order entry sits among them uncounted: recounted below
            index = self.recent_index
            while index < len(entries) and entries[index].at < recent_start:
                self._leave_recent(entries[index])
                index += 1
            self.recent_index = index
        cutoff = now - model.window
        if entries and entries[0].at < cutoff:
            drop = bisect.bisect_left(entries, cutoff, key=_entry_time)
            for entry in entries[:drop]:
                self.mass -= entry.weight * math.exp(-decay * (self.anchor - entry.at))
                self.total_weight -= entry.weight
                if _discount(self.actors, entry.actor) + 1 >= self._top_count:
                    self._top_count = 0  # it may have been the busiest: work it out again
                if entry.person:
                    _discount(self.people, entry.actor)
                if entry.once:
                    _discount(self.once_actors, (entry.kind, entry.actor))
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
        recent = entries[self.recent_index:]
        self.recent_weight = math.fsum(e.weight for e in recent)
        people: dict[str, int] = {}
        for e in recent:
            if e.person:
                people[e.actor] = people.get(e.actor, 0) + 1
        self.recent_people = people
        kinds: dict[str, list[float]] = {}
        for e in recent:
            kinds.setdefault(e.kind, []).append(e.weight)
        self.recent_kinds = {kind: math.fsum(weights) for kind, weights in kinds.items()}
        self._drivers = None
        self._exact = True
        self._churn = 0

    @property
    def top_count(self) -> int:
        """How many of the window's events the busiest actor made."""
        if not self._top_count and self.actors:
            self._top_count = max(self.actors.values())
        return self._top_count

    def breadth(self) -> float:
        return breadth(self.top_count, len(self.entries))

    def score_at(self, now: float, decay: float) -> float:
        """The exact (unrounded) activity score at ``now``."""
        if self.mass <= 0.0:
            return 0.0
        return self.breadth() * self.mass * math.exp(-decay * max(now - self.anchor, 0.0))

    def key(self, decay: float, origin: float, people_needed: int) -> RankKey:
        """(enough people, log(score) + decay · (now − origin)), the same at every "now":
        with no event in or out, decay keeps every repository's order, so this orders them."""
        enough = len(self.people) >= people_needed
        spread = self.breadth()
        if self.mass <= 1e-12 or spread <= 0.0:
            return enough, -math.inf
        return enough, math.log(self.mass * spread) + decay * (self.anchor - origin)

    def drivers(self) -> tuple[str, ...]:
        """The event kinds with the most weight in the recent span (ties by name)."""
        if self._drivers is None:
            ranked = sorted(((round(weight, 6), kind) for kind, weight in self.recent_kinds.items()
                             if round(weight, 6) > 0), key=lambda pair: (-pair[0], pair[1]))
            self._drivers = tuple(kind for _, kind in ranked[:DRIVERS])
        return self._drivers

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


def _discount(counter: dict[_Key, int], key: _Key) -> int:
    """One fewer of ``key`` (gone at zero, so ``len`` counts distinct keys); the count left."""
    left = counter[key] - 1
    if left:
        counter[key] = left
    else:
        del counter[key]
    return left


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
    events accepted, duplicates and merges excluded; ``_order`` holds one
    ``(key, name)`` per placed repository, sorted worst first (the best-first
    order read backwards), and every tracked repository is placed by each
    scoreboard.  ``_head`` is the last scoreboard's head (its Top
    ``SUMMARIZED`` and the ties at its end) in rank order: ranks 1 … len(_head);
    beyond it a repository's rank is its place in ``_order``.  Both change only
    inside :meth:`scoreboard`, so :meth:`rank_of` answers as of the last one.
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
        # list, where an insert or a delete shifts few entries (best first, it was 4x as many).
        # (key, name): ties of key, which repositories with one event each have by the
        # thousand, are found by bisection too.
        self._order: list[tuple[RankKey, str]] = []
        self._head: list[str] = []
        self._head_rank: dict[str, int] = {}
        #: The last scoreboard, and until when its Top holds while no repository is refreshed.
        self._last_board: Scoreboard | None = None
        self._top_until = -math.inf
        self._after_head: str | None = None
        self._wakeups: list[tuple[float, str]] = []
        self._dirty: set[str] = set()
        #: Bring every repository up to date at the next scoreboard (after a restore, or
        #: when an event older than all others changed the observed span).
        self._everything_dirty = False
        self._untracked: list[str] = []
        self._board_time = -math.inf
        self.total_events = 0
        self.duplicates = 0
        #: Events not scored because the same activity came through the other kind of source.
        self.merged = 0
        #: Events accepted from a Backfill (counted in ``total_events`` too): scored, not news.
        self.backfilled = 0
        #: Live events dated more than ``model.future_skew`` after the wall clock: scored as of then.
        self.future_clamped = 0
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
        if self._wall_clock is not None:
            latest = self._wall_clock().timestamp() + self.model.future_skew
            if at > latest:
                # A live event from the future (a wrong clock, a forged signed payload) would
                # make "now" jump and decay every other repository to nothing: it counts as now.
                self.future_clamped += 1
                at = latest
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
        name = event.repo_full_name
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = RepoWindow(name)
        repo.add(at, self._weight_of(event), event.title, event.author, event_type.value, not event.is_bot,
                 event_type in ONCE_PER_ACTOR, self.model.repeat_factor, self._decay)
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
        everything = self._everything_dirty
        if everything:
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
        last = self._last_board
        if not due and last is not None and now < self._top_until and not self._untracked:
            # Nothing moved and time has not changed a rounded score or velocity in the head:
            # the same Top, ranks and head as the last scoreboard, at a later moment.
            board = attrs.evolve(last, at=dt.datetime.fromtimestamp(now, dt.UTC), previous_ranks=self._head_rank)
            self._last_board = board
            return board
        observed = self._observed(now)  # the same for every repository: worked out once
        # Where the repositories about to move stood in the previous scoreboard.
        before: dict[str, tuple[RankKey, str]] = {}
        for name in due:
            repo = self._repos.get(name)
            if repo is not None and repo.rank_key is not None:
                before[name] = (repo.rank_key, name)
        previous_head = self._head_rank
        for name in due:
            repo = self._repos.get(name)
            if repo is not None:
                self._refresh(repo, now, observed)
        if last is not None and now < self._top_until and self._same_head(due):
            top = last.top  # the repositories that moved are all below the head
        else:
            top = self._top(now, observed)
        ranks = dict(self._head_rank)
        for name in (*previous_head, *(due if everything else ())):
            if name not in ranks:
                rank = self.rank_of(name)
                if rank is not None:
                    ranks[name] = rank
        previous_ranks = {}
        for name in self._head:
            rank = previous_head.get(name) or self._rank_before(name, before, due)
            if rank is not None:
                previous_ranks[name] = rank
        board = Scoreboard(at=dt.datetime.fromtimestamp(now, dt.UTC), top=top, tracked=len(self._order),
                           ranks=ranks, previous_ranks=previous_ranks, untracked=tuple(self._untracked))
        self._untracked = []
        self._last_board = board
        return board

    def rank_of(self, name: str) -> int | None:
        """``name``'s rank in the last scoreboard (None: not ranked in it)."""
        rank = self._head_rank.get(name)
        if rank is not None:
            return rank
        repo = self._repos.get(name)
        if repo is None or repo.rank_key is None:
            return None
        return self._rank_in_order(repo)

    def standing(self, name: str) -> tuple[int, RepoScore] | None:
        """One repository's rank in the last scoreboard and its standing now (the HTTP API)."""
        rank = self.rank_of(name)
        score = self.score_of(name)
        return None if rank is None or score is None else (rank, score)

    def order(self) -> tuple[str, ...]:
        """Every repository ranked in the last scoreboard, best first (walks them all: for
        tests and tools, never for a scoreboard)."""
        rest = [name for _, name in reversed(self._order) if name not in self._head_rank]
        return (*self._head, *rest)

    def _rank_in_order(self, repo: RepoWindow) -> int:
        """The rank of a placed repository by its place in ``_order`` (exact beyond the head)."""
        assert repo.rank_key is not None
        return len(self._order) - bisect.bisect_left(self._order, (repo.rank_key, repo.name))

    def _rank_before(self, name: str, before: dict[str, tuple[RankKey, str]], due: set[str]) -> int | None:
        """``name``'s rank in the previous scoreboard (beyond its head: its place in the order
        then), ``before`` holding the place each repository in ``due`` (brought up to date
        since) had then.  The order then is the order now with those back in their old
        places (the new ones out): count what is above ``name``'s place then in the order
        now, less those now above it, plus those above it then (None: not ranked then)."""
        place = before.get(name)
        if place is None:
            repo = self._repos.get(name)
            if repo is None or repo.rank_key is None or name in due:
                return None  # moved, yet not ranked before: new
            place = (repo.rank_key, name)
        order = self._order
        rank = 1 + len(order) - bisect.bisect_right(order, place)
        for moved in due:  # new ones too: above it now, not there then
            moved_repo = self._repos.get(moved)
            if moved_repo is not None and moved_repo.rank_key is not None and (moved_repo.rank_key, moved) > place:
                rank -= 1  # above it now, maybe not then
            old_place = before.get(moved)
            if old_place is not None and old_place > place:
                rank += 1  # above it then
        return rank

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
        repo.score_until = repo.shown_until = -math.inf  # what it shows is worked out again
        repo.advance(now, self.model, self._decay)
        if not repo.entries:
            self._unplace(repo)
            del self._repos[repo.name]
            repo.shown = None  # its summary's closure refers back to it: a cycle only a full collection would free
            self._untracked.append(repo.name)
            return
        key = repo.key(self._decay, self._origin or 0.0, self.model.trend_people)
        if key != repo.rank_key:
            self._move(repo, key)
        score = repo.score_at(now, self._decay)
        velocity = self._velocity(repo, observed)
        self._update_trend(repo, now, score, velocity)
        wake = self._next_wakeup(repo, now, score, velocity, observed)
        if wake < repo.scheduled:
            repo.scheduled = wake
            heapq.heappush(self._wakeups, (wake, repo.name))

    def _update_trend(self, repo: RepoWindow, now: float, score: float, velocity: float) -> None:
        """Classify; a status other than the current one is taken once it has held for ``trend_hold``."""
        model = self.model
        if len(repo.people) < model.trend_people:
            status = TrendStatus.QUIET
        else:
            status = self._bounds[repo.trend].classify(round(score, DIGITS), round(velocity, DIGITS))
        if status is repo.trend:
            repo.candidate = None
            return
        if status is not repo.candidate:
            repo.candidate, repo.candidate_since = status, now
        if now >= repo.candidate_since + model.trend_hold:
            repo.trend, repo.candidate = status, None

    def _next_wakeup(self, repo: RepoWindow, now: float, score: float, velocity: float, observed: float) -> float:
        model = self.model
        entries = repo.entries
        wake = entries[0].at + model.window
        if len(repo.people) < model.trend_people and repo.candidate is None:
            # Not ranked among the others, QUIET whatever its score and velocity, shown nowhere:
            # only an event leaving the window (its place in the order) matters until it gets people.
            return max(wake, now)
        if repo.recent_index < len(entries):
            wake = min(wake, entries[repo.recent_index].at + model.recent)
        if repo.candidate is not None:
            wake = min(wake, repo.candidate_since + model.trend_hold)
        # The score only falls: the next edge below it.
        below = bisect.bisect_left(self._score_edges, score) - 1  # woken a hair above one: that one again
        if below >= 0:
            wake = min(wake, now + math.log(score / self._score_edges[below]) / self._decay)
        # While the observed span grows, expected_recent shrinks and velocity rises: the next edge above.
        if repo.total_weight > 0 and observed < model.window:
            # Woken at an edge, it may sit a hair below it: aim at that edge again, not past it.
            above = bisect.bisect_right(self._velocity_edges, velocity - 2e-9)
            if above < len(self._velocity_edges):
                headroom = (repo.recent_weight + 1.0) / self._velocity_edges[above] - 1.0
                if headroom > 0:
                    needed = repo.total_weight * model.recent / headroom
                    if needed < model.window:
                        wake = min(wake, (self._first_event_at or now) + max(needed, model.recent))
        return max(wake, now)

    def _move(self, repo: RepoWindow, key: RankKey) -> None:
        """Give ``repo`` its new key.  Most moves keep the repository between the same
        neighbours: then the key changes in place, without shifting the list."""
        name = repo.name
        if repo.rank_key is not None:
            order = self._order
            index = bisect.bisect_left(order, (repo.rank_key, name))
            place = (key, name)
            if (index == 0 or order[index - 1] < place) and (index + 1 == len(order) or place < order[index + 1]):
                order[index] = place
                repo.rank_key = key
                return
        self._unplace(repo)
        bisect.insort(self._order, (key, name))
        repo.rank_key = key

    def _unplace(self, repo: RepoWindow) -> None:
        if repo.rank_key is None:
            return
        del self._order[bisect.bisect_left(self._order, (repo.rank_key, repo.name))]
        repo.rank_key = None

    def _top(self, now: float, observed: float) -> tuple[RepoScore, ...]:
        """The best ``SUMMARIZED`` with summaries, of those with ``trend_people`` people
        or more; sets the head (``_head``, ``_head_rank``) and until when it holds
        (``_top_until``) while no repository is brought up to date.

        The order is by exact score; the ranking by the rounded score the
        clients see, then by name.  They agree except among equal rounded
        scores, so the head is re-sorted over the whole group of ties at its end.
        """
        order = self._order  # best last
        last = len(order) - 1
        repos = self._repos
        rounded = self._rounded_score
        head = [(key[0], rounded(repos[name], now), name) for key, name in order[:-SUMMARIZED - 1:-1]]
        limit = min(len(order), SUMMARIZED + 200)
        while head and len(head) < limit:
            key, name = order[last - len(head)]
            score = rounded(repos[name], now)
            if (key[0], score) != head[-1][:2]:
                break
            head.append((key[0], score, name))
        # The first repository after the head joins it once its rounded score ties the last one's.
        until = min((repos[name].score_until for *_, name in head), default=math.inf)
        self._after_head = None
        if len(head) < len(order):
            next_name = self._after_head = order[last - len(head)][1]
            rounded(repos[next_name], now)
            until = min(until, repos[next_name].score_until)
        head.sort(key=lambda row: (not row[0], -row[1], row[2]))
        self._head = [name for *_, name in head]
        self._head_rank = {name: rank for rank, name in enumerate(self._head, start=1)}
        top = tuple(self._shown(repos[name], score, now, observed) for enough, score, name in head[:SUMMARIZED]
                    if enough)
        # The head's rounded scores, and the Top's velocities (shown_until) too.
        self._top_until = min([until, *(repos[s.repo_full_name].shown_until for s in top)])
        return top

    def _same_head(self, moved: set[str]) -> bool:
        """True if the head and the repository after it are the last scoreboard's, and the
        repositories brought up to date since then (``moved``) stayed below them."""
        size = len(self._head)
        order = self._order
        if len(order) < size or not size or any(name in self._head_rank for name in moved):
            return False
        after = order[-size - 1][1] if len(order) > size else None
        return after == self._after_head and all(name in self._head_rank for _, name in order[-size:])

    def _rounded_score(self, repo: RepoWindow, now: float) -> float:
        """``repo``'s score rounded as clients see it, worked out again only once it can
        have changed (decay crossed a rounding step, or the repository was refreshed)."""
        if now < repo.score_until:
            return repo.score_shown
        exact = repo.score_at(now, self._decay)
        score = round(exact, DIGITS)
        repo.score_shown = score
        # It falls: it rounds to something else once below score − HALF_STEP (a little before, to be safe).
        step = score - HALF_STEP
        repo.score_until = now + math.log(exact / step) / self._decay * (1 - 1e-9) if step > 0 else math.inf
        return score

    def _velocity_until(self, repo: RepoWindow, velocity: float, now: float) -> float:
        """Until when ``repo``'s rounded velocity stays ``velocity`` without new events:
        it rises while the observed span grows (up to the window), as expected_recent falls."""
        model = self.model
        first = self._first_event_at if self._first_event_at is not None else now
        if repo.total_weight <= 0 or now - first >= model.window:
            return math.inf
        expected = (repo.recent_weight + 1.0) / (velocity + HALF_STEP) - 1.0  # expected_recent at the next step
        if expected <= 0:
            return math.inf
        needed = repo.total_weight * model.recent / expected  # the observed span that gives it
        if needed >= model.window:
            return math.inf
        return first + max(needed, model.recent) - 1e-6

    def _score(self, repo: RepoWindow, now: float, observed: float) -> RepoScore:
        """A repository's standing, without a summary (trend moves, the HTTP API)."""
        velocity = round(self._velocity(repo, observed), DIGITS)
        return RepoScore(repo.name, round(repo.score_at(now, self._decay), DIGITS), velocity,
                         momentum_of(self.model, velocity), repo.trend, len(repo.entries),
                         len(repo.people), len(repo.recent_people), repo.drivers())

    def _shown(self, repo: RepoWindow, score: float, now: float, observed: float) -> RepoScore:
        """A Top entry, with its summary (``score`` is the rounded score).

        Most of the Top is as it was one scoreboard ago: the last entry made
        is reused whole until the repository is refreshed or time moves its
        rounded score or velocity (``shown_until``), and its summary while the
        summary's own inputs (trend, count, people and titles) did not change."""
        shown = repo.shown
        if shown is not None and now < repo.shown_until:
            return shown
        exact_velocity = self._velocity(repo, observed)
        velocity = round(exact_velocity, DIGITS)
        count = len(repo.entries)
        trend = repo.trend
        people, people_recent, drivers = len(repo.people), len(repo.recent_people), repo.drivers()
        repo.shown_until = min(repo.score_until, self._velocity_until(repo, velocity, now))
        if shown is not None and repo.shown_version == repo.titles_version \
                and shown.trend_status is trend and shown.events_in_window == count:
            if shown.activity_score == score and shown.velocity == velocity \
                    and shown.people_recent == people_recent and shown.drivers == drivers:
                return shown
            summarize = shown.summarize
        else:
            summarize = self._summary_later(repo, trend, count, people)
        repo.shown = RepoScore(repo.name, score, velocity, momentum_of(self.model, velocity), trend, count,
                               people, people_recent, drivers, summarize)
        repo.shown_version = repo.titles_version
        return repo.shown

    def _summary_later(self, repo: RepoWindow, trend: TrendStatus, count: int, people: int) -> Callable[[], str]:
        model = self.model
        focus = repo.focus_later(model)
        return lambda: summary_text(model, trend, count, focus(), people)


def _edges(model: ScoringModel) -> tuple[list[float], list[float]]:
    """The values at which a rounded score or velocity crosses a trend threshold
    (with or without hysteresis): a repository's trend can only change there."""
    h = model.hysteresis
    scores = {t * f for t in (model.hot_score, model.active_score, model.quiet_score) for f in (1.0, 1.0 - h)}
    velocities = {t * f for t in (model.hot_velocity, model.active_velocity) for f in (1.0, 1.0 - h)}
    velocities |= {model.cooling_velocity * f for f in (1.0, 1.0 + h)}
    # A score falls, so it is woken a little above the edge; a velocity rises, so a little
    # below it: a wake-up is never late (early only costs a refresh).
    return (sorted(edge + 1e-9 for edge in map(_rounding_edge, scores) if edge > 0),
            sorted(edge - 1e-9 for edge in map(_rounding_edge, velocities) if edge > 0))


def _rounding_edge(threshold: float) -> float:
    """The least x with round(x, DIGITS) >= ``threshold``: the rounded value's first grid
    step at or above the threshold, less half a step."""
    step = 2 * HALF_STEP
    return math.ceil(threshold / step - 1e-9) * step - HALF_STEP


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


def summary_text(model: ScoringModel, status: TrendStatus, count: int, focus: str, people: int) -> str:
    noun = "event" if count == 1 else "events"
    who = "" if people == 0 else " from 1 person" if people == 1 else f" from {people} people"
    text = f"{_LEVEL[status]} activity with {count} {noun}{who} in {model.window_label}."
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
