"""The overload governor: tells when the server itself is behind, and what to shed.

Owns: the three signs of overload and the decisions drawn from them — which
low-value broadcasts are shed (before stamping, so nobody sees a gap), and
when clients are told (one ``SERVER_OVERLOADED`` error per episode).
Must not: stamp, send or touch clients (it reads their ``lag`` through a
sample the hub gives it), or await anything but its own probe's sleep.

The three signs:

* **Most clients behind at once** (the median lag of a sample of clients over
  ``clients_behind``): it is the server that is behind, not the clients.
  ``new_event`` and ``summary_update`` are shed until the median is under
  half of it again.  A burst that clients work through at their own pace is
  not this: ``clients_behind`` is several seconds.
* **The hub at capacity** (its inbox has held work at every probe for
  ``BACKLOGGED_FOR``): the sources are held back by the bounded channels, so
  nothing piles up and nothing is lost; events arrive later.  Only
  ``summary_update`` is shed (shedding new_events would only make the sources
  produce more).
* **A late event loop** (a sleeping task wakes ``LOOP_LATE`` late on average
  over ``LOOP_LATE_FOR``): the process is CPU-bound.  A growing share of live
  ``new_event`` messages (``shed_fraction``, evenly spread) and every
  ``summary_update`` is shed; the share shrinks back once the loop is on time.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import attrs

from osintd.messages import NewEvent, SummaryUpdate

if TYPE_CHECKING:
    from osintd.outbox import Outbox

log = logging.getLogger(__name__)

#: Broadcast types shed first when the server itself falls behind.
LOW_VALUE = frozenset({NewEvent.TYPE, SummaryUpdate.TYPE})

#: How late, on average over about LOOP_LATE_FOR seconds, the event loop may wake a
#: sleeping task before the server counts as CPU-bound.
LOOP_LATE = 0.1
LOOP_LATE_FOR = 0.5
#: How often the loop's lateness is measured; and how the shed fraction grows (while late)
#: and shrinks (while on time) at each measurement.
LOOP_PROBE_EVERY = 0.05
SHED_STEP_UP, SHED_STEP_DOWN, SHED_MAX = 0.05, 0.02, 0.95
#: How many clients' lags (at random) the check of "most clients behind" looks at.
OVERLOAD_SAMPLE = 64
#: How long the hub's inbox must have held work at every probe (the hub is the bottleneck)
#: to count as at capacity; long enough that a busy but sufficient hub rarely qualifies.
BACKLOGGED_FOR = 2.0
#: How often, at most, the clients' lags are sampled.
CLIENT_CHECK_EVERY = 0.1


@attrs.frozen
class GovernorStatistics:
    """A snapshot for ``/ws/stats`` and ``/metrics``."""

    overloaded: bool
    clients_behind: bool
    at_capacity: bool
    shed_fraction: float
    loop_late_ms: float
    episodes: int
    shed_cpu: int


class Governor:
    """See the module docstring.  ``on_overload(message)`` is called once at the
    start of each episode with what the clients are to be told."""

    def __init__(self, on_overload: Callable[[str, list[str]], None], clients_behind: float = 5.0) -> None:
        self._on_overload = on_overload
        self.clients_behind_after = clients_behind
        self.clients_behind = False
        self.at_capacity = False
        self.loop_late = 0.0  # seconds: how late the loop wakes a sleeping task (a moving average)
        self.shed_fraction = 0.0
        self.overloaded = False
        self.episodes = 0
        self.shed_cpu = 0
        self._shed_credit = 0.0
        self._backlogged_since: float | None = None
        self._last_client_check = -math.inf
        self._random = random.Random()

    # ------------------------------------------------------------------ decisions

    def sheds(self, message_type: str) -> bool:
        """Shed this message (before stamping) instead of broadcasting it?"""
        if message_type not in LOW_VALUE:
            return False
        if self.clients_behind:
            return True
        return message_type != NewEvent.TYPE and self.overloaded

    def sheds_event(self, live: bool) -> bool:
        """Shed the next new_event?  All of them while most clients are behind; of a
        live source's, every 1/``shed_fraction``-th one while the loop is late."""
        if self.clients_behind:
            return True
        if not live or not self.shed_fraction:
            return False
        self._shed_credit += self.shed_fraction
        if self._shed_credit < 1.0:
            return False
        self._shed_credit -= 1.0
        self.shed_cpu += 1
        return True

    # ------------------------------------------------------------------ the signs

    def check_clients(self, clients: Collection[Outbox], now: float) -> None:
        """Sampled at most every ``CLIENT_CHECK_EVERY``: cheap at thousands of clients
        (``clients`` is only copied when a sample is taken)."""
        if now - self._last_client_check < CLIENT_CHECK_EVERY:
            return
        self._last_client_check = now
        if len(clients) < 4:
            self.clients_behind = False
        else:
            everyone = list(clients)
            sample = everyone if len(everyone) <= OVERLOAD_SAMPLE else self._random.sample(everyone, OVERLOAD_SAMPLE)
            median = statistics.median(client.lag(now) for client in sample)
            if not self.clients_behind and median >= self.clients_behind_after:
                self.clients_behind = True
            elif self.clients_behind and median < self.clients_behind_after / 2:
                self.clients_behind = False
        self._update()

    def probe(self, slept_from: float, now: float, inbox_busy: bool) -> None:
        """One probe of the loop: a sleep of ``LOOP_PROBE_EVERY`` begun at ``slept_from``
        ended at ``now``; ``inbox_busy``: the hub's inbox holds work."""
        late = max(now - slept_from - LOOP_PROBE_EVERY, 0.0)
        weight = 1.0 - math.exp(-(now - slept_from) / LOOP_LATE_FOR)
        self.loop_late += weight * (late - self.loop_late)
        if self.loop_late > LOOP_LATE:
            self.shed_fraction = min(SHED_MAX, self.shed_fraction + SHED_STEP_UP)
        else:
            self.shed_fraction = max(0.0, self.shed_fraction - SHED_STEP_DOWN)
        if inbox_busy:
            self._backlogged_since = now if self._backlogged_since is None else self._backlogged_since
            self.at_capacity = now - self._backlogged_since >= BACKLOGGED_FOR
        else:
            self._backlogged_since, self.at_capacity = None, False
        self._update()

    def _update(self) -> None:
        overloaded = self.clients_behind or self.at_capacity or self.shed_fraction > 0
        if overloaded == self.overloaded:
            return
        self.overloaded = overloaded
        if not overloaded:
            log.info("server caught up: no longer shedding")
            return
        self.episodes += 1
        if self.clients_behind:
            what = "new_event and summary_update messages are being shed"
        elif self.shed_fraction:
            what = "it is CPU-bound; part of the new_event and all summary_update messages are being shed"
        else:
            what = ("it is at capacity: the sources are held back, so events arrive late, "
                    "and summary_update messages are being shed")
        shedding = sorted(LOW_VALUE) if self.clients_behind or self.shed_fraction else [SummaryUpdate.TYPE]
        log.warning("server behind its clients: %s", what)
        self._on_overload(f"The server is behind; {what}", shedding)

    def statistics(self) -> GovernorStatistics:
        return GovernorStatistics(self.overloaded, self.clients_behind, self.at_capacity, self.shed_fraction,
                                  self.loop_late * 1000, self.episodes, self.shed_cpu)
