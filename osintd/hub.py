"""The hub: the task at the end of the pipeline that turns items into broadcasts.

Owns: taking items off the inbox in order and sending each where it goes —
events to the broadcaster (stamped as ``new_event`` at the moment they are
broadcast), announcements and monitor messages likewise, backfill and poll
cursors to the write-ahead only; what a ``snapshot`` shows (the last board,
metrics, system status); pacing (the hub works through a batch in steps of at
most ``STEP_BUDGET`` and lets busy senders catch up after a fan-out).
Must not: await a client or write to a socket (each client's session does,
through its :class:`~osintd.outbox.Outbox`), compute scores, or keep the state
of its parts: the broadcaster (seq, epoch, ring, clients, resume), the
governor (overload, shedding) and the write-ahead (durability) keep their own.

Invariants:

* Everything done between two awaits is atomic with respect to broadcasts:
  attaching a client, computing its backlog and starting its live feed
  happen in one step (no gap, no duplicate).
* An event's ``new_event`` is stamped (``seq`` and ``timestamp``) when the hub
  broadcasts it, so its timestamp says when osintd told its clients.
* With a state store nothing reaches a client before it is stored: frames
  wait in the write-ahead until their batch is committed, and ``delivered``
  (what heartbeats, ``connection`` and resumes speak of) trails ``seq`` by at
  most one batch.  After ``kill -9`` at any moment, every frame a client has
  seen is in the file, so no event is broadcast twice.
* Nothing that reached the inbox is lost: shed messages are never stamped, so
  nobody sees a gap, and everything stamped is delivered.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Callable

import attrs
import trio

from osintd.broadcaster import Broadcaster, Filter, Frame, direct
from osintd.governor import LOOP_PROBE_EVERY, Governor, GovernorStatistics
from osintd.messages import (Error, Heartbeat, MetricsUpdate, NewEvent, Outgoing, RankedRepo, RankingChange, Snapshot,
                             SystemStatus)
from osintd.models import Backfill, BoardState, CursorMark, Event, EventBatch, PipelineItem, Scoreboard
from osintd.outbox import BEHIND, GOING_AWAY, SLOW_CONSUMER, Outbox
from osintd.store import SavedState, Store, StoredFrame
from osintd.wire import encode
from osintd.writeahead import WriteAhead

log = logging.getLogger(__name__)

__all__ = ["GOING_AWAY", "SLOW_CONSUMER", "Hub", "HubStatistics"]

#: After a fan-out that queued for more than this share of the clients, the hub gives
#: their senders up to CATCH_UP_ROUNDS turns of the event loop before the next one.
BUSY_SHARE = 0.05
CATCH_UP_ROUNDS = 32
#: The longest the hub works through a batch before it lets other tasks run (handshakes,
#: senders, timers).
STEP_BUDGET = 0.005
#: Seconds the state store may fail to commit before the server says so (a full disk is not
#: a blip): health turns unhealthy (/health 503) and clients get a system_status.
STORE_GRACE = 3.0


@attrs.frozen
class HubStatistics:
    """A snapshot of the hub and its parts, for ``/ws/stats`` and ``/metrics``."""

    connections: int
    clients_connected_total: int
    broadcasts_by_type: dict[str, int]
    shed_by_type: dict[str, int]
    frames_delivered: int
    slow_consumers_dropped: int
    overload_episodes: int
    shed_cpu: int
    governor: GovernorStatistics


class Hub:
    def __init__(
        self,
        now: Callable[[], dt.datetime],
        replay_capacity: int = 10_000,
        epoch: str | None = None,
        store: Store | None = None,
        saved: SavedState | None = None,
        batch_window: float = 0.02,
        live: bool = False,
        clients_behind: float = 30.0,
        observe_lag: Callable[[float], None] | None = None,
        clustered: bool = False,
    ) -> None:
        """``live``: the sources follow the wall clock, so a late event loop is an
        overload to speak of (a replay may lag: it is not live).  ``observe_lag``
        is given each broadcast event's age (creation on GitHub → broadcast).
        ``clustered``: the store is the cluster's Redis (``cluster.py``): while it
        cannot commit, the hub takes no more work (the leader's sources pause), and
        health names the component ``redis``, degraded rather than unhealthy."""
        self._now = now
        self.broadcaster = Broadcaster(replay_capacity, epoch, saved.seq if saved else 0,
                                       saved.ring if saved else ())
        self.governor = Governor(self._tell_overloaded, clients_behind)
        self._writeahead = (WriteAhead(store, self._deliver, self._show_board, batch_window)
                            if store is not None else None)
        self.board: Scoreboard | None = None
        self.metrics: MetricsUpdate | None = None
        self.system = SystemStatus(now(), "healthy", {"api": "operational", "pipeline": "starting"},
                                   "Starting up", "info")
        self.shed_by_type: collections.Counter[str] = collections.Counter()
        self._live = live
        self._observe_lag = observe_lag
        self._queued_at_last_fan_out = 0
        self._inbox: trio.MemoryReceiveChannel[PipelineItem] | None = None
        #: The last system_status the health monitor sent, before the store's condition is laid over it.
        self._reported = self.system
        self._store_down = False
        self._clustered = clustered
        #: Whether this hub stamps: always on one node; in a cluster only while it leads
        #: (``cluster.py`` sets it), since a follower's seq is the leader's.
        self.stamping = not clustered
        #: A cluster node's own view of Redis (a follower commits nothing, so only this tells).
        self._redis_down = False
        #: A follower's Top 10, as the leader last published it (a follower has no board).
        self._shown_top: list[RankedRepo] | None = None

    # ------------------------------------------------------------------ the task

    async def run(self, inbox: trio.MemoryReceiveChannel[PipelineItem]) -> None:
        """Broadcast everything that arrives on ``inbox`` until it closes; with a
        store, also commit batches and deliver what they made durable."""
        async with trio.open_nursery() as nursery:
            if self._writeahead is not None:
                nursery.start_soon(self._writeahead.run)
                nursery.start_soon(self._watch_store)
            self._inbox = inbox
            if self._live:  # watch for a hub at capacity and a CPU-bound loop
                nursery.start_soon(self._probe_loop)
            async for item in inbox:
                if isinstance(item, EventBatch):
                    await self._publish_events(item.events)
                else:
                    self.publish(item)
                    await self.let_senders_catch_up()
                while self._held():  # the disk (or Redis) is behind
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    def _held(self) -> bool:
        writeahead = self._writeahead
        if writeahead is None:
            return False
        return writeahead.behind or (self._clustered and writeahead.failing_since is not None)

    def publish(self, item: PipelineItem) -> Frame | None:
        """Handle one item at once; the frame it made, if one."""
        match item:
            case EventBatch(events=events):
                at = self._now()
                frames = [self._publish_event(event, at) for event in events]
                return next((frame for frame in reversed(frames) if frame is not None), None)
            case Backfill(events=events):
                if self._writeahead is not None:
                    for event in events:
                        self._writeahead.add_event(event, self.broadcaster.seq)
                return None
            case BoardState():
                self._publish_board(item)
                return None
            case CursorMark(target=target, etag=etag):
                if self._writeahead is not None:
                    self._writeahead.add_cursor(target, etag, self.broadcaster.seq)
                return None
            case Heartbeat():
                return self._tell_unstamped(item)
            case _:
                return self._publish_message(item)

    # ------------------------------------------------------------------ events

    async def _publish_events(self, events: list[Event]) -> None:
        """Publish a batch, letting the senders and the rest of the loop have their
        turns: a fresh timestamp for each step, one overload check per step."""
        self._check_clients()
        step_began = time.perf_counter()
        at = self._now()
        publish = self._publish_event
        for event in events:
            publish(event, at)
            busy = self._queued_at_last_fan_out and self._senders_busy()
            if busy or time.perf_counter() - step_began > STEP_BUDGET:
                if busy:
                    await self.let_senders_catch_up()
                else:
                    await trio.lowlevel.checkpoint()
                self._check_clients()
                step_began = time.perf_counter()
                at = self._now()

    def _publish_event(self, event: Event, at: dt.datetime) -> Frame | None:
        """One scored event: stored (with a store), then its new_event shed or stamped."""
        if self._writeahead is not None:
            self._writeahead.add_event(event, self.broadcaster.seq)
        if self._observe_lag is not None:
            self._observe_lag(max((at - event.created_at).total_seconds(), 0.0))
        if self.governor.sheds_event(self._live):
            self.shed_by_type[NewEvent.TYPE] += 1
            return None
        return self._show(self.broadcaster.stamp_event(event, at))

    # ------------------------------------------------------------------ messages

    def _publish_board(self, item: BoardState) -> None:
        for message in item.messages:
            self._publish_message(message)
        if self._writeahead is None:
            self.board = item.board
        else:  # shown once the announcements before it are delivered
            self._writeahead.add_board(item.board)
            if item.announced:
                self._writeahead.add_announced(item.announced, self.broadcaster.seq)

    def _publish_message(self, message: Outgoing) -> Frame | None:
        """Shed ``message`` if it is low-value and the server is behind; else stamp and show it."""
        self._check_clients()
        if self.governor.sheds(message.TYPE):
            self.shed_by_type[message.TYPE] += 1
            return None
        if isinstance(message, MetricsUpdate):
            self.metrics = message
        elif isinstance(message, SystemStatus):
            self._reported = message
            self.system = message = self._with_store(message)
        return self._show(self.broadcaster.stamp(message))

    # ------------------------------------------------------------------ the store's health

    async def _watch_store(self) -> None:
        """Tell clients and /health when the store has failed for ``STORE_GRACE`` (and when
        it recovers).  Said unstamped, as a heartbeat is: a stamped message would wait for
        the very commit that fails."""
        assert self._writeahead is not None
        while True:
            await trio.sleep(1.0)
            since = self._writeahead.failing_since
            down = since is not None and trio.current_time() - since >= STORE_GRACE
            if down != self._store_down:
                self._store_down = down
                (log.error if down else log.info)("state store %s", "cannot commit: nothing new reaches clients "
                                                  "until it can" if down else "commits again")
                self._tell_system()

    def _with_store(self, status: SystemStatus) -> SystemStatus:
        """``status`` with the state store's component (when there is a store)."""
        if self._clustered:
            return self._with_redis(status)
        if self._writeahead is None:
            return status
        components = {**status.components, "state": "down" if self._store_down else "operational"}
        if not self._store_down:
            return attrs.evolve(status, components=components)
        return SystemStatus(self._now(), "unhealthy", components,
                            "The state store cannot write (disk full?): new events wait until it can",
                            "critical")

    def _with_redis(self, status: SystemStatus) -> SystemStatus:
        down = self._store_down or self._redis_down
        components = {**status.components, "redis": "down" if down else "operational"}
        if not down:
            return attrs.evolve(status, components=components)
        return SystemStatus(self._now(), "degraded", components,
                            "Redis is unreachable: this node serves what it has; new events wait until it returns",
                            "warning")

    # ------------------------------------------------------------------ a cluster node

    def set_redis_down(self, down: bool) -> None:
        """A cluster node's view of Redis changed: health and clients are told (unstamped,
        as the store's condition is: a stamped message would wait for Redis itself)."""
        if down == self._redis_down:
            return
        self._redis_down = down
        self._tell_system()

    def show_leader_view(self, top: list[RankedRepo], metrics: MetricsUpdate | None,
                         system: SystemStatus) -> None:
        """What the cluster's leader last published for snapshots (a follower has no board)."""
        self._shown_top = top
        self.metrics = metrics
        if system != self._reported:
            self._reported = system
            self.system = self._with_store(system)

    def follow(self, stored: StoredFrame) -> None:
        """A frame the cluster's leader stamped and stored: delivered to this node's clients."""
        frame = self.broadcaster.adopt(stored)
        if frame is not None:
            self._deliver(frame)

    def rollback(self) -> None:
        """A leader that lost its lease forgets what it stamped but did not store."""
        if self._writeahead is not None:
            self._writeahead.discard()
        self.broadcaster.rollback()
        self.board = None

    def _tell_system(self) -> None:
        self.system = self._with_store(self._reported)
        self._tell_unstamped(self.system)

    def _tell_unstamped(self, message: Outgoing) -> Frame:
        """``message`` to every client now, carrying the last seq delivered instead of a new
        one: what is said while stamped frames cannot go out (a heartbeat, the store's or
        Redis's condition, a follower's overload) must not wait behind them."""
        frame = Frame.of(None, message.TYPE, None, encode(message, seq=self.broadcaster.delivered))
        self._offer_all(frame)
        return frame

    def _show(self, frame: Frame) -> Frame:
        """A stamped frame goes to the clients now, or once stored."""
        if self._writeahead is None:
            self._deliver(frame)
        else:
            self._writeahead.add_frame(frame)
        return frame

    def _deliver(self, frame: Frame) -> None:
        self._queued_at_last_fan_out = self.broadcaster.deliver(frame, trio.current_time())

    def _offer_all(self, frame: Frame) -> None:
        self._queued_at_last_fan_out = self.broadcaster.offer_all(frame, trio.current_time())

    def _show_board(self, board: Scoreboard) -> None:
        self.board = board

    def _tell_overloaded(self, message: str, shedding: list[str]) -> None:
        error = Error(self._now(), "SERVER_OVERLOADED", message, "warning", {"shedding": shedding})
        if self.stamping:
            self._publish_message(error)
        else:  # a follower stamps nothing: it could never store it
            self._tell_unstamped(error)

    # ------------------------------------------------------------------ pacing

    async def let_senders_catch_up(self) -> None:
        """After a fan-out that had to queue for many clients (their senders are still
        writing), give the senders their turns before the next fan-out: fanned out
        back to back, ever more clients are found busy, and every frame then costs
        a sender's wake-up and write instead of one direct write.  The hub's
        counterpart of pausing at a high-water mark."""
        for _ in range(CATCH_UP_ROUNDS):
            if not self._senders_busy():
                return
            await trio.lowlevel.checkpoint()
            self._queued_at_last_fan_out = self.broadcaster.senders_busy()

    def _senders_busy(self) -> bool:
        """More than ``BUSY_SHARE`` of the clients had to queue at the last fan-out (or count)."""
        return self._queued_at_last_fan_out > BUSY_SHARE * len(self.broadcaster.clients)

    def _check_clients(self) -> None:
        self.governor.check_clients(self.broadcaster.clients.values(), trio.current_time())

    async def _probe_loop(self) -> None:
        """Measure how late the loop wakes a sleeping task, and whether the inbox
        stays busy; the governor draws its conclusions."""
        while True:
            asleep = trio.current_time()
            await trio.sleep(LOOP_PROBE_EVERY)
            busy = self._inbox is not None and self._inbox.statistics().current_buffer_used > 0
            self.governor.probe(asleep, trio.current_time(), busy)

    # ------------------------------------------------------------------ clients

    def attach(self, client: Outbox, *, snapshot: bool = True,
               since: int | None = None, epoch: str | None = None) -> None:
        """Register ``client``: its first frames (connection, then a resume
        answer or a snapshot) go first, and live frames follow."""
        self.broadcaster.attach(client, lambda: self.snapshot(client.filter.within), self._now(),
                                send_snapshot=snapshot, since=since, epoch=epoch)

    def detach(self, client: Outbox) -> None:
        self.broadcaster.detach(client)

    def send_direct(self, client: Outbox, message: Outgoing) -> None:
        """One message for one client only (pong, error, subscribed …); never stamped."""
        if client.client_id not in self.broadcaster.clients:
            return
        now = trio.current_time()
        if client.offer(direct(message), now) == BEHIND:
            self.broadcaster.drop(client, now)

    def resume(self, client: Outbox, since: int, epoch: str) -> None:
        """A ``resume`` request on a live connection (see ``Broadcaster.resume``)."""
        self.broadcaster.resume(client, since, epoch, lambda: self.snapshot(client.filter.within), self._now())

    def drop_slow(self, client: Outbox) -> None:
        self.broadcaster.drop(client, trio.current_time())

    def close_all(self, reason: tuple[int, str]) -> None:
        self.broadcaster.end_all(reason)

    async def flush(self) -> None:
        """Commit what is gathered for the store and deliver it (nothing without a store)."""
        if self._writeahead is not None:
            await self._writeahead.flush()

    # ------------------------------------------------------------------ views

    def snapshot(self, scope: Filter | None = None) -> Snapshot:
        """What a new client sees first; ``scope`` (its token's limits) keeps the rows and the
        metrics it may not read out, as their messages (ranking_change, metrics_update) would be."""
        top = [RankedRepo.of(rank, score) for rank, score in enumerate(self.board.top[:10], start=1)] \
            if self.board is not None else (self._shown_top or [])
        metrics = self.metrics
        if scope is not None:
            top = [row for row in top if scope.admits_kind(RankingChange.TYPE, row.repo_full_name)]
            metrics = metrics if scope.admits_kind(MetricsUpdate.TYPE, None) else None
        return Snapshot(self._now(), self.epoch, self.delivered, top, metrics, self.system)

    def statistics(self) -> HubStatistics:
        b, g = self.broadcaster, self.governor
        return HubStatistics(len(b.clients), b.clients_connected_total, dict(b.broadcasts_by_type),
                             dict(self.shed_by_type), b.frames_delivered, b.slow_consumers_dropped,
                             g.episodes, g.shed_cpu, g.statistics())

    @property
    def stats(self) -> HubStatistics:
        return self.statistics()

    @property
    def epoch(self) -> str:
        return self.broadcaster.epoch

    @property
    def seq(self) -> int:
        return self.broadcaster.seq

    @property
    def delivered(self) -> int:
        return self.broadcaster.delivered

    @property
    def ring(self) -> collections.deque[Frame]:
        return self.broadcaster.ring

    @property
    def clients(self) -> dict[str, Outbox]:
        return self.broadcaster.clients

    @property
    def connection_count(self) -> int:
        return len(self.broadcaster.clients)

    @property
    def overloaded(self) -> bool:
        return self.governor.overloaded

    @property
    def store_failures(self) -> int:
        return self._writeahead.failures if self._writeahead is not None else 0
