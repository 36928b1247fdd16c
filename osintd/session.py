"""One WebSocket client from accept to close.

Owns: the two tasks of a connection (the sender, which also sends the
keepalive pings, and the reader), the client's inbound rate limit, and
closing the socket with the right code.
Must not: broadcast (the hub does), parse frames (``wsio`` does), or let any
failure of this connection escape: a peer that misbehaves, vanishes or trips
a library bug ends its own session and nothing else.

Close codes: 1001 shutdown, 1003 binary frame, 1008 message flood or token expired,
1009 message over the size limit, 1011 keepalive ping unanswered (no Close
frame: the socket is just closed), 1013 slow consumer; 1002/1007 as wsproto
decides for frames that break RFC 6455.
"""

from __future__ import annotations

import logging
import datetime as dt
from collections.abc import Callable

import attrs
import trio

from osintd import wire
from osintd.auth import TOKEN_EXPIRED, UNLIMITED, Grant
from osintd.broadcaster import Frame
from osintd.hub import Hub
from osintd.outbox import Outbox
from osintd.wsio import ConnectionClosed, MessageTooBig, ProtocolViolation, ServerWebSocket
from osintd.messages import Error, PingRequest, Pong, ResumeRequest, SubscribeRequest, Subscribed

log = logging.getLogger(__name__)


@attrs.frozen
class SessionSettings:
    #: A client is dropped when this many messages wait for it; when, with messages
    #: waiting, its socket has taken nothing for ``slow_client_timeout`` seconds; or
    #: when it has been behind for ``max_behind`` seconds without catching up.
    client_queue: int = 100_000
    slow_client_timeout: float = 10.0
    max_behind: float = 60.0
    #: The longest one write may wait for the client to read.
    send_timeout: float = 10.0
    #: How long a Close frame (and the rest of a frame begun before it) waits for the client to read.
    close_timeout: float = 5.0
    ping_interval: float = 20.0
    ping_timeout: float = 10.0
    max_message_bytes: int = 64 * 1024
    #: Inbound messages: a burst of ``rate_burst``, refilled at ``rate_per_second``.
    rate_per_second: float = 20.0
    rate_burst: float = 60.0


@attrs.define
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """Runs one accepted WebSocket until it closes; see :meth:`run`."""

    __slots__ = ("ws", "hub", "settings", "client", "grant", "_now", "_dead", "_write_scope", "_bucket")

    def __init__(self, ws: ServerWebSocket, hub: Hub, settings: SessionSettings, client: Outbox,
                 now: Callable[[], dt.datetime], grant: Grant = UNLIMITED) -> None:
        self.ws = ws  # its stream is closed here, whatever happened
        self.hub = hub
        self.settings = settings
        self.client = client
        #: What the client's token may read, and until when (``auth``).
        self.grant = grant
        self._now = now
        self._dead = False  # the peer stopped answering: no close handshake, just close the socket
        self._write_scope: trio.CancelScope | None = None  # the batch being written, if one
        self._bucket: TokenBucket | None = None  # made at the first message: most clients never send one
        ws.ping_allowed = self._within_budget  # a ping costs a pong: it counts like a message
        client.on_end = self._stop_writing

    async def run(self) -> None:
        """The sender runs in this task and the reader beside it; either ending ends both.

        Two tasks per connection, and only the reader touches the socket's
        incoming side, keep an idle connection small; keepalive pings are the
        sender's job when it has had nothing to send for ``ping_interval``."""
        try:
            # A JWT's expiry is the deadline of the whole session: no timer task, no per-message check.
            with trio.CancelScope(deadline=self._token_deadline()) as lifetime:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_loop, nursery.cancel_scope, name="osintd.session.reader")
                    await self._send_loop()
                    nursery.cancel_scope.cancel()
            if lifetime.cancelled_caught and not self.client.ended:
                log.info("client %s (%s) closed: its token expired", self.client.client_id, self.grant.name)
                self.client.end(TOKEN_EXPIRED)
        finally:
            self.hub.detach(self.client)
            with trio.CancelScope(shield=True):
                await self._close()

    def _token_deadline(self) -> float:
        expires = self.grant.expires
        if expires is None:
            return float("inf")
        return trio.current_time() + (expires - self._now().timestamp())

    # ------------------------------------------------------------------ send

    async def _send_loop(self) -> None:
        """Write everything handed over for this client, in batches: one write for
        all the frames that are ready, then wait (parked: the hub may write
        directly to the socket meanwhile) for more."""
        client = self.client
        ws = self.ws
        while not client.ended:
            if ws.owes:  # a direct write left part of a frame unwritten
                if not await self._write(b"", []):
                    return
                client.written(trio.current_time())
                continue
            frames = client.take(256)
            if not frames:
                with trio.move_on_after(self.settings.ping_interval) as idle:
                    await client.wait()
                if idle.cancelled_caught and not await self._ping():  # quiet for a while: still there?
                    return
                continue
            data, starts = _joined(frames)
            # Not kept while this loop waits: the first batch holds the connection
            # message and the snapshot, ~3 KB per idle client otherwise.
            del frames
            written = await self._write(data, starts)
            del data, starts
            if not written:
                return
            client.written(trio.current_time())

    async def _write(self, data: bytes, starts: list[int]) -> bool:
        """Write a batch (``starts``: where its frames after the first begin); False when
        the connection is over (closed, or this client fell ``send_timeout`` behind a
        single write and is dropped)."""
        with trio.CancelScope(deadline=trio.current_time() + self.settings.send_timeout) as scope:
            self._write_scope = scope
            try:
                await self.ws.write(data, starts)
            except ConnectionClosed:
                return False  # the peer closed or vanished; nothing more to send
            finally:
                self._write_scope = None
        if scope.cancelled_caught:
            if not self.client.ended:  # not ended by the hub: the write itself took too long
                log.warning("client %s dropped: a write waited %.0fs", self.client.client_id,
                            self.settings.send_timeout)
                self.hub.drop_slow(self.client)
            return False
        return True

    def _stop_writing(self) -> None:
        """The client is ending: stop the batch being written at the end of the frame
        on the wire (``wsio`` finishes that frame before the Close frame)."""
        if self._write_scope is not None:
            self._write_scope.cancel()

    # ------------------------------------------------------------------ read

    async def _read_loop(self, scope: trio.CancelScope) -> None:
        """Read the client's messages until it closes, breaks a rule, or vanishes; then
        end the session (``scope`` is its nursery's).  One function, not two: every
        idle client keeps this task's coroutine frames."""
        client = self.client
        try:
            while True:
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed:
                    return
                except MessageTooBig:
                    log.info("client %s dropped: message over %d bytes", client.client_id,
                             self.settings.max_message_bytes)
                    client.end((1009, "messages here are limited to %d bytes" % self.settings.max_message_bytes))  # noqa: UP031
                    return
                except ProtocolViolation as violation:
                    log.info("client %s dropped: %s", client.client_id, violation.reason)
                    client.end((violation.code, violation.reason[:100]))
                    return
                if isinstance(message, bytes):
                    client.end((1003, "binary frames are not accepted; send JSON text"))
                    return
                if not self._within_budget():
                    log.warning("client %s dropped: message flood", client.client_id)
                    client.end((1008, "too many messages; at most %g per second" % self.settings.rate_per_second))  # noqa: UP031
                    return
                self._handle(message)
        finally:
            scope.cancel()

    def _within_budget(self) -> bool:
        """Take one message (or ping) from the client's budget; False once it floods."""
        now = trio.current_time()
        if self._bucket is None:
            burst = self.settings.rate_burst
            self._bucket = TokenBucket(self.settings.rate_per_second, burst, burst, now)
        return self._bucket.take(now)

    def _handle(self, text: str) -> None:
        try:
            request = wire.decode_request(text)
        except wire.RequestRejected as rejected:
            self.hub.send_direct(self.client, Error(self._now(), rejected.error_code, rejected.message,
                                                    "warning", {"received": text[:200]}))
            return
        if isinstance(request, PingRequest):
            self.hub.send_direct(self.client, Pong(self._now()))
        elif isinstance(request, SubscribeRequest):
            # Narrowed to the token's limits, not refused: "subscribed" says what is in force.
            self.client.filter = self.grant.narrow(request.types, request.repos)
            types, repos = self.grant.in_force(request.types, request.repos)
            self.hub.send_direct(self.client, Subscribed(self._now(), types, repos))
        elif isinstance(request, ResumeRequest):
            self.hub.resume(self.client, request.since, request.epoch)

    # ------------------------------------------------------------- keepalive

    async def _ping(self) -> bool:
        """A WebSocket ping; False (and the client ended) if no pong comes in time."""
        with trio.move_on_after(self.settings.ping_timeout) as timer:
            try:
                await self.ws.ping()
            except ConnectionClosed:
                return False
        if timer.cancelled_caught:
            log.info("client %s dropped: no pong within %.0fs", self.client.client_id,
                     self.settings.ping_timeout)
            self._dead = True  # a peer that does not answer gets no close handshake
            self.client.end((1011, "keepalive ping unanswered"))
            return False
        return True

    # ----------------------------------------------------------------- close

    async def _close(self) -> None:
        """The Close frame with the client's reason, after the rest of any frame begun
        on the wire, whenever the peer reads again within ``close_timeout``; then
        the socket closes without a reset (see ``wsio.discard_unread``)."""
        code, reason = self.client.close_reason or (1000, "bye")
        if not self._dead and self.ws.open:
            with trio.move_on_after(self.settings.close_timeout):
                try:
                    await self.ws.aclose(code, reason)
                except Exception:  # the peer vanished or misbehaved mid-close; the stream is closed below
                    log.debug("close handshake with %s failed", self.client.client_id, exc_info=True)
        self.ws.discard_unread()
        await trio.aclose_forcefully(self.ws.stream)


def _joined(frames: list[Frame]) -> tuple[bytes, list[int]]:
    """The frames as one write, and where each frame after the first begins in it."""
    wires = [frame.wire for frame in frames]
    starts: list[int] = []
    size = 0
    for data in wires[:-1]:
        size += len(data)
        starts.append(size)
    return b"".join(wires), starts
