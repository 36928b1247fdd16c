"""Write-ahead for the state store: nothing reaches a client before it is stored.

Owns: the batch being gathered (frames, events, announcements, poll cursors),
the frames and the scoreboard waiting for it to be committed, and the task
that commits a batch at most every ``window`` seconds, then hands its frames
over (``deliver``) in order.
Must not: stamp, fan out or decide anything about clients; it only says when
a frame may be shown.

Invariants:

* A frame is handed to ``deliver`` only after the batch holding it is
  committed; frames are handed over in the order they were added.
* A batch taken for a commit is either committed or given back whole, ahead
  of what was added meanwhile: a cancel (a shutdown) or a failed commit
  loses nothing that a later :meth:`flush` could store.
* A commit that fails is retried (backing off to 10 s) until the disk takes
  it; meanwhile the hub holds the pipeline back (``behind``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from osintd.models import AnnouncedRepo, Event, Scoreboard
from osintd.store import Batch, Store

if TYPE_CHECKING:
    from osintd.broadcaster import Frame

log = logging.getLogger(__name__)

#: Frames waiting for their commit beyond which the hub stops taking work.
MAX_PENDING = 5000


class WriteAhead:
    def __init__(self, store: Store, deliver: Callable[[Frame], None],
                 show_board: Callable[[Scoreboard], None], window: float = 0.02) -> None:
        self._store = store
        self._deliver = deliver
        self._show_board = show_board
        self._window = window
        self._batch = Batch()
        self._pending: list[Frame] = []
        self._board: Scoreboard | None = None
        self._ready = trio.Event()
        self.failures = 0
        #: When (trio's clock) the commits began to fail; None while they succeed.
        self.failing_since: float | None = None

    # ------------------------------------------------------------------ gathering

    def add_frame(self, frame: Frame) -> None:
        self._pending.append(frame)
        self._batch.frames.append(frame.stored())
        self._changed(frame.seq)

    def add_event(self, event: Event, seq: int) -> None:
        self._batch.events.append(event)
        self._changed(seq)

    def add_announced(self, announced: dict[str, AnnouncedRepo], seq: int) -> None:
        self._batch.announced.update(announced)
        self._changed(seq)

    def add_cursor(self, target: str, etag: str, seq: int) -> None:
        self._batch.cursors[target] = etag
        self._changed(seq)

    def add_board(self, board: Scoreboard) -> None:
        """Shown (in snapshots) once the announcements before it are delivered."""
        self._board = board

    def _changed(self, seq: int | None) -> None:
        self._batch.seq = seq
        self._ready.set()

    @property
    def behind(self) -> bool:
        """So many frames wait for the disk that the pipeline should wait too."""
        return len(self._pending) > MAX_PENDING

    # ------------------------------------------------------------------ committing

    async def run(self) -> None:
        """Commit what accumulated (a batch every ``window`` at most), then deliver it."""
        while True:
            await self._ready.wait()
            await trio.sleep(self._window)
            await self.flush()

    async def flush(self) -> None:
        """Commit the current batch and deliver its frames; retried until the disk takes it."""
        batch, frames, board = self._batch, self._pending, self._board
        self._batch, self._pending, self._board, self._ready = Batch(), [], None, trio.Event()
        delay = 0.1
        committed = False
        try:
            while True:
                try:
                    await self._store.commit(batch)
                    committed = True
                    self.failing_since = None
                    break
                except Exception as exc:  # disk full, I/O error: nothing may be delivered unstored
                    self.failures += 1
                    if self.failing_since is None:
                        self.failing_since = trio.current_time()
                    log.error("state store commit failed (%s); retrying in %.1fs", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            if not committed:
                self._give_back(batch, frames, board)
        for frame in frames:
            self._deliver(frame)
        if board is not None:
            self._show_board(board)

    def discard(self) -> None:
        """Forget everything not committed: a cluster leader that lost its lease (the
        cluster's stream, not this node, now says what was broadcast)."""
        self._batch, self._pending, self._board, self._ready = Batch(), [], None, trio.Event()
        self.failing_since = None

    def _give_back(self, batch: Batch, frames: list[Frame], board: Scoreboard | None) -> None:
        """Put an uncommitted batch back ahead of what was gathered since."""
        later = self._batch
        batch.frames.extend(later.frames)
        batch.events.extend(later.events)
        batch.announced.update(later.announced)
        batch.cursors.update(later.cursors)
        batch.seq = later.seq if later.seq is not None else batch.seq
        self._batch = batch
        self._pending = frames + self._pending
        self._board = self._board or board
        if batch:
            self._ready.set()
