"""One client's outgoing frames, between the broadcaster and the client's sender.

Owns: the queue of frames handed over for one client and not yet taken by
its sender; whether and since when the client is behind, and when its socket
last took a batch; the parked sender; the close reason.
Must not: decide what a client receives (``broadcaster``), or write to a
socket itself: the one direct write it makes goes through the ``write_now``
function its session gave it (``wsio.ServerWebSocket.try_write_now``), and
only while the session's sender is parked with nothing owed.

Two parties, one writer per field:

* the broadcaster calls :meth:`offer` (never awaits, never blocks) and
  :meth:`end`;
* the session's sender calls :meth:`take`, :meth:`wait`, :meth:`written`
  and sets :attr:`filter` and ``on_end``.

Slow is a rate, not a moment.  Frames are shared (one object for every
client), so a long queue costs a pointer per frame: a burst of tens of
thousands of messages waits here for a client that works through it at its
own pace.  A client is *behind* from the moment a frame has to wait for it
until its sender finds nothing left to take.  It is dropped (checked whenever
a frame is offered) when, while behind:

* its socket has taken nothing for ``stall_after`` seconds (it reads nothing);
* or it has been behind for ``max_behind`` seconds without once catching up
  (it reads, but more slowly than the feed goes on);
* or ``capacity`` frames wait for it (the memory bound).
"""

from __future__ import annotations

import collections
import itertools
import secrets
from typing import TYPE_CHECKING
from collections.abc import Callable

import trio

if TYPE_CHECKING:
    from osintd.broadcaster import Filter, Frame

SLOW_CONSUMER = (1013, "slow consumer")
GOING_AWAY = (1001, "server shutting down")

#: What :meth:`Outbox.offer` did with a frame.
WRITTEN, QUEUED, BEHIND = 0, 1, 2

_client_numbers = itertools.count(1)


class Outbox:
    """The frames on their way to one client (see the module docstring)."""

    # Thousands of these live at once: slots keep each one small.
    __slots__ = ("client_id", "filter", "capacity", "stall_after", "max_behind", "connected_seq",
                 "last_data_seq", "close_reason", "frames_sent", "on_end", "_frames", "_sender", "_write_now",
                 "_behind_since", "_progress_at")

    def __init__(self, filter: Filter, capacity: int = 100_000, stall_after: float = 10.0,
                 max_behind: float = 60.0, write_now: Callable[[bytes], int] | None = None) -> None:
        self.client_id = f"client_{secrets.randbelow(10**9):09d}{next(_client_numbers)}"
        self.filter = filter
        self.capacity = capacity
        self.stall_after = stall_after
        self.max_behind = max_behind
        self.connected_seq = 0
        #: The newest stamped frame handed to the socket (what a resume may not go behind).
        self.last_data_seq: int | None = None
        self.close_reason: tuple[int, str] | None = None
        self.frames_sent = 0
        #: Called once when the outbox ends (the session stops its write in progress).
        self.on_end: Callable[[], None] | None = None
        # Made when something is queued, dropped once taken: an empty deque costs 760 bytes,
        # and most clients have nothing queued most of the time.
        self._frames: collections.deque[Frame] | None = None
        self._sender: trio.lowlevel.Task | None = None  # parked in wait(), nothing queued
        self._write_now = write_now
        #: Since when frames have waited for this client without it catching up (None: it has not).
        self._behind_since: float | None = None
        #: When its socket last took a whole batch (or it fell behind).
        self._progress_at = 0.0

    # ------------------------------------------------------------ the broadcaster's side

    @property
    def ended(self) -> bool:
        return self.close_reason is not None

    def offer(self, frame: Frame, now: float) -> int:
        """Hand ``frame`` over: ``WRITTEN`` (to the socket, at once), ``QUEUED`` (for
        the sender), or ``BEHIND`` if the client has fallen too far behind to keep
        (the caller drops it: :meth:`end` with ``SLOW_CONSUMER``).

        A parked sender with nothing queued means the socket is idle: the frame
        is written at once, without waking the sender, unless the kernel takes
        only part of it (the sender then writes the rest, which the socket owes).
        This is the path of nearly every frame to a client that keeps up."""
        frames = self._frames
        if frames is None:
            if self._sender is not None and self._write_now is not None:
                wire = frame.wire
                written = self._write_now(wire)
                if written > 0:
                    self._count(frame)
                    if written < len(wire):  # the rest is owed by the socket: the sender flushes it
                        self._wake()
                    return WRITTEN
            if self.close_reason is not None:
                return QUEUED  # ending: nothing more goes out, and it is already being dropped
            frames = self._frames = collections.deque()
        elif len(frames) >= self.capacity:
            return BEHIND
        if self._behind_since is None:
            self._behind_since = self._progress_at = now
        elif self._too_far_behind(now):
            return BEHIND
        frames.append(frame)
        self._wake()
        return QUEUED

    def _too_far_behind(self, now: float) -> bool:
        since = self._behind_since
        return since is not None and (now - self._progress_at > self.stall_after or now - since > self.max_behind)

    def offer_first(self, frames: list[Frame]) -> None:
        """Put ``frames`` before everything queued (a connection's first frames, a resume's answer)."""
        if not frames:
            return
        queued = self._frames or ()
        self._frames = collections.deque(itertools.chain(frames, queued))
        self._wake()

    def take_back(self) -> list[Frame]:
        """Everything queued and not yet taken by the sender, in order (for a resume)."""
        frames = list(self._frames or ())
        self._frames = None
        return frames

    def end(self, reason: tuple[int, str]) -> None:
        """The connection is to close with ``reason`` (the first reason given wins)."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self._frames = None
        self._wake()
        if self.on_end is not None:
            self.on_end()

    def lag(self, now: float) -> float:
        """Seconds this client has been behind (0 while it keeps up)."""
        return 0.0 if self._behind_since is None else now - self._behind_since

    @property
    def idle(self) -> bool:
        """The sender is parked with nothing queued: the next frame is written at once."""
        return self._sender is not None and self._write_now is not None

    @property
    def queued(self) -> int:
        return len(self._frames) if self._frames is not None else 0

    # ------------------------------------------------------------ the sender's side

    def take(self, limit: int) -> list[Frame]:
        """Up to ``limit`` queued frames, oldest first; they count as in flight until :meth:`written`."""
        frames = self._frames
        if not frames:
            return []
        if len(frames) <= limit:
            batch = list(frames)
            self._frames = None  # written: an idle client keeps no empty deque
        else:
            batch = [frames.popleft() for _ in range(limit)]
        for frame in batch:
            self._count(frame)
        return batch

    def written(self, now: float) -> None:
        """The frames last taken are written whole; with nothing left queued, the client has caught up."""
        self._progress_at = now
        if not self._frames:
            self._behind_since = None

    async def wait(self) -> None:
        """Park until something is queued or the outbox ends (the hub may write
        directly to the socket meanwhile).  Cancellable."""
        if self._frames or self.close_reason is not None:
            await trio.lowlevel.checkpoint()
            return
        self._sender = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._sender = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _wake(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            trio.lowlevel.reschedule(sender)

    def _count(self, frame: Frame) -> None:
        # Counted as handed to the socket before it is written: a resume arriving
        # meanwhile must not replay what is already on its way.
        self.frames_sent += 1
        if frame.seq is not None:
            self.last_data_seq = frame.seq
