"""Announcements: what changed between one scoreboard and the last one announced.

Owns: the last announced ranks, trends and summaries, and the rules that turn
a new scoreboard into ``ranking_change``, ``trend_change`` and
``summary_update`` messages; it also turns each scored event into ``new_event``.
Must not: score (``scorer``), stamp or send (``hub``).

Rules:

* Every tracked repository has a rank.  ``up``/``down`` are moves inside the
  Top 10; ``new`` enters it, ``dropped`` leaves it, each with the integer rank
  outside the Top 10 (a repository never ranked before enters from one past
  the last rank of the previous ranking, and never from above 11; one no
  longer tracked leaves to one past the last rank of the new ranking, 11 at
  the least).
* A trend is announced when the scorer's status differs from the last one
  announced (repositories start ``QUIET``).
* A summary (the scorer writes one for the top 30) is announced when its text changed, at most once per
  ``summary_interval`` per repository and ``summaries_per_tick`` per
  scoreboard, Top 10 first: under an event flood the volume stays bounded.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterator

import attrs
import trio

from osintd.messages import NewEvent, RankingChange, SummaryUpdate, TrendChange
from osintd.models import BoardState, CursorMark, Event, EventRecord, RankChange, RepoScore, Scoreboard, TrendStatus

TOP = 10


@attrs.frozen
class DifferSettings:
    summary_interval: float = 30.0
    summaries_per_tick: int = 5


class Differ:
    def __init__(self, settings: DifferSettings = DifferSettings(), announced=None) -> None:
        """``announced`` (a store.Announced) restores what was announced before a restart."""
        self.settings = settings
        self.ranks: dict[str, int] = dict(announced.ranks) if announced else {}
        self.trends: dict[str, TrendStatus] = dict(announced.trends) if announced else {}
        self.summaries: dict[str, str] = dict(announced.summaries) if announced else {}
        self._summary_at: dict[str, float] = {}

    @staticmethod
    def new_event(event: Event, now: dt.datetime) -> NewEvent:
        data = dict(event.data)
        if event.action is not None:
            data.setdefault("action", event.action)
        return NewEvent(
            timestamp=now,
            event_id=event.event_id,
            repo_full_name=event.repo_full_name,
            event_type=str(event.event_type),
            title=event.title,
            author=event.author,
            url=event.url,
            data=data,
        )

    def changes(self, board: Scoreboard, now: dt.datetime, monotonic: float) -> list:
        """All announcements ``board`` justifies, rankings first; updates what was announced."""
        messages: list = list(self._ranking_changes(board, now))
        by_name = {score.repo_full_name: score for score in board.ranking}
        messages.extend(self._trend_changes(board, now))
        messages.extend(self._summary_updates(board, now, monotonic))
        # Forget trends and summaries of repositories no longer tracked.
        for name in [n for n in self.trends if n not in by_name]:
            del self.trends[name]
            self.summaries.pop(name, None)
            self._summary_at.pop(name, None)
        return messages

    def _ranking_changes(self, board: Scoreboard, now: dt.datetime) -> Iterator[RankingChange]:
        old_ranks = self.ranks
        new_ranks = board.rank_of()
        # "new" always enters from outside the Top 10, "dropped" always leaves to outside it,
        # even while fewer than ten repositories are ranked.
        entering_from = max(len(old_ranks), TOP) + 1
        leaving_to = max(len(new_ranks), TOP) + 1
        candidates = {name for name, rank in old_ranks.items() if rank <= TOP}
        candidates.update(score.repo_full_name for score in board.ranking[:TOP])
        scores = {score.repo_full_name: score.activity_score for score in board.ranking}
        changes = []
        for name in candidates:
            old = old_ranks.get(name, entering_from)
            new = new_ranks.get(name, leaving_to)
            if name not in old_ranks:
                kind = RankChange.NEW
            elif name not in new_ranks:
                kind = RankChange.DROPPED
            else:
                kind = _rank_change(old, new)
            if kind is not None:
                changes.append(RankingChange(now, name, old, new, scores.get(name, 0.0), kind))
        self.ranks = new_ranks
        changes.sort(key=lambda c: (c.new_rank, c.repo_full_name))
        return iter(changes)

    def _trend_changes(self, board: Scoreboard, now: dt.datetime) -> Iterator[TrendChange]:
        for score in board.ranking:
            old = self.trends.get(score.repo_full_name, TrendStatus.QUIET)
            if old is not score.trend_status:
                self.trends[score.repo_full_name] = score.trend_status
                yield TrendChange(now, score.repo_full_name, old, score.trend_status,
                                  score.momentum, score.velocity, score.activity_score)
            else:
                self.trends.setdefault(score.repo_full_name, old)

    def _summary_updates(self, board: Scoreboard, now: dt.datetime, monotonic: float) -> Iterator[SummaryUpdate]:
        budget = self.settings.summaries_per_tick
        for score in board.ranking:
            if budget <= 0:
                return
            if not self._summary_due(score, monotonic):
                continue
            budget -= 1
            self.summaries[score.repo_full_name] = score.summary
            self._summary_at[score.repo_full_name] = monotonic
            yield summary_update(score, now)

    def _summary_due(self, score: RepoScore, monotonic: float) -> bool:
        if not score.summary or self.summaries.get(score.repo_full_name) == score.summary:
            return False
        last = self._summary_at.get(score.repo_full_name)
        return last is None or monotonic - last >= self.settings.summary_interval


def summary_update(score: RepoScore, now: dt.datetime) -> SummaryUpdate:
    return SummaryUpdate(now, score.repo_full_name, score.summary, score.activity_score,
                         score.trend_status, score.momentum, score.events_in_window)


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


async def run_differ(differ: Differ, scored, inbox, now: Callable[[], dt.datetime],
                     observe_lag: Callable[[float], None] = lambda seconds: None) -> None:
    """The differ task: each event becomes a ``new_event``; each scoreboard its
    announcements, followed by the scoreboard itself for the hub's snapshots."""
    async with inbox:
        async for item in scored:
            if isinstance(item, Event):
                await inbox.send(EventRecord(item))  # stored no later than its new_event
                moment = now()
                observe_lag(max((moment - item.created_at).total_seconds(), 0.0))
                await inbox.send(differ.new_event(item, moment))
            elif isinstance(item, CursorMark):
                await inbox.send(item)
            else:
                # One item: the hub publishes the announcements and takes the board in
                # one step, so a snapshot never shows a board its seq does not match.
                messages = tuple(differ.changes(item, now(), trio.current_time()))
                await inbox.send(BoardState(item, dict(differ.ranks), dict(differ.trends), dict(differ.summaries),
                                            messages))
