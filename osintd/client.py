"""A reconnecting client for ``/ws/live-updates``, for trio programs.

Owns: the trio side of one logical subscription that outlives its connections:
connecting, heartbeat monitoring, waiting between attempts, ``ping``, closing.
The I/O-free rest (resume with ``since``/``epoch``, gap detection and
de-duplication by ``seq``, backoff, calling the user's handlers, the client's
counters) is :mod:`osintd.clientcore`'s, shared with the asyncio client
:mod:`osintd.aio`.
Must not: import the server's code (it speaks only the wire protocol), print or
draw (``osintd.watch`` does), or hand one broadcast to the handlers twice.

Usage, in the style of the guide's ``LiveUpdatesClient``::

    client = LiveUpdatesClient("ws://localhost:8000/ws/live-updates")
    client.on("new_event", lambda m: print(m["title"]))     # sync or async callables
    client.on("*", record_everything)                        # every server message
    client.on("resync", lambda r: board.clear())             # see below
    async with client:          # or: await client.run() until client.close()
        await trio.sleep_forever()

``token="..."`` adds ``?token=`` to the URL for a server with client authentication;
``headers={"Authorization": "Bearer ..."}`` is sent with the handshake instead.

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
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

import attrs
import trio
import trio_websocket

from osintd.clientcore import (
    CLIENT_EVENTS, DEFAULT_URL, SERVER_TYPES, Backoff, ClientCore, ClientSettings, ClientStats, ConnectionState,
    Disconnect, Gap, Handler, HandshakeRefused, Resync, SequenceTracker, StateChange, Verdict, decode, describe,
    describe_close, one_line, refusal,
)

__all__ = [
    "CLIENT_EVENTS", "DEFAULT_URL", "SERVER_TYPES", "Backoff", "ClientSettings", "ClientStats", "ConnectionState",
    "Gap", "Handler", "HandshakeRefused", "LiveUpdatesClient", "Resync", "SequenceTracker", "StateChange", "Verdict",
]

log = logging.getLogger(__name__)


@attrs.define
class _PongWaiter:
    answered: trio.Event = attrs.field(factory=trio.Event)
    got_pong: bool = False


class LiveUpdatesClient(ClientCore):
    """One subscription to osintd's live updates that reconnects and resumes by itself.

    ``types``/``repos`` subscribe to message types and repository globs (see
    README "Subscriptions"); either may also be given in ``url``'s query.
    ``since``/``epoch`` resume from a point saved by an earlier run.
    ``random_fraction`` (a float in [0, 1)) drives the backoff jitter.
    ``token`` is sent as ``?token=``; ``headers`` go with the handshake.
    """

    def __init__(self, url: str = DEFAULT_URL, *, types: Iterable[str] | None = None,
                 repos: Iterable[str] | None = None, settings: ClientSettings = ClientSettings(),
                 default_handler: Handler | None = None, since: int | None = None, epoch: str | None = None,
                 random_fraction: Callable[[], float] = random.random, token: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(url, types=types, repos=repos, settings=settings, default_handler=default_handler,
                         since=since, epoch=epoch, random_fraction=random_fraction, token=token, headers=headers,
                         log=log)
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._pong_waiters: collections.deque[_PongWaiter] = collections.deque()
        self._connected = trio.Event()
        self._stopped = trio.Event()
        self._run_scope: trio.CancelScope | None = None
        self._running = False
        self._closing = False
        self._nursery_manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None

    # ------------------------------------------------------------------ public

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
            await trio.sleep(self.next_delay(ended))

    async def _one_connection(self) -> Disconnect:
        url = self.connect_url()
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
            failed = Disconnect(describe(group))
            log.debug("connection failed", exc_info=group)
        finally:
            self._ws = None
            for waiter in self._pong_waiters:
                waiter.answered.set()
            self._pong_waiters.clear()
            was_connected = self._connected.is_set()
            if was_connected:
                self._connected = trio.Event()
            self.attempt_ended(was_connected)
        return rejected or failed or ended or Disconnect("connection failed")

    async def _connect_and_receive(self, connection_tasks: trio.Nursery, url: str) -> Disconnect:
        ws = None
        try:
            with trio.move_on_after(self.settings.connect_timeout):
                ws = await trio_websocket.connect_websocket_url(
                    connection_tasks, url, message_queue_size=16, max_message_size=self.settings.max_message_bytes,
                    extra_headers=[(name.encode(), value.encode()) for name, value in self._headers.items()])
        except trio_websocket.ConnectionRejected as rejected:
            return _refusal(rejected)
        except (OSError, trio.BrokenResourceError, trio_websocket.HandshakeError,
                trio_websocket.ConnectionClosed) as exc:
            return Disconnect(f"cannot connect: {one_line(exc)}")
        if ws is None:
            return Disconnect(f"handshake took over {self.settings.connect_timeout:g} s")
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

    async def _receive(self, ws: trio_websocket.WebSocketConnection) -> tuple[Disconnect, bool]:
        """Read until the connection ends; returns how, and whether the peer is presumed dead."""
        while True:
            with trio.move_on_after(self.settings.heartbeat_timeout) as timer:
                try:
                    text = await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    reason = closed.reason
                    return Disconnect(describe_close(reason.code if reason else None,
                                                     reason.reason if reason else None)), False
            if timer.cancelled_caught:
                return self.heartbeat_timed_out(), True
            message = decode(text, log)
            if message is not None:
                gap = await self.accept(message)
                if gap is not None:
                    return Disconnect(f"missed seq {gap.first_missing}..{gap.last_missing}; resuming"), False

    def _pong_arrived(self) -> None:
        if self._pong_waiters:
            waiter = self._pong_waiters.popleft()
            waiter.got_pong = True
            waiter.answered.set()

    def _on_connected(self) -> None:
        self._connected.set()


def _refusal(rejected: trio_websocket.ConnectionRejected) -> Disconnect:
    retry_after = next((value.decode("latin-1") for name, value in rejected.headers or ()
                        if name.lower() == b"retry-after"), None)
    return refusal(rejected.status_code, rejected.body, retry_after)
