"""A reconnecting client for ``/ws/live-updates``, for trio programs.

Owns: one logical subscription that outlives its connections: connecting,
heartbeat monitoring, reconnecting with jittered exponential backoff, resuming
with ``since``/``epoch``, gap detection and de-duplication by ``seq``, calling
the user's handlers, and the client's counters.
Must not: import the server's code (it speaks only the wire protocol; the list
of subscribable types is the one shared constant it reads), print or draw
(``osintd.watch`` does), or hand one broadcast to the handlers twice.

Usage, in the style of the guide's ``LiveUpdatesClient``::

    client = LiveUpdatesClient("ws://localhost:8000/ws/live-updates")
    client.on("new_event", lambda m: print(m["title"]))     # sync or async callables
    client.on("*", record_everything)                        # every server message
    client.on("resync", lambda r: board.clear())             # see below
    async with client:          # or: await client.run() until client.close()
        await trio.sleep_forever()

Handlers for server message types receive the message as the decoded JSON
object (a dict; do not modify it).  Handlers run one at a time, in arrival
order, inside the receive loop; one that raises is logged and the next message
is delivered anyway.  ``on("*", ...)`` sees every server message after its
type's own handlers; ``default_handler`` sees only messages whose type has no
handler of its own.  Three names are the client's own events, never server
message types, and their handlers receive records instead of dicts:

* ``"state"`` - a :class:`StateChange` (connecting, connected, reconnecting with
  the delay before the next attempt, closed).  States also change while the
  client closes, where nothing may wait, so these handlers must be plain functions.
* ``"gap"`` - a :class:`Gap`: broadcasts that should have arrived did not.
* ``"resync"`` - a :class:`Resync`: the server could not replay what was missed
  (it restarted with a new ``epoch``, or the history is gone); whatever the
  program built from earlier messages is to be thrown away, and the ``snapshot``
  delivered right after this event is the new starting point.

Sequence rules (see README "Sequence numbers, resume, snapshot"):

* The client remembers ``epoch`` and the last ``seq`` it has accounted for, and
  every reconnect asks for ``?since=SEQ&epoch=E``: the server replays what was
  missed (``resumed`` with ``recovered: true``) or says it cannot
  (``recovered: false``) and sends a ``snapshot``, which becomes a ``resync``.
* A broadcast whose ``seq`` is not above the last one accounted for is a
  duplicate and is dropped, so no broadcast reaches the handlers twice, across
  reconnects too.
* Gaps are checked only by unfiltered clients (no ``types``, no ``repos``): they
  receive every broadcast, so a ``seq`` more than one above the last, or a
  heartbeat whose ``seq`` (the server's current one) is above the last, means
  something was lost.  The client reports the gap, does not deliver the message
  that revealed it, and reconnects with resume, so that the server replays the
  missing messages and the revealing one in order.  A filtered client skips
  ``seq`` values by design and cannot tell a lost message from a filtered one;
  it only advances its resume point to the heartbeat's ``seq`` and drops
  duplicates.
* Heartbeats keep the connection known to be alive, so a filtered client asks
  for them even when its ``types`` leave them out; it then consumes them itself
  and does not pass them to the handlers.
* Nothing received for ``heartbeat_timeout`` seconds (60): the connection is
  treated as dead, closed, and a new one is made.
* Backoff: the n-th consecutive failed attempt waits a random time between half
  and all of ``min(backoff_cap, backoff_base * 2**n)`` (1 s base, 30 s cap); a
  connection on which the server's ``connection`` message arrived is a good one
  and starts the count again.  A ``Retry-After`` on a 503 is honoured as a minimum.
  A handshake refused for good (400, 403, 404, 421, 426 ...) is not retried:
  :meth:`LiveUpdatesClient.run` raises :class:`HandshakeRefused`.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import inspect
import json
import logging
import random
import typing
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import attrs
import trio
import trio_websocket

from osintd.messages import SUBSCRIBABLE_TYPES, Outgoing

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://localhost:8000/ws/live-updates"

#: The client's own events (handlers get records, not messages).
CLIENT_EVENTS = frozenset({"state", "gap", "resync"})
#: Every message type this version of the protocol knows.
SERVER_TYPES = frozenset(cls.TYPE for cls in typing.get_args(Outgoing))
#: Message types that carry ``seq`` without being a broadcast of their own.
_SEQ_BEARING_CONTROL = frozenset({"connection", "snapshot", "heartbeat", "resumed"})
#: Handshake answers worth retrying; any other refusal is final.
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

Handler = Callable[[Any], Awaitable[None] | None]
_Handler = TypeVar("_Handler", bound=Handler)
_Number = TypeVar("_Number", int, float)


class ConnectionState(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class HandshakeRefused(Exception):
    """The server answered the WebSocket handshake with an HTTP error that retrying will not fix."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"server refused the connection: {status_code} {message}")
        self.status_code = status_code
        self.message = message


def _positive(_instance: object, attribute: attrs.Attribute[_Number], value: _Number) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be more than 0, not {value!r}")


@attrs.frozen
class ClientSettings:
    #: Seconds without any message before the connection is treated as dead.
    heartbeat_timeout: float = attrs.field(default=60.0, validator=_positive)
    backoff_base: float = attrs.field(default=1.0, validator=_positive)
    backoff_cap: float = attrs.field(default=30.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    ping_timeout: float = attrs.field(default=5.0, validator=_positive)
    #: Ask for a ``snapshot`` on a fresh connection (a resync always brings one).
    snapshot: bool = True
    max_message_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)


@attrs.frozen
class StateChange:
    """The connection's state changed; ``retry_in`` is set while waiting to reconnect."""

    state: ConnectionState
    failed_attempts: int = 0
    retry_in: float | None = None
    reason: str | None = None


@attrs.frozen
class Gap:
    """Broadcasts ``first_missing`` to ``last_missing`` never arrived (unfiltered clients only)."""

    epoch: str | None
    first_missing: int
    last_missing: int
    #: The type of the message that revealed the gap (a broadcast, or a ``heartbeat``).
    noticed_by: str

    @property
    def missing(self) -> int:
        return self.last_missing - self.first_missing + 1


@attrs.frozen
class Resync:
    """The server could not replay what was missed: start again from ``snapshot``."""

    reason: str
    old_epoch: str | None
    new_epoch: str
    #: The resume point the client asked for.
    since: int | None
    #: The ``snapshot`` message that follows (also delivered to ``snapshot`` handlers).
    snapshot: dict[str, Any]


@attrs.define
class ClientStats:
    state: ConnectionState = ConnectionState.IDLE
    #: Connections on which the server's ``connection`` message arrived.
    connects: int = 0
    #: Of those, the ones after the first.
    reconnects: int = 0
    #: Attempts that never got that far (refused, timed out, rejected).
    failed_attempts: int = 0
    disconnects: int = 0
    heartbeat_timeouts: int = 0
    gaps: int = 0
    missed_messages: int = 0
    #: Resumes answered ``recovered: true``.
    resumes: int = 0
    resyncs: int = 0
    duplicates_dropped: int = 0
    handler_errors: int = 0
    #: Messages received and accepted (duplicates and gap-revealing ones are not counted).
    messages_by_type: collections.Counter[str] = attrs.field(factory=collections.Counter)
    last_seq: int | None = None
    epoch: str | None = None
    client_id: str | None = None


@attrs.define
class Backoff:
    """Jittered exponential backoff: the n-th consecutive failure waits between
    half and all of ``min(cap, base * 2**n)``."""

    base: float = 1.0
    cap: float = 30.0
    random_fraction: Callable[[], float] = random.random
    failures: int = 0

    def next_delay(self) -> float:
        ceiling: float = min(self.cap, self.base * 2 ** min(self.failures, 62))  # int ** int is typed Any
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self.random_fraction())

    def reset(self) -> None:
        self.failures = 0


@attrs.frozen
class Verdict:
    """What to do with one received message."""

    deliver: bool
    duplicate: bool = False
    gap: Gap | None = None
    resync: Resync | None = None


def _seq_of(message: dict[str, Any]) -> int | None:
    seq = message.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


class SequenceTracker:
    """The resume point (``epoch`` and the last ``seq`` accounted for) and the
    rules that judge each message against it; no I/O, so tests can drive it."""

    def __init__(self, check_continuity: bool, since: int | None = None, epoch: str | None = None) -> None:
        self.check_continuity = check_continuity
        self.epoch = epoch
        self.last_seq = since if epoch is not None else None
        self._resuming = False
        self._snapshot_is_baseline = False
        self._refusal: str | None = None

    def resume_point(self) -> tuple[int, str] | None:
        if self.epoch is None or self.last_seq is None:
            return None
        return self.last_seq, self.epoch

    def connection_opened(self) -> tuple[int, str] | None:
        """A new connection is being made; returns the ``(since, epoch)`` it should ask for."""
        point = self.resume_point()
        self._resuming = point is not None
        self._snapshot_is_baseline = point is None
        self._refusal = None
        return point

    def observe(self, message: dict[str, Any]) -> Verdict:
        kind = message.get("type")
        seq = _seq_of(message)
        if kind == "connection":
            if not self._resuming and seq is not None and isinstance(message.get("epoch"), str):
                self.epoch, self.last_seq = message["epoch"], seq
            return Verdict(True)
        if kind == "resumed":
            if not message.get("recovered"):
                self._refusal = str(message.get("reason") or "the server could not resume")
            return Verdict(True)
        if kind == "snapshot":
            return self._snapshot(message, seq)
        if seq is None or self.last_seq is None:
            if seq is not None and kind != "heartbeat":
                self.last_seq = seq
            return Verdict(True)
        if kind == "heartbeat":
            if seq > self.last_seq:
                if self.check_continuity:
                    return Verdict(False, gap=Gap(self.epoch, self.last_seq + 1, seq, kind))
                self.last_seq = seq  # everything up to it was either delivered or filtered out
            return Verdict(True)
        if seq <= self.last_seq:
            return Verdict(False, duplicate=True)
        if self.check_continuity and seq > self.last_seq + 1:
            return Verdict(False, gap=Gap(self.epoch, self.last_seq + 1, seq - 1, str(kind)))
        self.last_seq = seq
        return Verdict(True)

    def _snapshot(self, message: dict[str, Any], seq: int | None) -> Verdict:
        epoch = message.get("epoch")
        if not isinstance(epoch, str) or seq is None:
            return Verdict(True)
        resync = None
        if not self._snapshot_is_baseline:
            resync = Resync(self._refusal or "the server sent a new snapshot", self.epoch, epoch,
                            self.last_seq, message)
        self._snapshot_is_baseline = False
        self._resuming = False
        self.epoch, self.last_seq = epoch, seq
        return Verdict(True, resync=resync)


@attrs.frozen
class _Disconnect:
    """How one connection ended."""

    reason: str
    retry_after: float | None = None
    refused: HandshakeRefused | None = None


@attrs.define
class _PongWaiter:
    answered: trio.Event = attrs.field(factory=trio.Event)
    got_pong: bool = False


class LiveUpdatesClient:
    """One subscription to osintd's live updates that reconnects and resumes by itself.

    ``types``/``repos`` subscribe to message types and repository globs (see
    README "Subscriptions"); either may also be given in ``url``'s query.
    ``since``/``epoch`` resume from a point saved by an earlier run.
    ``random_fraction`` (a float in [0, 1)) drives the backoff jitter.
    """

    def __init__(self, url: str = DEFAULT_URL, *, types: Iterable[str] | None = None,
                 repos: Iterable[str] | None = None, settings: ClientSettings = ClientSettings(),
                 default_handler: Handler | None = None, since: int | None = None, epoch: str | None = None,
                 random_fraction: Callable[[], float] = random.random) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        from_url = {key: value for key, value in query}
        if types is None and "types" in from_url:
            types = _split(from_url["types"])
        if repos is None and "repos" in from_url:
            repos = _split(from_url["repos"])
        if from_url.get("snapshot") in ("0", "false"):
            settings = attrs.evolve(settings, snapshot=False)
        self.types: tuple[str, ...] | None = tuple(types) if types is not None else None
        self.repos: tuple[str, ...] | None = tuple(repos) if repos is not None else None
        if self.types is not None and (unknown := sorted(set(self.types) - SUBSCRIBABLE_TYPES)):
            raise ValueError(f"unknown types {unknown}; choose from {sorted(SUBSCRIBABLE_TYPES)}")
        self.url = url
        self._base = parts._replace(query=urllib.parse.urlencode(
            [(key, value) for key, value in query if key not in ("types", "repos", "since", "epoch", "snapshot")]))
        self.settings = settings
        self.stats = ClientStats(last_seq=since if epoch is not None else None, epoch=epoch)
        self._tracker = SequenceTracker(not self.filtered, since, epoch)
        self._backoff = Backoff(settings.backoff_base, settings.backoff_cap, random_fraction)
        self._handlers: dict[str, list[Handler]] = collections.defaultdict(list)
        self._default_handler = default_handler
        self._deliver_heartbeats = self.types is None or "heartbeat" in self.types
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._pong_waiters: collections.deque[_PongWaiter] = collections.deque()
        self._connected = trio.Event()
        self._stopped = trio.Event()
        self._run_scope: trio.CancelScope | None = None
        self._running = False
        self._closing = False
        self._established = False  # the current attempt got the server's connection message
        self._nursery_manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None

    # ------------------------------------------------------------------ public

    @property
    def filtered(self) -> bool:
        """True when this client asked for less than everything (it sees ``seq`` gaps by design)."""
        return self.types is not None or self.repos is not None

    @property
    def state(self) -> ConnectionState:
        return self.stats.state

    @property
    def connected(self) -> bool:
        return self.stats.state is ConnectionState.CONNECTED

    @property
    def client_id(self) -> str | None:
        return self.stats.client_id

    @typing.overload
    def on(self, kind: str) -> Callable[[_Handler], _Handler]: ...
    @typing.overload
    def on(self, kind: str, handler: _Handler) -> _Handler: ...

    def on(self, kind: str, handler: Handler | None = None) -> Handler | Callable[[_Handler], _Handler]:
        """Call ``handler`` for each message of type ``kind`` (``"*"``: every message;
        ``"state"``, ``"gap"``, ``"resync"``: the client's own events).  Several
        handlers per type are called in registration order.  Without ``handler``,
        returns a decorator."""
        if kind != "*" and kind not in SERVER_TYPES | CLIENT_EVENTS:
            log.warning("handler registered for %r, which is not a known message type or client event", kind)
        if handler is None:
            def register(function: _Handler) -> _Handler:
                self._handlers[kind].append(function)
                return function
            return register
        self._handlers[kind].append(handler)
        return handler

    def off(self, kind: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``kind``."""
        if handler in self._handlers.get(kind, ()):
            self._handlers[kind].remove(handler)

    async def run(self) -> None:
        """Connect, and stay connected (reconnecting as needed) until :meth:`close`.

        Raises :class:`HandshakeRefused` when the server refuses the handshake for good.
        """
        if self._running:
            raise RuntimeError("this client is already running")
        self._running = True
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._run_scope:
                if not self._closing:
                    await self._keep_connected()
        finally:
            self._running = False
            self._run_scope = None
            self._set_state(ConnectionState.CLOSED)
            self._stopped.set()

    async def close(self) -> None:
        """Close the connection (code 1000) and make :meth:`run` return; waits until it has."""
        self._closing = True
        if self._run_scope is not None:
            self._run_scope.cancel()
        if self._running:
            await self._stopped.wait()

    async def wait_connected(self) -> None:
        """Return once a connection is up (the server's ``connection`` message arrived)."""
        await self._connected.wait()

    async def ping(self, timeout: float | None = None) -> float | None:
        """Send ``{"type": "ping"}``; the round trip in seconds, or None when not
        connected or no ``pong`` came within ``timeout`` (default ``settings.ping_timeout``)."""
        ws = self._ws
        if ws is None:
            return None
        waiter = _PongWaiter()
        self._pong_waiters.append(waiter)
        started = trio.current_time()
        try:
            await ws.send_message('{"type":"ping"}')
            with trio.move_on_after(self.settings.ping_timeout if timeout is None else timeout):
                await waiter.answered.wait()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            if waiter in self._pong_waiters:
                self._pong_waiters.remove(waiter)
        return trio.current_time() - started if waiter.got_pong else None

    async def __aenter__(self) -> LiveUpdatesClient:
        self._nursery_manager = manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        nursery.start_soon(self.run)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> bool | None:
        # Like close(), but the nursery's exit is what waits for run() to return.
        manager, self._nursery_manager = self._nursery_manager, None
        assert manager is not None, "__aexit__ without __aenter__"
        self._closing = True
        if self._run_scope is not None:
            self._run_scope.cancel()
        return await manager.__aexit__(exc_type, exc, traceback)

    # ------------------------------------------------------------ connections

    async def _keep_connected(self) -> None:
        while True:
            ended = await self._one_connection()
            if ended.refused is not None:
                raise ended.refused
            if self._closing:
                return
            delay = self._backoff.next_delay()
            if ended.retry_after is not None:
                delay = max(delay, ended.retry_after)
            log.warning("connection to %s ended (%s); reconnecting in %.1f s", self.url, ended.reason, delay)
            self._set_state(ConnectionState.RECONNECTING, retry_in=delay, reason=ended.reason)
            await trio.sleep(delay)

    def _connect_url(self, resume: tuple[int, str] | None) -> str:
        query = urllib.parse.parse_qsl(self._base.query, keep_blank_values=True)
        if self.types is not None:
            types = self.types if self._deliver_heartbeats else (*self.types, "heartbeat")
            query.append(("types", ",".join(types)))
        if self.repos is not None:
            query.append(("repos", ",".join(self.repos)))
        if resume is not None:
            query += [("since", str(resume[0])), ("epoch", resume[1])]
        elif not self.settings.snapshot:
            query.append(("snapshot", "0"))
        return urllib.parse.urlunsplit(self._base._replace(query=urllib.parse.urlencode(query, safe="/*,?[]")))

    async def _one_connection(self) -> _Disconnect:
        resume = self._tracker.connection_opened()
        url = self._connect_url(resume)
        self._established = False
        self._set_state(ConnectionState.CONNECTING if self.stats.connects == 0 else ConnectionState.RECONNECTING)
        ended = rejected = failed = None
        try:
            async with trio.open_nursery() as connection_tasks:
                ended = await self._connect_and_receive(connection_tasks, url)
                connection_tasks.cancel_scope.cancel()
        except* trio_websocket.ConnectionRejected as group:
            # trio-websocket raises a refused handshake from its reader task.
            # except* keeps the group's nesting: the refusal is its first leaf.
            first = group.exceptions[0]
            while isinstance(first, ExceptionGroup):
                first = first.exceptions[0]
            rejected = _refusal(first)
        except* Exception as group:
            # Other failures inside trio-websocket's reader task (e.g. a ping answered
            # after close, trio-websocket #184) end this connection, not the client.
            failed = _Disconnect(_describe(group))
            log.debug("connection failed", exc_info=group)
        finally:
            self._ws = None
            for waiter in self._pong_waiters:
                waiter.answered.set()
            self._pong_waiters.clear()
            if self._connected.is_set():
                self._connected = trio.Event()
                self.stats.disconnects += 1
        if not self._established:
            self.stats.failed_attempts += 1
        return rejected or failed or ended or _Disconnect("connection failed")

    async def _connect_and_receive(self, connection_tasks: trio.Nursery, url: str) -> _Disconnect:
        ws = None
        try:
            with trio.move_on_after(self.settings.connect_timeout):
                ws = await trio_websocket.connect_websocket_url(
                    connection_tasks, url, message_queue_size=16, max_message_size=self.settings.max_message_bytes)
        except trio_websocket.ConnectionRejected as rejected:
            return _refusal(rejected)
        except (OSError, trio.BrokenResourceError, trio_websocket.HandshakeError,
                trio_websocket.ConnectionClosed) as exc:
            return _Disconnect(f"cannot connect: {_one_line(exc)}")
        if ws is None:
            return _Disconnect(f"handshake took over {self.settings.connect_timeout:g} s")
        self._ws = ws
        dead = False
        try:
            ended, dead = await self._receive(ws)
            return ended
        finally:
            self._ws = None
            with trio.CancelScope(shield=True):
                # A dead peer gets no close handshake to wait for.
                with trio.move_on_after(0 if dead else self.settings.close_timeout):
                    await ws.aclose()

    async def _receive(self, ws: trio_websocket.WebSocketConnection) -> tuple[_Disconnect, bool]:
        """Read until the connection ends; returns how, and whether the peer is presumed dead."""
        timeout = self.settings.heartbeat_timeout
        while True:
            with trio.move_on_after(timeout) as timer:
                try:
                    text = await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    return _Disconnect(_describe_close(closed.reason)), False
            if timer.cancelled_caught:
                self.stats.heartbeat_timeouts += 1
                log.warning("nothing received for %g s: treating the connection as dead", timeout)
                return _Disconnect(f"nothing received for {timeout:g} s"), True
            message = _decode(text)
            if message is not None:
                gap = await self._accept(message)
                if gap is not None:
                    return _Disconnect(f"missed seq {gap.first_missing}..{gap.last_missing}; resuming"), False

    async def _accept(self, message: dict[str, Any]) -> Gap | None:
        """Judge, count and deliver one message; returns the gap it revealed, if any."""
        kind = message["type"]
        verdict = self._tracker.observe(message)
        self.stats.last_seq, self.stats.epoch = self._tracker.last_seq, self._tracker.epoch
        if kind == "connection":
            self._connection_established(message)
        elif kind == "pong" and self._pong_waiters:
            waiter = self._pong_waiters.popleft()
            waiter.got_pong = True
            waiter.answered.set()
        elif kind == "resumed":
            if message.get("recovered"):
                self.stats.resumes += 1
                log.info("resumed after seq %s: %s missed messages follow", message.get("since"),
                         message.get("replayed"))
            else:
                log.warning("resume refused: %s", message.get("reason"))
        if verdict.gap is not None:
            gap = verdict.gap
            self.stats.gaps += 1
            self.stats.missed_messages += gap.missing
            log.warning("gap in seq: %d message(s) missing (%d..%d), noticed by a %s",
                        gap.missing, gap.first_missing, gap.last_missing, gap.noticed_by)
            await self._emit("gap", gap)
            return gap
        if verdict.duplicate:
            self.stats.duplicates_dropped += 1
            log.debug("dropped duplicate seq %s", message.get("seq"))
            return None
        if verdict.resync is not None:
            self.stats.resyncs += 1
            log.warning("resync from a new snapshot (epoch %s, seq %s): %s", verdict.resync.new_epoch,
                        message.get("seq"), verdict.resync.reason)
            await self._emit("resync", verdict.resync)
        self.stats.messages_by_type[kind] += 1
        if kind == "heartbeat" and not self._deliver_heartbeats:
            return None
        await self._dispatch(message)
        return None

    def _connection_established(self, message: dict[str, Any]) -> None:
        self._established = True
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.client_id = message.get("client_id")
        self._backoff.reset()
        log.info("connected to %s as %s (epoch %s, seq %s)", self.url, message.get("client_id"),
                 message.get("epoch"), message.get("seq"))
        self._set_state(ConnectionState.CONNECTED)
        self._connected.set()

    # --------------------------------------------------------------- handlers

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        own = self._handlers.get(kind)
        if own:
            for handler in list(own):
                await self._call(handler, message, kind)
        elif self._default_handler is not None:
            await self._call(self._default_handler, message, kind)
        for handler in list(self._handlers.get("*", ())):
            await self._call(handler, message, kind)

    async def _emit(self, event: str, record: Any) -> None:
        for handler in list(self._handlers.get(event, ())):
            await self._call(handler, record, event)

    async def _call(self, handler: Handler, argument: Any, kind: str) -> None:
        try:
            result = handler(argument)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self.stats.handler_errors += 1
            log.error("handler %s for %s raised %s", getattr(handler, "__qualname__", handler), kind,
                      _one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))

    def _set_state(self, state: ConnectionState, *, retry_in: float | None = None,
                   reason: str | None = None) -> None:
        self.stats.state = state
        change = StateChange(state, self._backoff.failures, retry_in, reason)
        for handler in list(self._handlers.get("state", ())):
            # State changes happen where awaiting is not possible (e.g. in finally
            # blocks); state handlers must be plain functions.
            try:
                result = handler(change)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()  # never awaited, so no "never awaited" warning either
                    raise TypeError("'state' handlers must be plain functions, not coroutines")
            except Exception as exc:
                self.stats.handler_errors += 1
                log.error("handler %s for state raised %s", getattr(handler, "__qualname__", handler),
                          _one_line(exc))


# ------------------------------------------------------------------- helpers


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _decode(text: str | bytes) -> dict[str, Any] | None:
    if isinstance(text, bytes):
        log.warning("ignored a binary frame of %d bytes", len(text))
        return None
    try:
        message = json.loads(text)
    except ValueError:
        log.warning("ignored a frame that is not JSON: %.80r", text)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        log.warning("ignored a message without a type: %.80r", text)
        return None
    return message


def _refusal(rejected: trio_websocket.ConnectionRejected) -> _Disconnect:
    status = rejected.status_code
    body = (rejected.body or b"").decode("utf-8", "replace")
    try:
        detail = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        detail = body
    detail = " ".join(str(detail).split())[:200]
    if status not in _RETRYABLE_STATUS:
        return _Disconnect(f"refused: {status}", refused=HandshakeRefused(status, detail))
    retry_after = None
    for name, value in rejected.headers or ():
        if name.lower() == b"retry-after":
            try:
                retry_after = float(value)
            except ValueError:
                pass
    return _Disconnect(f"refused: {status} {detail}", retry_after=retry_after)


def _describe_close(reason: trio_websocket.CloseReason | None) -> str:
    if reason is None:
        return "closed"
    text = f"closed with {reason.code}"
    return f"{text} {reason.reason}" if reason.reason else text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _describe(group: BaseExceptionGroup) -> str:
    leaves = []
    for exc in group.exceptions:
        leaves.append(_describe(exc) if isinstance(exc, BaseExceptionGroup) else _one_line(exc))
    return "; ".join(leaves)
