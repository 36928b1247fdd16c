"""Wall-clock timestamps derived from trio's clock.

Owns: turning ``trio.current_time()`` into UTC datetimes.
Must not: sleep, schedule, or know about any pipeline stage.

Every timer in osintd sleeps on trio's clock, and every timestamp a message
carries is read through :class:`WallClock`.  Anchoring the wall clock to trio's
clock once, at start-up, means that under trio's ``MockClock`` (autojump) the
timestamps advance exactly as far as the timers do, so timed behaviour can be
tested in virtual time without sleeping.
"""

from __future__ import annotations

import datetime as dt
import time

import trio

UTC = dt.UTC


class WallClock:
    """UTC wall time that moves with trio's clock.

    Invariant: ``now()`` never goes backwards, because trio's clock is monotonic.
    Must be created inside ``trio.run``.
    """

    def __init__(self, anchor: dt.datetime | None = None) -> None:
        self._anchor_wall = anchor if anchor is not None else dt.datetime.fromtimestamp(time.time(), UTC)
        self._anchor_trio = trio.current_time()

    def now(self) -> dt.datetime:
        return self._anchor_wall + dt.timedelta(seconds=trio.current_time() - self._anchor_trio)


def isoformat(moment: dt.datetime) -> str:
    """The wire form of a timestamp: UTC, microseconds, explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
