"""The I/O-free half of the Python live-updates clients (``osintd.client`` for trio,
``osintd.aio`` for asyncio): everything that does not depend on the event loop.

Owns: the client's records (settings, state changes, gaps, resyncs, statistics),
the backoff schedule, the sequence rules (:class:`SequenceTracker`: resume point,
de-duplication, gap detection, epoch changes), the connect URL, and
:class:`ClientCore`: handler registration and the judging, counting and delivering
of each received message.
Must not: open sockets, sleep, or use trio or asyncio (the subclasses do, and each
owns its own connection loop); import the server's code (the list of message types
from ``osintd.messages`` is the one shared constant it reads).

The rules themselves are documented in ``osintd.client``'s docstring; the
JavaScript client (``osintd/static/client.js``) implements the same ones, and
``tests/test_client_resume.py`` runs the same scenarios against all three.
"""

from __future__ import annotations

import collections
import enum
import inspect
import json
import logging
import random
import typing
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from osintd.messages import SUBSCRIBABLE_TYPES, Outgoing

DEFAULT_URL = "ws://localhost:8000/ws/live-updates"

#: The client's own events (handlers get records, not messages).
CLIENT_EVENTS = frozenset({"state", "gap", "resync"})
#: Every message type this version of the protocol knows.
SERVER_TYPES = frozenset(cls.TYPE for cls in typing.get_args(Outgoing))
#: Handshake answers worth retrying; any other refusal is final.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

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
class Disconnect:
    """How one connection ended."""

    reason: str
    retry_after: float | None = None
    refused: HandshakeRefused | None = None


class ClientCore:
    """What both clients share: options, handlers, statistics, and the judging and
    delivering of each message.  A subclass supplies the connection loop, calls
    :meth:`connect_url` before each attempt and :meth:`accept` for each message,
    and may override :meth:`_pong_arrived`.

    ``types``/``repos`` subscribe to message types and repository globs (see
    README "Subscriptions"); either may also be given in ``url``'s query.
    ``since``/``epoch`` resume from a point saved by an earlier run.
    ``random_fraction`` (a float in [0, 1)) drives the backoff jitter.
    ``token`` is sent as ``?token=`` (a server with client authentication on wants
    one); ``headers`` are added to the handshake request (e.g. ``Authorization``).
    """

    def __init__(self, url: str, *, types: Iterable[str] | None, repos: Iterable[str] | None,
                 settings: ClientSettings, default_handler: Handler | None, since: int | None,
                 epoch: str | None, random_fraction: Callable[[], float], token: str | None,
                 headers: Mapping[str, str] | None, log: logging.Logger) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        from_url = {key: value for key, value in query}
        if types is None and "types" in from_url:
            types = split_list(from_url["types"])
        if repos is None and "repos" in from_url:
            repos = split_list(from_url["repos"])
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
        self._token = token
        self._headers = dict(headers or {})
        self._log = log
        self._tracker = SequenceTracker(not self.filtered, since, epoch)
        self._backoff = Backoff(settings.backoff_base, settings.backoff_cap, random_fraction)
        self._handlers: dict[str, list[Handler]] = collections.defaultdict(list)
        self._default_handler = default_handler
        self._deliver_heartbeats = self.types is None or "heartbeat" in self.types
        self._established = False  # the current attempt got the server's connection message

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
            self._log.warning("handler registered for %r, which is not a known message type or client event",
                              kind)
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

    # ------------------------------------------------- for the connection loop

    def connect_url(self) -> str:
        """A new connection is being made: the URL it should open (with the resume point)."""
        resume = self._tracker.connection_opened()
        self._established = False
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
        if self._token is not None:
            query.append(("token", self._token))
        return urllib.parse.urlunsplit(self._base._replace(query=urllib.parse.urlencode(query, safe="/*,?[]")))

    def next_delay(self, ended: Disconnect) -> float:
        """Seconds to wait before the next attempt after a connection ``ended``."""
        delay = self._backoff.next_delay()
        if ended.retry_after is not None:
            delay = max(delay, ended.retry_after)
        self._log.warning("connection to %s ended (%s); reconnecting in %.1f s", self.url, ended.reason, delay)
        self._set_state(ConnectionState.RECONNECTING, retry_in=delay, reason=ended.reason)
        return delay

    def attempt_ended(self, was_connected: bool) -> None:
        if was_connected:
            self.stats.disconnects += 1
        if not self._established:
            self.stats.failed_attempts += 1

    def heartbeat_timed_out(self) -> Disconnect:
        timeout = self.settings.heartbeat_timeout
        self.stats.heartbeat_timeouts += 1
        self._log.warning("nothing received for %g s: treating the connection as dead", timeout)
        return Disconnect(f"nothing received for {timeout:g} s")

    async def accept(self, message: dict[str, Any]) -> Gap | None:
        """Judge, count and deliver one message; returns the gap it revealed, if any."""
        kind = message["type"]
        verdict = self._tracker.observe(message)
        self.stats.last_seq, self.stats.epoch = self._tracker.last_seq, self._tracker.epoch
        if kind == "connection":
            self._connection_established(message)
        elif kind == "pong":
            self._pong_arrived()
        elif kind == "resumed":
            if message.get("recovered"):
                self.stats.resumes += 1
                self._log.info("resumed after seq %s: %s missed messages follow", message.get("since"),
                               message.get("replayed"))
            else:
                self._log.warning("resume refused: %s", message.get("reason"))
        if verdict.gap is not None:
            gap = verdict.gap
            self.stats.gaps += 1
            self.stats.missed_messages += gap.missing
            self._log.warning("gap in seq: %d message(s) missing (%d..%d), noticed by a %s",
                              gap.missing, gap.first_missing, gap.last_missing, gap.noticed_by)
            await self._emit("gap", gap)
            return gap
        if verdict.duplicate:
            self.stats.duplicates_dropped += 1
            self._log.debug("dropped duplicate seq %s", message.get("seq"))
            return None
        if verdict.resync is not None:
            self.stats.resyncs += 1
            self._log.warning("resync from a new snapshot (epoch %s, seq %s): %s", verdict.resync.new_epoch,
                              message.get("seq"), verdict.resync.reason)
            await self._emit("resync", verdict.resync)
        self.stats.messages_by_type[kind] += 1
        if kind == "heartbeat" and not self._deliver_heartbeats:
            return None
        await self._dispatch(message)
        return None

    def _pong_arrived(self) -> None:
        """A ``pong`` arrived (the subclass wakes whoever waits for it)."""

    def _connection_established(self, message: dict[str, Any]) -> None:
        self._established = True
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.client_id = message.get("client_id")
        self._backoff.reset()
        self._log.info("connected to %s as %s (epoch %s, seq %s)", self.url, message.get("client_id"),
                       message.get("epoch"), message.get("seq"))
        self._set_state(ConnectionState.CONNECTED)
        self._on_connected()

    def _on_connected(self) -> None:
        """The server's ``connection`` message arrived (the subclass wakes ``wait_connected``)."""

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
            self._log.error("handler %s for %s raised %s", getattr(handler, "__qualname__", handler), kind,
                            one_line(exc), exc_info=self._log.isEnabledFor(logging.DEBUG))

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
                self._log.error("handler %s for state raised %s", getattr(handler, "__qualname__", handler),
                                one_line(exc))


# ------------------------------------------------------------------- helpers


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def decode(text: str | bytes, log: logging.Logger) -> dict[str, Any] | None:
    """The message in one frame, or None (logged) when it is not a JSON object with a type."""
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


def refusal(status: int, body: bytes | bytearray | None, retry_after: str | None) -> Disconnect:
    """How a handshake answered with HTTP ``status`` ends: final, or worth retrying."""
    text = bytes(body or b"").decode("utf-8", "replace")
    try:
        detail = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        detail = text
    detail = " ".join(str(detail).split())[:200]
    if status not in RETRYABLE_STATUS:
        return Disconnect(f"refused: {status}", refused=HandshakeRefused(status, detail))
    delay = None
    if retry_after is not None:
        try:
            delay = float(retry_after)
        except ValueError:
            pass
    return Disconnect(f"refused: {status} {detail}", retry_after=delay)


def describe_close(code: int | None, reason: str | None) -> str:
    if code is None:
        return "closed"
    text = f"closed with {code}"
    return f"{text} {reason}" if reason else text


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe(group: BaseExceptionGroup) -> str:
    leaves = []
    for exc in group.exceptions:
        leaves.append(describe(exc) if isinstance(exc, BaseExceptionGroup) else one_line(exc))
    return "; ".join(leaves)
