"""The hub: stamps, encodes once, remembers, and fans out every broadcast.

Owns: ``seq`` and ``epoch``, the replay ring, the set of attached clients and
each client's outgoing queue, the state a ``snapshot`` shows, overload
shedding, and the broadcast counters.
Must not: await a client (every hand-off is ``send_nowait``), touch a socket
(``session`` does), or compute scores (``scorer``/``differ`` do).

Invariants:

* ``seq`` rises by one for each stamped broadcast; the ring holds the most
  recent ``replay_capacity`` stamped frames, consecutive by ``seq``.
* Everything the hub does to its state happens without an await in between,
  so attaching a client, computing its backlog and starting its live feed
  are atomic with respect to broadcasts: no gap, no duplicate.
* A client whose queue is full is behind the others: it is detached, its
  queue is closed and its sender closes the socket with 1013.
* When most clients are behind at once, it is the server that is behind:
  low-value messages are shed before stamping (so nobody sees a gap) and one
  ``error`` with ``SERVER_OVERLOADED`` tells the clients so.
* When the fan-out itself cannot keep up with a live pipeline (the clients
  keep up, the hub does not), the bounded channels fill and hold the sources
  back: nothing piles up and nothing is lost, events just arrive later.
  Shedding new_events then would only make the sources produce more (wasted
  work: at saturation it cost 80-90 % of the delivered rate).  So while the
  hub's inbox has not been empty for ``BACKLOGGED_FOR`` (the hub is the
  bottleneck), the server counts as overloaded: summary updates are shed,
  new_events are delivered at the rate the fan-out can, and the clients are
  told the same way.
* When the process is CPU-bound, nothing waits in a queue: every task just
  gets its turn later (sources fall behind their own schedule, handshakes and
  heartbeats wait).  The symptom is the event loop's own lateness: a task
  that sleeps wakes up late.  While it stays late (``LOOP_LATE`` on average
  over ``LOOP_LATE_FOR``), a growing fraction of live ``new_event`` messages is
  shed (never stamped) and summary updates with them; as soon as the loop is
  on time again, the fraction shrinks back to zero.  Clients are told once per
  episode.
* With a state store, nothing reaches a client before it is stored
  (write-ahead): frames wait in ``_pending`` until their batch is committed,
  and ``delivered`` (what heartbeats, ``connection`` and resumes speak of)
  trails ``seq`` by at most one batch.  After ``kill -9`` at any moment, every
  frame a client has seen is in the file, so no event is broadcast twice.
"""

from __future__ import annotations

import collections
import datetime as dt
import fnmatch
import functools
import itertools
import logging
import math
import random
import re
import secrets
import statistics
import time
from typing import Callable, Iterable

import attrs
import trio

from osintd import wire
from osintd.wire import encode  # by name: inside the property Frame.wire, "wire.encode" would read as itself
from osintd.messages import (
    Connection, Error, Heartbeat, MetricsUpdate, NewEvent, Outgoing, RankedRepo, Resumed,
    Snapshot, SummaryUpdate, SystemStatus,
)
from osintd.models import Backfill, BoardState, CursorMark, Event, EventBatch, Scoreboard
from osintd.store import Batch, SavedState, StateStore, StoredFrame
from osintd.wsio import ServerWebSocket, frame_payload, frame_text

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
#: After a fan-out that queued for more than this share of the clients, the hub gives
#: their senders up to CATCH_UP_ROUNDS turns of the event loop before the next one.
BUSY_SHARE = 0.05
CATCH_UP_ROUNDS = 32
#: How many clients' queues (at random) the overload check looks at.
OVERLOAD_SAMPLE = 64
#: How long the hub's inbox must have held work at every probe (the hub is the bottleneck)
#: to count as at capacity; long enough that a busy but sufficient hub rarely qualifies.
BACKLOGGED_FOR = 2.0
#: The longest the hub works through a batch before it lets other tasks run (handshakes,
#: senders, timers), and how cheap records (shed, or with no clients) do not cost a yield each.
STEP_BUDGET = 0.005

SLOW_CONSUMER = (1013, "slow consumer")
GOING_AWAY = (1001, "server shutting down")


@attrs.define(eq=False)
class Frame:
    """One message, encoded once, as every client receives it: ``wire`` is the
    complete WebSocket frame, the same bytes for every client.

    A broadcast's frame is made the first time anyone reads ``wire`` (a
    client's fan-out, a resume, the store, ``/api/v1/events``), and what it
    was made from is let go then.  With nobody connected, nothing is encoded
    and an event's new_event is never even made: that was 1.8 + 1.4 us of the
    21 us a replayed event cost the daemon.

    Only the frame is kept, not the JSON apart as well: the ring holds
    thousands, and a second copy of each message beside its frame cost 0.25 us
    per event (measured with a ring of 10,000).  The few who need the JSON (the
    store, ``/api/v1/events``) take it back out of the frame (``payload``).

    Not frozen, for the one change it goes through (message or event →
    ``wire``); ``seq``, ``type`` and ``repo`` never change once made.
    """

    seq: int | None
    type: str
    repo: str | None
    _message: Outgoing | None = attrs.field(default=None, repr=False)
    #: An event and its announcement moment, for a new_event not made yet.
    _event: Event | None = attrs.field(default=None, repr=False)
    _at: dt.datetime | None = attrs.field(default=None, repr=False)

    @classmethod
    def of(cls, seq: int | None, type: str, repo: str | None, payload: bytes) -> "Frame":
        """The frame of an already encoded message."""
        return cls.raw(seq, type, repo, frame_text(payload))

    @classmethod
    def raw(cls, seq: int | None, type: str, repo: str | None, data: bytes) -> "Frame":
        """A frame of ready-made bytes (written as they are)."""
        frame = cls(seq, type, repo)
        frame.wire = data
        return frame

    @classmethod
    def stamped(cls, seq: int, message: Outgoing) -> "Frame":
        """The frame of broadcast number ``seq``, to be encoded when first read."""
        return cls(seq, message.TYPE, getattr(message, "repo_full_name", None), message)

    @classmethod
    def of_event(cls, seq: int, event: Event, at: dt.datetime) -> "Frame":
        """The frame of broadcast number ``seq``, the new_event of ``event`` announced at ``at``."""
        return cls(seq, NewEvent.TYPE, event.repo_full_name, None, event, at)

    @functools.cached_property
    def wire(self) -> bytes:
        message = self._message
        if message is None and self._event is not None:
            message = NewEvent.of(self._event, self._at)
        self._message = self._event = self._at = None
        if message is None:
            raise RuntimeError(f"frame {self.seq} of type {self.type} has neither bytes nor a message")
        return frame_text(encode(message, seq=self.seq))

    @property
    def payload(self) -> bytes:
        """The message's JSON (UTF-8)."""
        return frame_payload(self.wire)


@attrs.frozen
class Filter:
    """A client's subscription: ``None`` admits everything of that kind."""

    types: frozenset[str] | None = None
    repos: tuple[str, ...] | None = None
    _pattern: re.Pattern[str] | None = attrs.field(init=False, default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.repos is not None:
            joined = "|".join(fnmatch.translate(glob) for glob in self.repos) or "(?!)"
            object.__setattr__(self, "_pattern", re.compile(joined))

    def admits(self, frame: Frame) -> bool:
        # Heartbeats always pass: clients watch them to tell a quiet feed from a dead one.
        if self.types is not None and frame.type not in self.types and frame.type != "heartbeat":
            return False
        if self._pattern is not None and frame.repo is not None:
            return self._pattern.match(frame.repo) is not None
        return True


EVERYTHING = Filter()
#: Queued to wake a sender; never written to a socket.
WAKE = Frame.raw(None, "_wake", None, b"")


def remainder(data: bytes) -> Frame:
    """The unwritten tail of a direct write: the sender must write it before anything else."""
    return Frame.raw(None, "_remainder", None, data)
_client_numbers = itertools.count(1)


class Subscriber:
    """One attached client as the hub and its session task see it.

    The hub writes ``queue_in`` (never awaiting); the session's sender reads
    ``backlog`` first, then ``queue_out``.  ``close_reason`` is set once, by
    whoever decides the connection ends.
    """

    # Thousands of these live at once: slots keep each one small.
    __slots__ = ("client_id", "filter", "queue_in", "queue_out", "backlog", "writer", "idle",
                 "connected_seq", "last_data_seq", "close_reason", "frames_sent")

    def __init__(self, capacity: int, filter: Filter = EVERYTHING) -> None:
        self.client_id = f"client_{secrets.randbelow(10**9):09d}{next(_client_numbers)}"
        self.filter = filter
        self.queue_in, self.queue_out = trio.open_memory_channel[Frame](capacity)
        # Made when something is put there, dropped by the sender once written:
        # an empty deque costs 760 bytes, and most clients have none most of the time.
        self.backlog: collections.deque[Frame] | None = None
        # Set by the session once its backlog is written: while the sender waits
        # on an empty queue (``idle``), the hub may write frames straight to the socket.
        self.writer: ServerWebSocket | None = None
        self.idle = False
        self.connected_seq = 0
        self.last_data_seq: int | None = None  # last stamped frame handed to the socket
        self.close_reason: tuple[int, str] | None = None
        self.frames_sent = 0

    @property
    def queued(self) -> int:
        return self.queue_in.statistics().current_buffer_used + (len(self.backlog) if self.backlog else 0)

    def later(self, *frames: Frame) -> None:
        """Put ``frames`` in the backlog: the sender writes them before its queue."""
        self.later_all(frames)

    def later_all(self, frames: Iterable[Frame]) -> None:
        if self.backlog is None:
            self.backlog = collections.deque()
        self.backlog.extend(frames)

    def end(self, reason: tuple[int, str]) -> None:
        """Ask the session to close with ``reason`` (first reason wins)."""
        if self.close_reason is None:
            self.close_reason = reason
        self.queue_in.close()

    def nudge(self) -> None:
        """Wake a sender blocked on an empty queue after its backlog was refilled."""
        try:
            self.queue_in.send_nowait(WAKE)
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass  # a full queue wakes the sender anyway; a closed one ends it


@attrs.define
class HubStats:
    broadcasts_by_type: collections.Counter[str] = attrs.field(factory=collections.Counter)
    shed_by_type: collections.Counter[str] = attrs.field(factory=collections.Counter)
    frames_delivered: int = 0
    slow_consumers_dropped: int = 0
    clients_connected_total: int = 0
    overload_episodes: int = 0
    #: new_event messages shed because the event loop was late (CPU-bound; also in shed_by_type).
    shed_cpu: int = 0


class Hub:
    def __init__(
        self,
        now: Callable[[], "object"],
        replay_capacity: int = 10_000,
        epoch: str | None = None,
        overload_fill: float = 0.5,
        store: StateStore | None = None,
        saved: SavedState | None = None,
        batch_window: float = 0.02,
        live: bool = False,
    ) -> None:
        """``live``: the sources follow the wall clock, so falling behind is an
        overload to speak of (a replay may lag: it is not live)."""
        self._now = now
        self.epoch = epoch or secrets.token_hex(8)
        self.seq = saved.seq if saved else 0
        self.delivered = self.seq
        self.ring: collections.deque[Frame] = collections.deque(maxlen=replay_capacity)
        for stored in (saved.ring if saved else ()):
            self.ring.append(Frame.of(stored.seq, stored.type, stored.repo, stored.payload))
        self._store = store
        self._batch = Batch()
        self._pending: list[Frame] = []
        self._batch_ready = trio.Event()
        self._batch_window = batch_window
        self._pending_board: Scoreboard | None = None
        self.store_failures = 0
        self.clients: dict[str, Subscriber] = {}
        self.stats = HubStats()
        self.board: Scoreboard | None = None
        self.metrics: MetricsUpdate | None = None
        self.system = SystemStatus(now(), "healthy", {"api": "operational", "pipeline": "starting"},
                                   "Starting up", "info")
        self._queues_full = False  # most clients' queues are filling: shed every low-value message
        self.loop_late = 0.0  # seconds: how late the loop wakes a sleeping task (a moving average)
        self._live = live
        self._queued_at_last_fan_out = 0
        self._random = random.Random()
        self._inbox: trio.MemoryReceiveChannel | None = None
        self._backlogged_since: float | None = None
        self._backlogged = False  # the inbox has not been empty for BACKLOGGED_FOR: at capacity
        self.shed_fraction = 0.0  # of live new_events, while the loop is late (CPU-bound)
        self._shed_credit = 0.0
        self.overloaded = False
        self._overload_fill = overload_fill
        self._last_overload_check = -1e9

    # ------------------------------------------------------------ broadcasting

    async def run(self, inbox: trio.MemoryReceiveChannel) -> None:
        """Broadcast everything that arrives on ``inbox`` until it closes; with a
        store, also commit batches and deliver what they made durable."""
        async with trio.open_nursery() as nursery:
            if self._store is not None:
                nursery.start_soon(self._commit_batches)
            self._inbox = inbox
            if self._live:  # watch for a hub at capacity and a CPU-bound loop
                nursery.start_soon(self._watch_loop)
            async for item in inbox:
                if isinstance(item, EventBatch):
                    await self._publish_events(item)
                else:
                    self.publish(item)
                    await self._let_senders_catch_up()
                while len(self._pending) > 5000:  # the disk is behind: hold the pipeline back
                    await trio.sleep(self._batch_window)
            nursery.cancel_scope.cancel()

    async def _publish_events(self, batch: EventBatch) -> None:
        """Publish a batch as :meth:`publish` would, letting the senders and the rest
        of the loop have their turns; the overload check (sampled at 10 Hz anyway)
        runs once per step of the loop, not once per event."""
        self._check_overload()
        step_began = time.perf_counter()
        at = batch.at
        for event in batch.events:
            self._publish_event(event, at)
            if self._senders_busy():  # checked first: most events need no await
                await self._let_senders_catch_up()
                self._check_overload()
            if time.perf_counter() - step_began > STEP_BUDGET:
                await trio.lowlevel.checkpoint()
                self._check_overload()
                step_began = time.perf_counter()

    def publish(self, item) -> Frame | None:
        """Stamp, encode, remember and offer one message to every client."""
        if not isinstance(item, (BoardState, CursorMark, Backfill, Heartbeat)):
            self._check_overload()
        if isinstance(item, BoardState):
            for message in item.messages:
                self.publish(message)
            if self._store is None:
                self.board = item.board
            else:  # shown once the announcements before it are delivered
                self._pending_board = item.board
            if item.announced:
                self._durable(lambda batch: batch.announced.update(item.announced))
            return None
        if isinstance(item, EventBatch):  # the last event's frame
            frames = [self._publish_event(event, item.at) for event in item.events]
            return next((frame for frame in reversed(frames) if frame is not None), None)
        if isinstance(item, CursorMark):
            self._durable(lambda batch: batch.cursors.__setitem__(item.target, item.etag))
            return None
        if isinstance(item, Backfill):  # stored like _publish_event's events; not news: no frame
            self._durable(lambda batch: batch.events.extend(item.events))
            return None
        if isinstance(item, Heartbeat):
            frame = Frame.of(None, item.TYPE, None, wire.encode(item, seq=self.delivered))
            self._fan_out(frame)
            return frame
        return self._stamp(item)

    def _publish_event(self, event: Event, at: dt.datetime) -> Frame | None:
        """One scored event: stored (with a store), then its new_event shed or stamped.

        The path of every event, so :meth:`_stamp`'s tests are written out for
        a new_event: it is shed while most queues are full (not for a late
        loop's ``overloaded``, which ``shed_fraction`` handles)."""
        if self._store is not None:
            self._durable(lambda batch: batch.events.append(event))
        if self.shed_fraction:
            self._shed_credit += self.shed_fraction
            if self._shed_credit >= 1.0:  # spread evenly: every 1/fraction-th event
                self._shed_credit -= 1.0
                self.stats.shed_by_type[NewEvent.TYPE] += 1
                self.stats.shed_cpu += 1
                return None
        if self._queues_full:
            self.stats.shed_by_type[NewEvent.TYPE] += 1
            return None
        self.seq += 1
        return self._keep(Frame.of_event(self.seq, event, at))

    def _stamp(self, item: Outgoing) -> Frame | None:
        """Shed ``item`` if it is low-value and the server is behind; else stamp, encode, keep, offer."""
        if item.TYPE in LOW_VALUE and (self._queues_full or item.TYPE != NewEvent.TYPE and self.overloaded):
            self.stats.shed_by_type[item.TYPE] += 1
            return None
        if isinstance(item, MetricsUpdate):
            self.metrics = item
        elif isinstance(item, SystemStatus):
            self.system = item
        self.seq += 1
        return self._keep(Frame.stamped(self.seq, item))

    def _keep(self, frame: Frame) -> Frame:
        """A stamped frame: into the ring, counted, and offered (after its batch is stored, with a store)."""
        self.ring.append(frame)
        self.stats.broadcasts_by_type[frame.type] += 1
        if self._store is None:
            self._deliver(frame)
        else:
            self._pending.append(frame)
            self._durable(lambda batch: batch.frames.append(StoredFrame(frame.seq, frame.type, frame.repo,
                                                                        frame.payload)))
        return frame

    def _deliver(self, frame: Frame) -> None:
        self.delivered = frame.seq
        self._fan_out(frame)

    # ------------------------------------------------------------- durability

    def _durable(self, add: Callable[[Batch], None]) -> None:
        if self._store is None:
            return
        add(self._batch)
        self._batch.seq = self.seq
        self._batch_ready.set()

    async def _commit_batches(self) -> None:
        """Commit what accumulated (a batch every ``batch_window`` at most), then deliver it."""
        while True:
            await self._batch_ready.wait()
            await trio.sleep(self._batch_window)
            await self.flush()

    async def flush(self) -> None:
        """Commit the current batch and deliver its frames; retried until the disk takes it."""
        if self._store is None:
            return
        batch, frames, board = self._batch, self._pending, self._pending_board
        self._batch, self._pending, self._batch_ready, self._pending_board = Batch(), [], trio.Event(), None
        delay = 0.1
        while True:
            try:
                await self._store.commit(batch)
                break
            except Exception as exc:  # disk full, I/O error: nothing may be delivered unstored
                self.store_failures += 1
                log.error("state store commit failed (%s); retrying in %.1fs", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for frame in frames:
            self._deliver(frame)
        if board is not None:
            self.board = board

    def _fan_out(self, frame: Frame) -> None:
        if not self.clients:
            self._queued_at_last_fan_out = 0
            return
        queued = 0
        for client in list(self.clients.values()):
            if client.filter.admits(frame):
                queued += not self._offer(client, frame)
        self._queued_at_last_fan_out = queued

    async def _let_senders_catch_up(self) -> None:
        """After a fan-out that had to queue for many clients (their senders are still
        writing), give the senders their turns before the next fan-out.

        Measured at saturation: fanned out back to back, ever more clients are found
        busy, every frame then costs a sender's wake-up and write instead of one
        direct write, and the delivered rate fell by a third (connecting took 5x
        longer).  This is the hub's counterpart of pausing at a high-water mark."""
        for _ in range(CATCH_UP_ROUNDS):
            if not self._senders_busy():
                return
            await trio.lowlevel.checkpoint()
            self._queued_at_last_fan_out = sum(not client.idle for client in self.clients.values())

    def _senders_busy(self) -> bool:
        """More than ``BUSY_SHARE`` of the clients had to queue at the last fan-out (or count)."""
        return self._queued_at_last_fan_out > BUSY_SHARE * len(self.clients)

    def _offer(self, client: Subscriber, frame: Frame) -> bool:
        """Write ``frame`` to the socket at once if the client is idle, else queue it;
        True if it was written whole.

        A direct write saves waking the client's sender; it is attempted only
        when nothing is queued before it, so order holds."""
        if client.idle and client.writer is not None:
            written = client.writer.try_write_now(frame.wire)
            if written > 0:
                self.count_sent(client, frame)
                if written == len(frame.wire):
                    return True
                frame = remainder(frame.wire[written:])  # the kernel took part of it: the rest goes first
        client.idle = False
        try:
            client.queue_in.send_nowait(frame)
        except trio.WouldBlock:
            self.drop_slow(client)
        except trio.ClosedResourceError:
            self.clients.pop(client.client_id, None)
        return False

    def count_sent(self, client: Subscriber, frame: Frame) -> None:
        """``frame`` is on its way to ``client``'s socket (written, or being written)."""
        client.frames_sent += 1
        self.stats.frames_delivered += 1
        if frame.seq is not None:
            client.last_data_seq = frame.seq

    def drop_slow(self, client: Subscriber) -> None:
        if self.clients.pop(client.client_id, None) is None:
            return
        self.stats.slow_consumers_dropped += 1
        log.warning("client %s dropped: slow consumer (%d queued)", client.client_id, client.queued)
        client.end(SLOW_CONSUMER)

    def _check_overload(self) -> None:
        # Sampled at most ten times a second: cheap at thousands of clients.
        now = trio.current_time()
        if now - self._last_overload_check < 0.1:
            return
        self._last_overload_check = now
        if len(self.clients) < 4:
            self._queues_full = False
        else:
            # The median of a sample: "most clients are behind" does not need all 5,000 of them,
            # and their channels' statistics() at 10 Hz cost a tenth of the CPU at saturation.
            clients = list(self.clients.values())
            sample = clients if len(clients) <= OVERLOAD_SAMPLE else self._random.sample(clients, OVERLOAD_SAMPLE)
            fills = [c.queue_in.statistics() for c in sample]
            median = statistics.median(s.current_buffer_used / max(s.max_buffer_size, 1) for s in fills)
            if not self._queues_full and median >= self._overload_fill:
                self._queues_full = True
            elif self._queues_full and median < self._overload_fill / 2:
                self._queues_full = False
        self._update_overloaded(now)

    async def _watch_loop(self) -> None:
        """Measure how late the loop wakes a sleeping task; steer ``shed_fraction``.

        The lateness is averaged over about ``LOOP_LATE_FOR`` (exponentially), so
        one long step (a garbage collection, a big snapshot) does not count."""
        while True:
            asleep = trio.current_time()
            await trio.sleep(LOOP_PROBE_EVERY)
            now = trio.current_time()
            late = max(now - asleep - LOOP_PROBE_EVERY, 0.0)
            weight = 1.0 - math.exp(-(now - asleep) / LOOP_LATE_FOR)
            self.loop_late += weight * (late - self.loop_late)
            if self.loop_late > LOOP_LATE:
                self.shed_fraction = min(SHED_MAX, self.shed_fraction + SHED_STEP_UP)
            else:
                self.shed_fraction = max(0.0, self.shed_fraction - SHED_STEP_DOWN)
            if self._inbox is not None and self._inbox.statistics().current_buffer_used:
                self._backlogged_since = now if self._backlogged_since is None else self._backlogged_since
                self._backlogged = now - self._backlogged_since >= BACKLOGGED_FOR
            else:
                self._backlogged_since, self._backlogged = None, False
            self._update_overloaded(now)

    def _update_overloaded(self, now: float) -> None:
        overloaded = self._queues_full or self._backlogged or self.shed_fraction > 0
        if overloaded == self.overloaded:
            return
        self.overloaded = overloaded
        if overloaded:
            self.stats.overload_episodes += 1
            if self._queues_full:
                what = "new_event and summary_update messages are being shed"
            elif self.shed_fraction:
                what = "it is CPU-bound; part of the new_event and all summary_update messages are being shed"
            else:
                what = ("it is at capacity: the sources are held back, so events arrive late, "
                        "and summary_update messages are being shed")
            shedding = sorted(LOW_VALUE) if self._queues_full or self.shed_fraction else [SummaryUpdate.TYPE]
            log.warning("server behind its clients: %s", what)
            self.publish(Error(self._now(), "SERVER_OVERLOADED", f"The server is behind; {what}",
                               "warning", {"shedding": shedding}))
        else:
            log.info("server caught up: no longer shedding")

    # ----------------------------------------------------------- one client

    def attach(self, client: Subscriber, *, snapshot: bool = True,
               since: int | None = None, epoch: str | None = None) -> None:
        """Register ``client``: its first frames (connection, then a resume
        answer or a snapshot) go to its backlog, and live frames follow."""
        client.connected_seq = self.delivered
        client.later(self._direct(Connection(self._now(), client.client_id, self.epoch, self.delivered)))
        if since is not None:
            self._replay_into(client, since, epoch)
        elif snapshot:
            client.later(self._direct(self.snapshot()))
        self.clients[client.client_id] = client
        self.stats.clients_connected_total += 1

    def detach(self, client: Subscriber) -> None:
        self.clients.pop(client.client_id, None)
        client.queue_in.close()

    def send_direct(self, client: Subscriber, message: Outgoing) -> None:
        """One message for one client only (pong, error, subscribed …); never stamped."""
        if client.client_id not in self.clients:
            return
        self._offer(client, self._direct(message))

    def resume(self, client: Subscriber, since: int, epoch: str) -> None:
        """A ``resume`` request on a live connection.

        Everything not yet handed to the socket is taken back and queued again
        in order after the answer, so the client still sees each seq once and in
        order.  If this connection has already delivered data older than what
        the client is missing, order cannot be kept: ``recovered`` is false.
        """
        pending = list(client.backlog or ())
        client.backlog = None
        while True:
            try:
                pending.append(client.queue_out.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        delivered = client.last_data_seq
        direct = [frame for frame in pending if frame.seq is None and frame.type not in ("heartbeat", "_wake")]
        client.idle = False
        if delivered is not None and since < delivered:
            self._refuse(client, since, epoch, "data after your since was already delivered on this "
                         "connection; reconnect with ?since=SEQ&epoch=E to resume without a gap")
        else:
            self._replay_into(client, since if delivered is None else max(since, delivered), epoch,
                              reported_since=since)
        client.later_all(direct)
        client.nudge()

    def _replay_into(self, client: Subscriber, since: int, epoch: str | None,
                     reported_since: int | None = None) -> None:
        reported = since if reported_since is None else reported_since
        oldest = self.ring[0].seq if self.ring else self.delivered + 1
        if epoch != self.epoch:
            return self._refuse(client, reported, epoch, f"epoch {epoch!r} is not the current epoch {self.epoch!r}")
        if since > self.delivered:
            return self._refuse(client, reported, epoch,
                                f"since {since} is ahead of the current seq {self.delivered}")
        if since + 1 < oldest:
            return self._refuse(client, reported, epoch,
                                f"messages after {since} are no longer kept (oldest kept: {oldest})")
        missed = [frame for frame in self._ring_after(since)
                  if frame.seq <= self.delivered and client.filter.admits(frame)]
        client.later(self._direct(Resumed(self._now(), True, reported, self.epoch, self.delivered, len(missed))))
        client.later_all(missed)

    def _refuse(self, client: Subscriber, since: int, epoch: str | None, reason: str) -> None:
        client.later(self._direct(Resumed(self._now(), False, since, self.epoch, self.delivered, 0, reason)),
                     self._direct(self.snapshot()))

    def _ring_after(self, since: int) -> Iterable[Frame]:
        if not self.ring:
            return ()
        start = max(since - self.ring[0].seq + 1, 0)
        return itertools.islice(self.ring, start, None)

    @staticmethod
    def _direct(message: Outgoing) -> Frame:
        return Frame.of(None, message.TYPE, None, wire.encode(message))

    # ----------------------------------------------------------------- views

    def snapshot(self) -> Snapshot:
        top = [RankedRepo.of(rank, score) for rank, score in enumerate(self.board.top[:10], start=1)] \
            if self.board is not None else []
        return Snapshot(self._now(), self.epoch, self.delivered, top, self.metrics, self.system)

    @property
    def backlogged(self) -> bool:
        return self._backlogged

    @property
    def connection_count(self) -> int:
        return len(self.clients)

    def close_all(self, reason: tuple[int, str]) -> None:
        for client in list(self.clients.values()):
            self.clients.pop(client.client_id, None)
            client.end(reason)
