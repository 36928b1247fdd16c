"""A reconnecting client for ``/ws/live-updates``, for asyncio programs.

Owns: the asyncio side of one logical subscription that outlives its
connections, built on the ``websockets`` library: connecting, heartbeat
monitoring, waiting between attempts, ``ping``, closing.  Everything else
(resume with ``since``/``epoch``, gap detection and de-duplication by ``seq``,
backoff, handlers, counters) is :mod:`osintd.clientcore`'s, so this client
follows exactly the rules of the trio client :mod:`osintd.client` (read its
docstring for them) and has the same API, with asyncio in place of trio.
Must not: import trio or the server's code, print, or hand one broadcast to
the handlers twice.

``websockets`` is an optional dependency: ``pip install 'osintd[aio]'``.

Usage::

    client = LiveUpdatesClient("ws://localhost:8000/ws/live-updates")
    client.on("new_event", lambda m: print(m["title"]))     # sync or async callables
    async with client:          # or: await client.run() until client.close()
        await asyncio.Event().wait()
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
except ImportError as missing:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("osintd.aio needs the websockets library (13 or later): "
                      "pip install 'osintd[aio]'") from missing

from osintd.clientcore import (
    DEFAULT_URL, ClientCore, ClientSettings, ClientStats, ConnectionState, Disconnect, Gap, Handler,
    HandshakeRefused, Resync, StateChange, decode, describe_close, one_line, refusal,
)

__all__ = [
    "ClientSettings", "ClientStats", "ConnectionState", "Gap", "HandshakeRefused", "LiveUpdatesClient", "Resync",
    "StateChange",
]

log = logging.getLogger(__name__)


class LiveUpdatesClient(ClientCore):
    """One subscription to osintd's live updates that reconnects and resumes by itself.

    The same options as :class:`osintd.client.LiveUpdatesClient`: ``types``/``repos``
    subscribe; ``since``/``epoch`` resume from a point saved by an earlier run;
    ``random_fraction`` drives the backoff jitter; ``token`` is sent as ``?token=``
    and ``headers`` (e.g. ``{"Authorization": "Bearer ..."}``) with the handshake.
    """

    def __init__(self, url: str = DEFAULT_URL, *, types: Iterable[str] | None = None,
                 repos: Iterable[str] | None = None, settings: ClientSettings = ClientSettings(),
                 default_handler: Handler | None = None, since: int | None = None, epoch: str | None = None,
                 random_fraction: Callable[[], float] = random.random, token: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(url, types=types, repos=repos, settings=settings, default_handler=default_handler,
                         since=since, epoch=epoch, random_fraction=random_fraction, token=token, headers=headers,
                         log=log)
        self._ws: ClientConnection | None = None
        self._pong_waiters: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._closing = False
        self._task_group: asyncio.TaskGroup | None = None

    # ------------------------------------------------------------------ public

    async def run(self) -> None:
        """Connect, and stay connected (reconnecting as needed) until :meth:`close`.

        Raises :class:`HandshakeRefused` when the server refuses the handshake for good.
        """
        if self._run_task is not None:
            raise RuntimeError("this client is already running")
        self._run_task = task = asyncio.current_task()
        self._stopped = asyncio.Event()
        try:
            if not self._closing:
                await self._keep_connected()
        except asyncio.CancelledError:
            # close() cancels this task; a cancellation from anywhere else goes on.
            if not self._closing or task is None or task.uncancel() > 0:
                raise
        finally:
            self._run_task = None
            self._set_state(ConnectionState.CLOSED)
            self._stopped.set()

    async def close(self) -> None:
        """Close the connection (code 1000) and make :meth:`run` return; waits until it has."""
        self._closing = True
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
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
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()  # True: the pong came; False: the connection ended
        self._pong_waiters.append(waiter)
        started = loop.time()
        got_pong = False
        try:
            await ws.send('{"type":"ping"}')
            async with asyncio.timeout(self.settings.ping_timeout if timeout is None else timeout):
                got_pong = await waiter
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            if waiter in self._pong_waiters:
                self._pong_waiters.remove(waiter)
        return loop.time() - started if got_pong else None

    async def __aenter__(self) -> LiveUpdatesClient:
        # A task group, like trio's nursery: a HandshakeRefused from run() cancels the
        # body of the ``async with`` and comes out of it.
        self._task_group = group = asyncio.TaskGroup()
        await group.__aenter__()
        group.create_task(self.run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> bool | None:
        group, self._task_group = self._task_group, None
        assert group is not None, "__aexit__ without __aenter__"
        self._closing = True
        if self._run_task is not None:
            self._run_task.cancel()
        await group.__aexit__(exc_type, exc, traceback)
        return None

    # ------------------------------------------------------------ connections

    async def _keep_connected(self) -> None:
        while True:
            ended = await self._one_connection()
            if ended.refused is not None:
                raise ended.refused
            if self._closing:
                return
            await asyncio.sleep(self.next_delay(ended))

    async def _one_connection(self) -> Disconnect:
        url = self.connect_url()
        self._set_state(ConnectionState.CONNECTING if self.stats.connects == 0 else ConnectionState.RECONNECTING)
        try:
            return await self._connect_and_receive(url)
        finally:
            self._ws = None
            for waiter in self._pong_waiters:
                if not waiter.done():
                    waiter.set_result(False)
            self._pong_waiters.clear()
            was_connected = self._connected.is_set()
            if was_connected:
                self._connected = asyncio.Event()
            self.attempt_ended(was_connected)

    async def _connect_and_receive(self, url: str) -> Disconnect:
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                ws = await connect(url, additional_headers=self._headers, max_size=self.settings.max_message_bytes,
                                   compression=None, open_timeout=None, ping_interval=None,
                                   close_timeout=self.settings.close_timeout, max_queue=16)
        except InvalidStatus as rejected:
            response = rejected.response
            return refusal(response.status_code, response.body, response.headers.get("Retry-After"))
        except TimeoutError:
            return Disconnect(f"handshake took over {self.settings.connect_timeout:g} s")
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, EOFError) as exc:
            return Disconnect(f"cannot connect: {one_line(exc)}")
        self._ws = ws
        dead = False
        try:
            ended, dead = await self._receive(ws)
            return ended
        finally:
            self._ws = None
            if dead:
                ws.transport.abort()  # a dead peer gets no close handshake to wait for
            else:
                # Shielded, so that close() cancelling run() still says goodbye with 1000.
                await asyncio.shield(ws.close())

    async def _receive(self, ws: ClientConnection) -> tuple[Disconnect, bool]:
        """Read until the connection ends; returns how, and whether the peer is presumed dead."""
        while True:
            try:
                async with asyncio.timeout(self.settings.heartbeat_timeout):
                    text = await ws.recv()
            except ConnectionClosed as closed:
                frame = closed.rcvd
                return Disconnect(describe_close(frame.code if frame else None,
                                                 frame.reason if frame else None)), False
            except TimeoutError:
                return self.heartbeat_timed_out(), True
            message = decode(text, log)
            if message is not None:
                gap = await self.accept(message)
                if gap is not None:
                    return Disconnect(f"missed seq {gap.first_missing}..{gap.last_missing}; resuming"), False

    def _pong_arrived(self) -> None:
        while self._pong_waiters:
            waiter = self._pong_waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return

    def _on_connected(self) -> None:
        self._connected.set()
