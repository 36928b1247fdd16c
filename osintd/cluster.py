"""A cluster of osintd nodes on Redis: one leader runs the pipeline, every node serves clients.

Owns: the connection to Redis (``--redis``), the cluster's keys (``--cluster``
names them), the leader's lease and its fencing term, the stream of stamped
frames, the durable state in Redis (:class:`RedisStore`, the same contract as
the SQLite :class:`~osintd.store.StateStore`), and a node's role: following
the stream, taking the lease, leading, and stepping down.
Must not: stamp, score or fan out itself (the hub, the scorer and the
broadcaster do, as on one node), or choose the sources (``app.py``).

Keys, for cluster NAME (``osintd:{NAME}:...``):

=================  ====================================================================
``lease``          the leader's node id, with a time to live (``LEASE_TTL``)
``term``           a counter raised by every acquisition: the fencing token
``frames``         a stream: one entry per stamped frame, id ``SEQ-0``; fields t, r, p
                   (type, repository, the message's JSON); trimmed to about the replay
                   capacity
``meta``           a hash: ``epoch`` (set once, kept for the cluster's life) and ``seq``
``events``,        the events inside the scoring window (id → JSON) and their times
``events_by_time``
``seen``           the ids broadcast in the last 90 days (at most ``SEEN_CAPACITY``)
``announced``      repository → the last rank, trend and summary announced (JSON)
``cursors``        poll target → ETag
``deliveries``     a stream: webhook deliveries acknowledged to GitHub by any node (field e,
                   the normalised event's JSON), read by the leader in the consumer group
                   ``leaders`` (consumer: its node id), acknowledged and deleted by the
                   commit that stores everything before them
``snapshot``       the leader's Top 10, metrics and system status, for followers' snapshots
=================  ====================================================================

Invariants:

* Only the holder of the current ``term`` writes: every write of the leader
  is one Lua script that first checks ``term`` (a leader that lost its lease
  is fenced off: its commit fails, it rolls back what it stamped and follows).
* Only acquiring raises ``term``, and acquiring needs no holder: a leader
  whose lease expired while nobody took it (Redis was away) keeps its term.
* A frame is in the stream before any client of any node sees it: the leader
  delivers after its write-ahead commit (the script), followers deliver what
  they read from the stream.  ``seq`` is the entry's id, so every node numbers
  a frame the same way, and a new leader continues from the stream's last id.
* A commit is idempotent: frames up to the stored ``seq`` are skipped, so a
  commit retried after its answer was lost adds nothing twice.
* A webhook delivery is answered 202 only once it is in ``deliveries``, and
  leaves it only in the commit that stores what came after it through the
  pipeline (a :class:`~osintd.models.CursorMark` follows the deliveries the leader
  hands on; the commit that carries the mark XACKs them): a delivery the leader
  took but never committed stays pending, and the next term claims it again
  (the scorer drops any that did get through: its id is the X-GitHub-Delivery).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import cattrs
import coredis
import coredis.exceptions
import trio

from osintd.hub import Hub
from osintd.messages import MetricsUpdate, RankedRepo, SystemStatus
from osintd.models import AnnouncedRepo, CursorMark, Event, SourceItem, TrendStatus
from osintd.store import (SEEN_RETENTION, Announced, Batch, SavedState, StoredFrame, event_from_json,
                          event_json)

log = logging.getLogger(__name__)

#: How long a lease lasts without renewal: a dead leader is replaced after about this long.
LEASE_TTL = 5.0
#: How often the leader renews its lease and a follower tries to take it.
RENEW_EVERY = 1.0
#: The leader's snapshot state is published this often (and followers read it as often).
PUBLISH_EVERY = 1.0
#: Ids remembered for dedupe across a failover (the scorer's own memory is no larger).
SEEN_CAPACITY = 100_000
#: The stream keeps at least this many frames, whatever --replay-capacity, so that a
#: follower a moment behind still finds what it has not read.
MIN_STREAM = 1000
#: Errors that mean Redis cannot be reached or answered (not a refusal by a script).
REDIS_DOWN = (coredis.exceptions.ConnectionError, OSError, TimeoutError)
#: The consumer group of the leaders in the ``deliveries`` stream.
DELIVERY_GROUP = "leaders"
#: A CursorMark whose target starts so acknowledges deliveries (its etag: their entry ids).
DELIVERY_MARK = "redis:deliveries "
#: Deliveries handed to the pipeline at once (one read of the stream).
DELIVERY_BATCH = 64
#: A delivery pending this long on any consumer is claimed again by the leader: one that a
#: fenced leader took; or this leader's own, its commit long overdue (identity drops a repeat).
CLAIM_IDLE = 3 * LEASE_TTL

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local term = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return term
"""

_RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# KEYS: term frames meta events events_by_time seen announced cursors deliveries
# ARGV: term maxlen seq window seen_retention seen_capacity n_frames n_events n_announced n_cursors n_acks
#       group, then per frame (seq type repo payload), per event (id created_at body), per repository
#       (name json|''), per cursor (target etag), per delivery acknowledged (entry id).
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
local top = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
local i = 13
for _ = 1, tonumber(ARGV[7]) do
  if tonumber(ARGV[i]) > top then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], ARGV[i] .. '-0', 't', ARGV[i+1], 'r', ARGV[i+2], 'p', ARGV[i+3])
  end
  i = i + 4
end
local newest = nil
for _ = 1, tonumber(ARGV[8]) do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i+2])
  redis.call('ZADD', KEYS[5], ARGV[i+1], ARGV[i])
  redis.call('ZADD', KEYS[6], ARGV[i+1], ARGV[i])
  local at = tonumber(ARGV[i+1])
  if newest == nil or at > newest then newest = at end
  i = i + 3
end
if newest ~= nil then
  local oldest = newest - tonumber(ARGV[4])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. oldest)) do
    redis.call('HDEL', KEYS[4], id)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. oldest)
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. (newest - tonumber(ARGV[5])))
  local extra = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[6])
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[6], 0, extra - 1) end
end
for _ = 1, tonumber(ARGV[9]) do
  if ARGV[i+1] == '' then redis.call('HDEL', KEYS[7], ARGV[i]) else redis.call('HSET', KEYS[7], ARGV[i], ARGV[i+1]) end
  i = i + 2
end
for _ = 1, tonumber(ARGV[10]) do
  redis.call('HSET', KEYS[8], ARGV[i], ARGV[i+1])
  i = i + 2
end
for _ = 1, tonumber(ARGV[11]) do
  redis.call('XACK', KEYS[9], ARGV[12], ARGV[i])
  redis.call('XDEL', KEYS[9], ARGV[i])
  i = i + 1
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) > top then redis.call('HSET', KEYS[3], 'seq', ARGV[3]) end
return 1
"""


class LeaseLost(Exception):
    """This node's term is over: another node leads the cluster now."""


@attrs.frozen
class Keys:
    cluster: str

    def __getattr__(self, name: str) -> str:
        return f"osintd:{{{self.cluster}}}:{name}"


def connect(url: str) -> coredis.Redis[bytes]:
    """A client for ``--redis`` (not connected yet: ``async with`` it)."""
    # coredis logs every retry at INFO and every failed connection attempt (one at each
    # shutdown, while cancelled) with a traceback at ERROR; each failure also reaches this
    # module as an exception, and it says once when Redis goes and once when it comes back.
    logging.getLogger("coredis").setLevel(logging.CRITICAL)
    return coredis.Redis.from_url(url, connect_timeout=2.0, stream_timeout=10.0)


def display_url(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{place}" if credentials or at else url


def node_identity(port: int) -> str:
    """How this node is named in the lease and in /api/v1/health."""
    return f"{socket.gethostname()}:{port}:{os.getpid()}"


# ------------------------------------------------------------------ the store


class RedisStore:
    """The cluster's durable state; a :class:`~osintd.store.Store` for the leader's write-ahead."""

    def __init__(self, client: coredis.Redis[bytes], keys: Keys, ring_capacity: int, window: float) -> None:
        self._client = client
        self.keys = keys
        self._maxlen = max(ring_capacity, MIN_STREAM)
        self._ring_capacity = ring_capacity
        self._window = window
        #: The fencing token while this node leads; None while it follows.
        self.term: int | None = None
        #: Set when a write was refused for a stale term.
        self.fenced = trio.Event()

    async def epoch(self, candidate: str) -> str:
        """The cluster's epoch: the first node's candidate, kept for the cluster's life."""
        await self._client.hsetnx(self.keys.meta, "epoch", candidate)
        stored = await self._client.hget(self.keys.meta, "epoch")
        assert stored is not None
        return stored.decode()

    async def set_epoch(self, epoch: str) -> None:
        await self._client.hsetnx(self.keys.meta, "epoch", epoch)

    async def tail(self) -> tuple[int, list[StoredFrame]]:
        """The stream's last seq and up to the replay capacity of its newest frames, oldest first."""
        k = self.keys
        meta = await self._client.hget(k.meta, "seq")
        entries = await self._client.xrevrange(k.frames, count=max(self._ring_capacity, 1)) \
            if self._ring_capacity else ()
        frames = [_stored(entry) for entry in reversed(entries)]
        last = await self._client.xrevrange(k.frames, count=1)
        seq = max(int(meta or 0), _seq(last[0].identifier) if last else 0)
        return seq, frames

    async def frames_after(self, seq: int, count: int | None = None, block: float | None = None) -> list[StoredFrame]:
        """Stream frames with a seq above ``seq`` (waiting up to ``block`` seconds for one)."""
        if block is None:
            entries = await self._client.xrange(self.keys.frames, f"({seq}-0", "+", count=count)
            return [_stored(entry) for entry in entries]
        answer = await self._client.xread({self.keys.frames: f"{seq}-0"}, count=count, block=int(block * 1000))
        if not answer:
            return []
        return [_stored(entry) for stream in answer.values() for entry in stream]

    async def load(self) -> SavedState:
        """What a new leader restores: seq, the scoring window, dedupe ids, announcements
        and cursors (the ring comes from :meth:`tail`; webhook deliveries pending in the
        stream are taken up by :meth:`feed_deliveries`)."""
        c, k = self._client, self.keys
        seq, ring = await self.tail()
        epoch = await c.hget(k.meta, "epoch")
        events = sorted((event_from_json(body) for body in (await c.hgetall(k.events)).values()),
                        key=lambda event: event.created_at)
        seen = [member.decode() for member in await c.zrange(k.seen, 0, -1)]
        ranks, trends, summaries = {}, {}, {}
        for repo, row in (await c.hgetall(k.announced)).items():
            announced = json.loads(row)
            name = repo.decode()
            if announced.get("rank") is not None:
                ranks[name] = announced["rank"]
            if announced.get("trend") is not None:
                trends[name] = announced["trend"]
            if announced.get("summary") is not None:
                summaries[name] = announced["summary"]
        cursors = {target.decode(): etag.decode() for target, etag in (await c.hgetall(k.cursors)).items()}
        return SavedState(epoch=epoch.decode() if epoch else None, seq=seq, ring=ring, events=events, seen=seen,
                          announced=_structure_announced(ranks, trends, summaries), cursors=cursors)

    async def keep_delivery(self, event: Event) -> None:
        """A webhook delivery, verified by the node that received it, for the leader (any
        node: no term needed).  Raises what Redis raises: the receiver answers 503."""
        await self._client.xadd(self.keys.deliveries, {"e": event_json(event)})

    async def feed_deliveries(self, consumer: str, events: trio.MemorySendChannel[SourceItem]) -> None:
        """The leader's task: webhook deliveries from the stream into its pipeline, each
        read followed by the mark that acknowledges it once committed.  First everything
        pending (what earlier terms took and never committed: claimed whatever its idle
        time), then new deliveries; every ``CLAIM_IDLE`` what has been pending that long."""
        async with events:
            min_idle, next_claim = 0, trio.current_time()
            while True:
                try:
                    if trio.current_time() >= next_claim:
                        await self._create_group()
                        entries = await self._claim(consumer, min_idle)
                        min_idle, next_claim = int(CLAIM_IDLE * 1000), trio.current_time() + CLAIM_IDLE
                        if entries:
                            log.info("cluster: taking up %d webhook deliveries pending since an earlier term",
                                     len(entries))
                    else:
                        answer = await self._client.xreadgroup(DELIVERY_GROUP, consumer, {self.keys.deliveries: ">"},
                                                               count=DELIVERY_BATCH, block=int(RENEW_EVERY * 1000))
                        entries = [entry for stream in (answer or {}).values() for entry in stream]
                except REDIS_DOWN:  # said by the lease's renewal; the commits wait as well
                    await trio.sleep(RENEW_EVERY / 2)
                    continue
                except coredis.exceptions.StreamConsumerGroupError:  # NOGROUP: the stream was deleted
                    next_claim = trio.current_time()  # the group again
                    continue
                if entries:
                    await _hand_on(entries, events)

    async def _create_group(self) -> None:
        # From id 0: deliveries stored before any leader read the stream are taken too.
        with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):  # BUSYGROUP: it exists
            await self._client.xgroup_create(self.keys.deliveries, DELIVERY_GROUP, "0", mkstream=True)

    async def _claim(self, consumer: str, min_idle: int) -> list[Any]:
        """Every delivery pending at least ``min_idle`` ms, now this consumer's, oldest first."""
        claimed: list[Any] = []
        start: str | bytes = "0-0"
        while True:
            answer = await self._client.xautoclaim(self.keys.deliveries, DELIVERY_GROUP, consumer, min_idle, start,
                                                   count=1000)
            start, entries = answer[0], answer[1]
            claimed.extend(entries)
            if start in ("0-0", b"0-0"):  # the whole pending list went through
                return claimed

    async def commit(self, batch: Batch) -> None:
        if not batch:
            return
        if self.term is None:
            raise LeaseLost("this node does not lead the cluster")
        k = self.keys
        cursors = {target: etag for target, etag in batch.cursors.items() if not target.startswith(DELIVERY_MARK)}
        acks = [entry for target, ids in batch.cursors.items() if target.startswith(DELIVERY_MARK)
                for entry in ids.split()]
        args: list[str | bytes | int | float] = [
            self.term, self._maxlen, "" if batch.seq is None else batch.seq, self._window, SEEN_RETENTION,
            SEEN_CAPACITY, len(batch.frames), len(batch.events), len(batch.announced), len(cursors), len(acks),
            DELIVERY_GROUP]
        for frame in batch.frames:
            args += [frame.seq, frame.type, frame.repo or "", frame.payload]
        for event in batch.events:
            args += [event.event_id, repr(event.created_at.timestamp()), event_json(event)]
        for repo, row in batch.announced.items():
            args += [repo, "" if row.empty else json.dumps(_announced_row(row))]
        for target, etag in cursors.items():
            args += [target, etag]
        args += acks
        await self._fenced(_COMMIT, [k.term, k.frames, k.meta, k.events, k.events_by_time, k.seen, k.announced,
                                     k.cursors, k.deliveries], args)

    async def publish_view(self, view: bytes) -> None:
        """The leader's snapshot state, for followers."""
        await self._fenced(_PUBLISH, [self.keys.term, self.keys.snapshot], [self.term or 0, view])

    async def _fenced(self, script: str, keys: list[str], args: list[Any]) -> None:
        try:
            await self._client.eval(script, keys, args)
        except coredis.exceptions.ResponseError as exc:
            if "FENCED" in str(exc):
                self.fenced.set()
                raise LeaseLost(f"term {self.term} is over: another node leads the cluster") from None
            raise

    async def close(self) -> None:
        """The client is closed by whoever opened it (``App``)."""


def _seq(identifier: str | bytes) -> int:
    text = identifier.decode() if isinstance(identifier, bytes) else identifier
    return int(text.split("-", 1)[0])


def _stored(entry: Any) -> StoredFrame:
    fields = entry.field_values
    repo = fields[b"r"].decode()
    return StoredFrame(_seq(entry.identifier), fields[b"t"].decode(), repo or None, bytes(fields[b"p"]))


async def _hand_on(entries: list[Any], events: trio.MemorySendChannel[SourceItem]) -> None:
    """Deliveries into the pipeline, then the mark that acknowledges them (all of them: one
    unreadable is dropped, not taken up again and again)."""
    ids = [entry.identifier.decode() if isinstance(entry.identifier, bytes) else entry.identifier
           for entry in entries]
    taken = []
    for entry, entry_id in zip(entries, ids, strict=True):
        try:
            taken.append(event_from_json(entry.field_values[b"e"]))
        except (KeyError, ValueError, cattrs.BaseValidationError) as exc:
            log.error("cluster: webhook delivery %s in the stream is unreadable (%s): dropped", entry_id, exc)
    if taken:
        await events.send(taken)
    await events.send(CursorMark(f"{DELIVERY_MARK}{ids[0]}", " ".join(ids)))


def _structure_announced(ranks: dict[str, int], trends: dict[str, str], summaries: dict[str, str]) -> Announced:
    return Announced(ranks, {repo: TrendStatus(trend) for repo, trend in trends.items()}, summaries)


# ------------------------------------------------------------------ the leader's view for followers

_view = cattrs.Converter()
_view.register_unstructure_hook(dt.datetime, lambda moment: moment.isoformat())
_view.register_structure_hook(dt.datetime, lambda value, _t: dt.datetime.fromisoformat(value))


@attrs.frozen
class LeaderView:
    """What a snapshot shows besides epoch and seq: a follower has no board of its own."""

    top: list[RankedRepo]
    metrics: MetricsUpdate | None
    system: SystemStatus

    def encode(self) -> bytes:
        return json.dumps(_view.unstructure(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> LeaderView:
        return _view.structure(json.loads(data), cls)


# ------------------------------------------------------------------ a node's role


@attrs.frozen
class ClusterStatus:
    """A node's place in the cluster, for /api/v1/health, /ws/stats and /metrics."""

    cluster: str
    node: str
    role: str
    leader: str | None
    term: int | None
    stream_seq: int
    stream_lag: int
    redis: str


class ClusterNode:
    """Follows the stream, takes the lease when it is free, leads until the term ends.

    ``follow(nursery)`` starts what a node runs while it follows (the hub's task
    with a heartbeat); ``lead(nursery, saved)`` starts a fresh pipeline from the
    restored state.  Each phase has its own nursery: stepping down cancels the
    pipeline whole, and the hub forgets what it stamped but did not store.
    """

    def __init__(self, client: coredis.Redis[bytes], store: RedisStore, hub: Hub, node: str,
                 follow: Callable[[trio.Nursery], None],
                 lead: Callable[[trio.Nursery, SavedState], Awaitable[None]]) -> None:
        self._client = client
        self.store = store
        self.hub = hub
        self.node = node
        self._follow = follow
        self._lead = lead
        self.role = "follower"
        self.leader: str | None = None
        self.stream_seq = hub.delivered
        self.redis_up = True
        self.terms_led = 0

    def status(self) -> ClusterStatus:
        stream_seq = self.hub.delivered if self.role == "leader" else self.stream_seq
        return ClusterStatus(self.store.keys.cluster, self.node, self.role, self.leader, self.store.term,
                             stream_seq, max(stream_seq - self.hub.delivered, 0),
                             "operational" if self.redis_up else "down")

    async def run(self) -> None:
        while True:
            async with trio.open_nursery() as following:
                self._follow(following)
                following.start_soon(self._read_stream)
                following.start_soon(self._watch_leader_view)
                await self._acquire()
                following.cancel_scope.cancel()
            try:
                await self._run_term()
            except REDIS_DOWN as exc:  # lost while taking over: follow, and try again
                self._redis(False, exc)
                await trio.sleep(RENEW_EVERY)
            finally:
                self.role = "follower"
                self.hub.stamping = False
                self.store.term = None
                self.store.fenced = trio.Event()
                self.hub.rollback()

    async def release(self) -> None:
        """On a graceful stop: let another node take over at once instead of after the lease's time."""
        if self.store.term is None:
            return
        k = self.store.keys
        with trio.move_on_after(2):
            try:
                await self._client.eval(_RELEASE, [k.lease, k.term], [self.store.term])
                log.info("cluster: lease released (term %d)", self.store.term)
            except (*REDIS_DOWN, coredis.exceptions.RedisError) as exc:
                log.warning("cluster: could not release the lease: %s", exc)

    # ------------------------------------------------------------ following

    def _redis(self, up: bool, problem: BaseException | None = None) -> None:
        if up != self.redis_up:
            self.redis_up = up
            if up:
                log.info("cluster: Redis reachable again")
            else:
                log.error("cluster: Redis unreachable (%s)", problem)
            self.hub.set_redis_down(not up)

    async def _read_stream(self) -> None:
        """Deliver what the leader stored, in seq order, to this node's clients."""
        hub = self.hub
        while True:
            try:
                frames = await self.store.frames_after(hub.delivered, count=1000, block=1.0)
                self._redis(True)
            except REDIS_DOWN as exc:
                self._redis(False, exc)
                await trio.sleep(0.5)
                continue
            for frame in frames:
                hub.follow(frame)
                self.stream_seq = max(self.stream_seq, frame.seq)
                await hub.let_senders_catch_up()
            await trio.lowlevel.checkpoint()

    async def _watch_leader_view(self) -> None:
        """The leader's Top 10, metrics and status, for this follower's snapshots; the stream's end."""
        k = self.store.keys
        while True:
            try:
                view, holder, last = await self._client.get(k.snapshot), await self._client.get(k.lease), \
                    await self._client.xrevrange(k.frames, count=1)
                self._redis(True)
                self.leader = holder.decode() if holder else None
                if last:
                    self.stream_seq = _seq(last[0].identifier)
                if view is not None:
                    shown = LeaderView.decode(view)
                    self.hub.show_leader_view(shown.top, shown.metrics, shown.system)
            except REDIS_DOWN as exc:
                self._redis(False, exc)
            except (ValueError, cattrs.BaseValidationError) as exc:
                log.warning("cluster: the leader's snapshot state is unreadable (%s)", exc)
            await trio.sleep(PUBLISH_EVERY)

    async def _acquire(self) -> None:
        """Return once this node holds the lease (``store.term`` set)."""
        k = self.store.keys
        while True:
            try:
                term = await self._client.eval(_ACQUIRE, [k.lease, k.term], [self.node, int(LEASE_TTL * 1000)])
                self._redis(True)
                if isinstance(term, int) and term > 0:
                    self.store.term = term
                    return
            except REDIS_DOWN as exc:
                self._redis(False, exc)
            await trio.sleep(RENEW_EVERY / 2 + secrets.randbelow(500) / 1000)

    # ------------------------------------------------------------ leading

    async def _run_term(self) -> None:
        store, hub = self.store, self.hub
        assert store.term is not None
        # Whatever the last leader stored and this node had not read yet, first.
        while True:
            frames = await store.frames_after(hub.delivered, count=1000)
            if not frames:
                break
            for frame in frames:
                hub.follow(frame)
        saved = await store.load()
        if saved.seq != hub.delivered:  # a trimmed stream or a seq stored without its frame
            log.warning("cluster: stream ends at %d, this node delivered %d; continuing from %d",
                        saved.seq, hub.delivered, saved.seq)
            hub.broadcaster.seq = hub.broadcaster.delivered = saved.seq
        self.role, self.leader, self.stream_seq = "leader", self.node, saved.seq
        hub.stamping = True
        self.terms_led += 1
        log.info("cluster: leading %s (term %d) from seq %d, epoch %s: %d events in the window restored",
                 store.keys.cluster, store.term, saved.seq, hub.epoch, len(saved.events))
        async with trio.open_nursery() as leading:
            await self._lead(leading, saved)
            leading.start_soon(self._renew, leading.cancel_scope)
            leading.start_soon(self._publish_view)
            await store.fenced.wait()
            log.warning("cluster: stepping down: term %s was fenced off (another node leads)", store.term)
            leading.cancel_scope.cancel()

    async def _renew(self, term: trio.CancelScope) -> None:
        k, store = self.store.keys, self.store
        while True:
            await trio.sleep(RENEW_EVERY)
            try:
                kept = await self._client.eval(_RENEW, [k.lease, k.term],
                                               [self.node, int(LEASE_TTL * 1000), store.term or 0])
                self._redis(True)
            except REDIS_DOWN as exc:
                # The write-ahead cannot commit either: nothing reaches clients, the sources wait.
                self._redis(False, exc)
                continue
            if kept != 1:
                log.warning("cluster: stepping down: term %s is over (another node took the lease)", store.term)
                term.cancel()
                return

    async def _publish_view(self) -> None:
        hub = self.hub
        while True:
            view = LeaderView(hub.snapshot().top, hub.metrics, hub.system)
            try:
                await self.store.publish_view(view.encode())
            except REDIS_DOWN:
                pass  # said by _renew
            except LeaseLost:  # another node took the lease (Redis was away): _run_term steps down
                return
            await trio.sleep(PUBLISH_EVERY)


def _announced_row(row: AnnouncedRepo) -> dict[str, Any]:
    return {"rank": row.rank, "trend": None if row.trend is None else str(row.trend), "summary": row.summary}
