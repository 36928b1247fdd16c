"""Announcements: what changed between one scoreboard and the last one announced.

Owns: the last announced ranks, trends and summaries, and the rules that turn
a new scoreboard into ``ranking_change``, ``trend_change`` and
``summary_update`` messages; and the moment each scored event is announced at
(its ``new_event``'s timestamp: the message itself, ``NewEvent.of``, is made when the
hub first needs its frame).
Must not: score (``scorer``), stamp or send (``hub``).

Rules:

* Every tracked repository has a rank.  ``up``/``down`` are moves inside the
  Top 10; ``new`` enters it, ``dropped`` leaves it, each with the integer rank
  outside the Top 10 (a repository never ranked before enters from one past
  the last rank of the previous ranking, and never from above 11; one no
  longer tracked leaves to one past the last rank of the new ranking, 11 at
  the least).  Only the Top 10's ranks are kept across a restart: the first
  repository to enter after one enters from one past the last rank.
* A trend is announced for a repository in the scoreboard's Top 30 (the
  ones with summaries: ranked high enough to matter) when the scorer's status
  differs from the last one announced (repositories start ``QUIET``); the
  scorer itself keeps repositories with few people ``QUIET`` and takes a new
  status only once it has held (see ``scorer``).  A repository outside the
  Top 30 keeps its last announced trend until it is back in it.
* Each change carries its reasons when the scoreboard shows the repository:
  ``people``, ``people_recent`` and ``drivers``.
* A summary (the scorer writes one for the top 30) is announced when its text changed, at most once per
  ``summary_interval`` per repository and ``summaries_per_tick`` per
  scoreboard, Top 10 first: under an event flood the volume stays bounded.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import attrs
import trio

from osintd.messages import Announcement, RankingChange, SummaryUpdate, TrendChange
from osintd.models import (AnnouncedRepo, Backfill, BoardState, CursorMark, Event, EventBatch, PipelineItem, RankChange,
                           RepoScore, ScoredItem, Scoreboard, TrendStatus)

if TYPE_CHECKING:
    from osintd.store import Announced

TOP = 10


@attrs.frozen
class DifferSettings:
    summary_interval: float = 30.0
    summaries_per_tick: int = 5


class Differ:
    """Remembers what was announced: the Top 10's ranks (``ranks``), every
    trend that is not ``QUIET`` (``trends``) and the last summary of each
    repository (``summaries``), and the previous scoreboard (for the rank a
    repository enters the Top 10 from)."""

    def __init__(self, settings: DifferSettings = DifferSettings(), announced: Announced | None = None) -> None:
        """``announced`` (a store.Announced) restores what was announced before a restart."""
        self.settings = settings
        self.ranks: dict[str, int] = ({name: rank for name, rank in announced.ranks.items() if rank <= TOP}
                                      if announced else {})
        self.trends: dict[str, TrendStatus] = ({name: trend for name, trend in announced.trends.items()
                                                if trend is not TrendStatus.QUIET} if announced else {})
        self.summaries: dict[str, str] = dict(announced.summaries) if announced else {}
        self._summary_at: dict[str, float] = {}
        #: Each Top entry found to have nothing new to say, as that very RepoScore: skipped
        #: while the scorer hands over the same object; and the moment the first summary held
        #: back by the rate limit may go out.
        self._said: dict[str, RepoScore] = {}
        self._summary_wake = math.inf
        self._previous: Scoreboard | None = None
        self._changed: set[str] = set()

    def changes(self, board: Scoreboard, now: dt.datetime, monotonic: float) -> list[Announcement]:
        """All announcements ``board`` justifies, rankings first; updates what was announced.

        A scoreboard whose Top is the very one of the last (the scorer reuses it while
        nothing in it changed) changes no rank and no trend: only a summary held back by
        the rate limit can be due, and only once its time has come."""
        self._changed = set()
        previous = self._previous
        same_top = previous is not None and board.top is previous.top
        messages: list[Announcement] = []
        if not same_top:
            messages.extend(self._ranking_changes(board, now))
            messages.extend(self._trend_changes(board, now))
        if not same_top or monotonic >= self._summary_wake:
            messages.extend(self._summary_updates(board, now, monotonic))
        gone: Sequence[str] = board.untracked
        if self._previous is None:  # after a restart: forget what left while osintd was down
            # (the first scoreboard after a restore ranks every tracked repository)
            gone = [name for name in {*self.trends, *self.summaries} if name not in board.ranks]
        for name in gone:  # forgotten, not announced: it has no events left to speak of
            if self.trends.pop(name, None) is not None or self.summaries.pop(name, None) is not None:
                self._changed.add(name)
            self.summaries.pop(name, None)
            self._summary_at.pop(name, None)
            self._said.pop(name, None)
        self._previous = board
        return messages

    def announced_changes(self) -> dict[str, AnnouncedRepo]:
        """What is now announced of each repository the last :meth:`changes` touched."""
        return {name: AnnouncedRepo(self.ranks.get(name), self.trends.get(name), self.summaries.get(name))
                for name in self._changed}

    def _ranking_changes(self, board: Scoreboard, now: dt.datetime) -> list[RankingChange]:
        old_ranks = self.ranks
        new_ranks = {score.repo_full_name: rank for rank, score in enumerate(board.top[:TOP], start=1)}
        if new_ranks == old_ranks:
            return []
        previous = self._previous
        # "new" always enters from outside the Top 10, "dropped" always leaves to outside it,
        # even while fewer than ten repositories are ranked.
        entering_from = max(previous.tracked if previous else 0, TOP) + 1
        leaving_to = max(board.tracked, TOP) + 1
        shown = {score.repo_full_name: score for score in board.top}
        changes = []
        for name in {*old_ranks, *new_ranks}:
            # Outside the announced Top 10 a rank is never better than 11: while fewer than ten
            # repositories have enough people, ranks 1-10 are not all announced.
            old = old_ranks.get(name) or max(board.previous_ranks.get(name) or entering_from, TOP + 1)
            new = new_ranks.get(name) or max(board.rank(name) or leaving_to, TOP + 1)
            kind = _rank_change(old, new)
            if kind is not None:
                score = shown.get(name)
                if score is None:
                    changes.append(RankingChange(now, name, old, new, 0.0, kind))
                else:
                    changes.append(RankingChange(now, name, old, new, score.activity_score, kind, score.people,
                                                 score.people_recent, list(score.drivers)))
        self._changed.update(old_ranks.keys() ^ new_ranks.keys())
        self._changed.update(name for name in new_ranks if old_ranks.get(name) != new_ranks[name])
        self.ranks = new_ranks
        changes.sort(key=lambda c: (c.new_rank, c.repo_full_name))
        return changes

    def _trend_changes(self, board: Scoreboard, now: dt.datetime) -> Iterator[TrendChange]:
        for score in board.top:
            name = score.repo_full_name
            old = self.trends.get(name, TrendStatus.QUIET)
            if old is not score.trend_status:
                if score.trend_status is TrendStatus.QUIET:
                    del self.trends[name]
                else:
                    self.trends[name] = score.trend_status
                self._changed.add(name)
                yield TrendChange(now, name, old, score.trend_status, score.momentum, score.velocity,
                                  score.activity_score, score.people, score.people_recent, list(score.drivers))

    def _summary_updates(self, board: Scoreboard, now: dt.datetime, monotonic: float) -> list[SummaryUpdate]:
        budget = self.settings.summaries_per_tick
        interval = self.settings.summary_interval
        said = self._said
        self._summary_wake = math.inf
        updates = []
        for score in board.top:
            name = score.repo_full_name
            if said.get(name) is score:
                continue
            # The rate limit first: it is the cheap test, and the summary is written only when read.
            last = self._summary_at.get(name)
            if last is not None and monotonic - last < interval:
                self._summary_wake = min(self._summary_wake, last + interval)
                continue
            if not score.summary or self.summaries.get(name) == score.summary:
                said[name] = score
                continue
            if budget <= 0:
                self._summary_wake = monotonic  # more to say at the next scoreboard
                break
            budget -= 1
            self.summaries[name] = score.summary
            self._summary_at[name] = monotonic
            said[name] = score
            self._changed.add(name)
            updates.append(summary_update(score, now))
        return updates


def summary_update(score: RepoScore, now: dt.datetime) -> SummaryUpdate:
    return SummaryUpdate(now, score.repo_full_name, score.summary, score.activity_score,
                         score.trend_status, score.momentum, score.events_in_window, score.people,
                         score.people_recent, list(score.drivers))


def _rank_change(old: int, new: int) -> RankChange | None:
    if old <= TOP and new <= TOP:
        if new < old:
            return RankChange.UP
        if new > old:
            return RankChange.DOWN
        return None
    if new <= TOP:
        return RankChange.NEW
    if old <= TOP:
        return RankChange.DROPPED
    return None


async def run_differ(differ: Differ, scored: trio.MemoryReceiveChannel[ScoredItem],
                     inbox: trio.MemorySendChannel[PipelineItem], now: Callable[[], dt.datetime]) -> None:
    """The differ task: events pass on as one :class:`EventBatch` (the hub stamps
    them when it broadcasts them); each scoreboard becomes its announcements,
    followed by the scoreboard itself for the hub's snapshots."""
    async with inbox:
        async for item in scored:
            match item:
                case Scoreboard():
                    # One item: the hub publishes the announcements and takes the board in
                    # one step, so a snapshot never shows a board its seq does not match.
                    messages = tuple(differ.changes(item, now(), trio.current_time()))
                    await inbox.send(BoardState(item, differ.announced_changes(), messages))
                case list():  # a batch stays one item: one hop for the lot
                    await inbox.send(EventBatch(item))
                case Event():
                    await inbox.send(EventBatch([item]))
                case Backfill() | CursorMark():
                    await inbox.send(item)
