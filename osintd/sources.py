"""The interface every event source implements.

Owns: the contract between sources and the pipeline.
Must not: contain a source.

A source runs as one task.  It sends :class:`~osintd.models.Event` objects on
``events`` (awaiting when the pipeline is busy: sources never drop), or a
list of them, in order, when it has several at once (one channel hop for
the lot: a large part of the cost of an event at high rates), or a
:class:`~osintd.models.Backfill` of events that were already old when it first
saw them (scored, never broadcast: the demo's warm-up history, a poll target's
first backlog; the rule is in its docstring), or a :class:`~osintd.models.CursorMark`
behind the events it covers (the poller's position, stored no earlier than they are), and
:class:`~osintd.models.SourceHealth` on ``health`` whenever its upstream's
state changes, under its ``component`` name.  ``live`` says whether event time follows the wall clock (demo,
poller, webhooks) or only the events themselves (replay).
"""

from __future__ import annotations

from typing import Protocol

import trio

from osintd.models import SourceHealth, SourceItem


class Source(Protocol):
    name: str
    component: str  # the system_status component its health reports name
    live: bool

    async def run(self, events: trio.MemorySendChannel[SourceItem],
                  health: trio.MemorySendChannel[SourceHealth]) -> None: ...
