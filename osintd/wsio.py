"""Server-side WebSocket I/O: the handshake answer, frames made once for every
client, and one accepted connection on top of wsproto.

Owns: turning an upgrade request (already read and checked by ``server``)
into the 101 answer; turning a message into its WebSocket frame bytes (once,
for every client); and :class:`ServerWebSocket`, which reads and parses
a client's frames, answers pings, tracks our keepalive ping, runs the close
handshake, and writes pre-framed bytes (a batch under the connection's write
lock, or a direct non-blocking write when the client is idle).
Must not: decide who gets what, what a client's message means, or which close
code a session ends with (``session`` does); start tasks (the session's
reader task is the only one reading).

Why not trio-websocket on this side: its connection carries a reader task of
its own, a message channel, the handshake's h11 state for the connection's
lifetime and a handful of Events and locks; on top of the session's own tasks
that made an idle client cost ~32 KB.  Here one reader task of the session's
drives wsproto directly.  (osintd's client side still uses trio-websocket.)

wsproto use: the handshake goes through its documented ``H11Handshake``
(``initiate_upgrade_connection`` with the request osintd parsed already); the
connection it hands over (``H11Handshake.connection``, a
``wsproto.connection.Connection``) is not in wsproto's documented API.  It is
used only here, pinned to the versions in ``pyproject.toml`` and checked by
``tests/test_wsio.py``, which fails loudly if it changes.  Server frames are
unmasked and no extension is ever negotiated, so one frame is valid for every
client; ``frame_text`` makes them itself (see there why), and the same tests
check it byte for byte against wsproto's framing.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import struct
from bisect import bisect_right
from collections.abc import Callable, Sequence

import h11
import trio
import wsproto
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, RejectConnection, Request, TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

log = logging.getLogger(__name__)

#: The wsproto versions whose undocumented parts this module was written against.
SUPPORTED_WSPROTO = ("1.3.",)

#: Bytes asked of the socket per read: enough for any control frame and most
#: client messages; a bigger message arrives in several reads.
RECEIVE_BYTES = 4096

#: Close code when the peer went away without a Close frame (RFC 6455 7.1.5).
ABNORMAL_CLOSURE = 1006

#: RFC 6455 5.2, first byte: FIN (this frame is the whole message) and opcode 0x1 (text).
_FIN_TEXT = 0x81
#: The whole header of a frame of 0-125 bytes: the length fits the second byte's 7 bits.
_SHORT_HEADERS = tuple(bytes((_FIN_TEXT, length)) for length in range(126))
#: Longer: 126 and the length in 16 bits, or 127 and the length in 64 bits (network order).
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def frame_text(payload: bytes) -> bytes:
    """A complete, unmasked WebSocket text frame carrying ``payload`` (UTF-8 text).

    A server's frame is the simplest kind (RFC 6455 5.2): never masked, no
    extension, never fragmented here, so it is a header of 2, 4 or 10 bytes and
    the payload.  wsproto's FrameProtocol handles every kind of frame and took
    longer than encoding the message itself (1.9 us for a 490-byte new_event,
    against 0.15 us here), once for every broadcast.
    """
    length = len(payload)
    if length < 126:
        header = _SHORT_HEADERS[length]
    elif length < 0x10000:
        header = _HEADER_16(_FIN_TEXT, 126, length)
    else:
        header = _HEADER_64(_FIN_TEXT, 127, length)
    return header + payload


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame made by :func:`frame_text`: what follows its header,
    whose length the second byte tells (unmasked: that byte is the length code)."""
    code = frame[1]
    return frame[2 if code < 126 else 4 if code == 126 else 10:]


# ------------------------------------------------------------------ handshake


class HandshakeRefused(Exception):
    """The upgrade request is not a valid WebSocket handshake (missing key, wrong version …)."""

    def __init__(self, message: str, status: int, headers: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def _valid_key(value: bytes) -> bool:
    try:
        return len(base64.b64decode(value.strip(), validate=True)) == 16
    except binascii.Error:
        return False


def accept(request: h11.Request, trailing: bytes) -> tuple[bytes, Connection]:
    """The 101 answer to ``request`` (a head h11 has parsed) and the open connection.

    ``trailing`` is whatever the client sent after the head (normally nothing:
    clients wait for the 101); it is fed to the connection, not lost.  The
    handshake's own h11 state is not kept: only the returned connection is.
    """
    for name, value in request.headers:
        if name == b"sec-websocket-key" and not _valid_key(value):
            # wsproto takes any value; RFC 6455 4.2.1: a base64-encoded 16-byte value.
            raise HandshakeRefused("Sec-WebSocket-Key must be 16 random bytes in base64", 400, [])
    handshake = H11Handshake(wsproto.ConnectionType.SERVER)
    try:
        # wsproto annotates a list of pairs; it hands them to h11.Request, which takes h11's own Headers.
        handshake.initiate_upgrade_connection(request.headers, request.target)  # type: ignore[arg-type]
    except RemoteProtocolError as refused:
        hint = refused.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        headers = [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                   for name, value in (hint.headers if isinstance(hint, RejectConnection) else [])]
        raise HandshakeRefused(str(refused), status, headers) from None
    events = list(handshake.events())
    assert len(events) == 1 and isinstance(events[0], Request), events
    # No extensions: permessage-deflate would make frames differ per client.
    response = handshake.send(AcceptConnection(extensions=[]))
    connection = handshake.connection
    assert connection is not None and connection.state is ConnectionState.OPEN
    if trailing:
        connection.receive_data(trailing)
    return response, connection


# ----------------------------------------------------------------- connection


class ConnectionClosed(Exception):
    """The connection is closed or closing; ``code`` is the peer's close code, or
    1006 when it vanished without one (None when we closed first)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class MessageTooBig(Exception):
    """The peer's message grew past the limit; it was not read to its end."""


class ProtocolViolation(Exception):
    """The peer broke RFC 6455 (bad opcode, unmasked frame, invalid UTF-8 …);
    ``code`` is the close code wsproto chose for it (1002, 1007 …)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


_OPEN = ConnectionState.OPEN


class ServerWebSocket:
    """One accepted WebSocket connection, server side.

    Reading (``get_message``) happens in one task at a time: the session's
    reader, then, once that has ended, the close handshake in ``aclose``.
    Writing happens under ``_lock`` (batches, pongs, pings, the Close frame),
    or directly with ``try_write_now`` when nobody holds it.

    Invariants: frames never interleave on the wire (every write holds the
    lock, and a direct write is only tried while it is free and nothing is
    owed).  A write cut off half way through a frame (cancelled, or a direct
    write the kernel took only part of) leaves the rest of that frame as
    ``_tail``, and the next write of any kind sends the tail first: the byte
    stream stays a sequence of whole frames, so a Close frame can always
    follow, whenever the peer reads again.
    """

    # Thousands of these live at once: slots keep each one small.
    __slots__ = ("stream", "_proto", "_lock", "_fd", "_max_message", "_parts", "_size",
                 "_ping", "_tail", "_violated", "close_code", "ping_allowed", "bytes_sent", "bytes_received")

    def __init__(self, stream: trio.SocketStream, connection: Connection, max_message_bytes: int) -> None:
        self.stream = stream
        self._proto = connection
        self._lock = trio.StrictFIFOLock()
        self._fd = stream.socket.fileno()
        self._max_message = max_message_bytes
        self._parts: list[str] | None = None  # a fragmented text message so far
        self._size = 0  # its size in bytes so far
        self._ping: tuple[bytes, trio.Event] | None = None  # our keepalive ping in flight
        self._tail = b""  # the unwritten rest of a frame begun on the wire: it goes first
        self._violated = False  # the peer broke the protocol: its bytes are no longer frames
        self.close_code: int | None = None  # the peer's close code (1006: it just vanished)
        #: Asked for each Ping the peer sends before it is answered (the session's message
        #: budget: pings cost a pong each); False ends the connection with 1008.
        self.ping_allowed: Callable[[], bool] | None = None
        #: Bytes written to and read from the socket (for the access log).
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def open(self) -> bool:
        """Frames may still be written (cheap: it is read on every direct write)."""
        return self._proto.state is ConnectionState.OPEN

    # ---------------------------------------------------------------- writing

    async def write(self, data: bytes, ends: Sequence[int] = ()) -> None:
        """Write ``data`` (whole frames; ``ends`` are the offsets where the frames
        after the first begin, if there are several) completely.

        If cancelled, or if the peer breaks the connection, the rest of the frame
        being written is kept as the tail (and the frames after it are not
        written).  Raises ``ConnectionClosed`` once closing."""
        async with self._lock:
            if not self.open:
                raise ConnectionClosed(self.close_code)
            await self._send_all(data, ends)

    async def _send_all(self, data: bytes, ends: Sequence[int] = ()) -> None:
        """With the lock held: the tail, then ``data``, to the socket.

        Written with ``os.write`` on the non-blocking socket, waiting only when the
        kernel's buffer is full, so that the offset reached is known when a
        cancel comes: the frame it falls in is finished later (``_tail``)."""
        owed = len(self._tail)
        if owed:
            data = self._tail + data
            self._tail = b""
        view = memoryview(data)
        total = len(data)
        offset = 0
        waited = False
        try:
            while offset < total:
                try:
                    offset += os.write(self._fd, view[offset:])
                except BlockingIOError:
                    waited = True
                    await trio.lowlevel.wait_writable(self.stream.socket)
            if not waited:  # the write never waited: let the other tasks have their turn
                await trio.lowlevel.checkpoint()
        except (OSError, trio.ClosedResourceError):
            if self.close_code is None:
                self.close_code = ABNORMAL_CLOSURE
            raise ConnectionClosed(self.close_code) from None
        finally:
            self.bytes_sent += offset
            if offset < total:  # where whole frames begin: after the tail (it ends one), not at 0
                self._tail = _rest_of_frame(data, offset, [owed, *(owed + end for end in ends)])
            del view

    def try_write_now(self, data: bytes) -> int:
        """Write without waiting: the number of bytes the kernel took (maybe
        fewer than ``len(data)``), or -1 if a write cannot be attempted now.
        When only part was taken, the rest is owed: the next write sends it first."""
        if self._tail or self._lock.locked() or self._proto.state is not _OPEN:
            return -1
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1  # the connection is going away; the reader or sender will find out
        self.bytes_sent += written
        if written < len(data):
            self._tail = data[written:]
        return written

    @property
    def owes(self) -> bool:
        """Part of a frame is on the wire and the rest is not: the next write sends it first."""
        return bool(self._tail)

    async def ping(self) -> None:
        """Send a ping and wait for its pong (bound the wait: a dead peer never answers)."""
        if not self.open:
            raise ConnectionClosed(self.close_code)
        payload = os.urandom(4)
        answered = trio.Event()
        self._ping = (payload, answered)
        try:
            await self.write(self._proto.send(Ping(payload=payload)))
            await answered.wait()
        finally:
            self._ping = None

    # ---------------------------------------------------------------- reading

    async def get_message(self) -> str | bytes:
        """The next complete text message, answering pings on the way.

        A binary message is returned (as ``bytes``) at its first frame without
        reading the rest: osintd refuses binary, its content does not matter.
        Raises ``ConnectionClosed`` when the peer closed (the Close is answered)
        or vanished, ``MessageTooBig`` when a message passes the size limit, and
        ``ProtocolViolation`` for frames that break RFC 6455.
        """
        proto = self._proto
        while True:
            # Leaving this loop early (a message is ready) leaves the frames after
            # it in wsproto's buffer for the next call.
            for event in proto.events():
                if isinstance(event, TextMessage):
                    text = self._add_text(event)
                    if text is not None:
                        return text
                elif isinstance(event, BytesMessage):
                    return bytes(event.data)
                elif isinstance(event, Ping):
                    allowed = self.ping_allowed
                    if allowed is not None and self.open and not allowed():
                        # Nothing a flooder sends is read any more, its Close included: the
                        # close handshake sends ours and does not wait for an answer.
                        self._violated = True
                        raise ProtocolViolation(1008, "too many messages (pings count too)")
                    if self.open:
                        await self._answer(proto.send(event.response()))
                elif isinstance(event, Pong):
                    if self._ping is not None and self._ping[0] == event.payload:
                        self._ping[1].set()
                elif isinstance(event, CloseConnection):
                    await self._closed_by_peer(event)
            # The trio socket itself, not SocketStream.receive_some: one coroutine
            # frame and a context manager less for every idle client to keep.
            try:
                data = await self.stream.socket.recv(RECEIVE_BYTES)
            except (OSError, trio.ClosedResourceError):
                data = b""
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Feed bytes from the socket to wsproto; EOF (or a broken socket: b"") ends the connection."""
        self.bytes_received += len(data)
        if not data:
            if self.close_code is None:
                self.close_code = ABNORMAL_CLOSURE
            raise ConnectionClosed(self.close_code)
        self._proto.receive_data(data)

    def _add_text(self, event: TextMessage) -> str | None:
        data = event.data
        # isascii() is O(1) on CPython: only non-ASCII text pays for encoding.
        self._size += len(data) if data.isascii() else len(data.encode("utf-8"))
        if self._size > self._max_message:
            self._parts = None
            raise MessageTooBig(f"message over {self._max_message} bytes")
        if not event.message_finished:
            if self._parts is None:
                self._parts = []
            self._parts.append(data)
            return None
        if self._parts is not None:
            self._parts.append(data)
            data = "".join(self._parts)
            self._parts = None
        self._size = 0
        return data

    async def _answer(self, data: bytes) -> None:
        """Write a control frame from the reading side: a pong, or the answer to the
        peer's Close (wsproto is no longer OPEN then, so ``write`` would refuse it)."""
        async with self._lock:
            try:
                await self._send_all(data)
            except ConnectionClosed:
                pass  # the reader will see the end of the stream next

    async def _closed_by_peer(self, event: CloseConnection) -> None:
        if self._proto.state is ConnectionState.OPEN:
            # wsproto reports frames that break the protocol as a CloseConnection
            # without any Close having arrived (the state is still OPEN).
            self._violated = True
            raise ProtocolViolation(event.code, event.reason or "protocol error")
        self.close_code = event.code
        if self._proto.state is ConnectionState.REMOTE_CLOSING:
            await self._answer(self._proto.send(event.response()))
        raise ConnectionClosed(event.code, event.reason or "")

    # ---------------------------------------------------------------- closing

    async def aclose(self, code: int, reason: str) -> None:
        """The close handshake from our side: send Close with ``code``, then read
        (discarding) until the peer's Close or EOF.  Unbounded: the caller puts a
        timeout on it.  Does nothing when no Close frame can be written any more;
        does not close the stream (the session does, whatever happened)."""
        async with self._lock:
            if not self.open:
                return
            try:
                # wsproto is LOCAL_CLOSING from here on: no frame but this one goes out.
                await self._send_all(self._proto.send(CloseConnection(code=code, reason=reason)))
            except ConnectionClosed:
                return
        if self._violated:
            return  # its bytes cannot be parsed: no Close will be recognised
        # The ignores below: events() and _feed() move the state, but mypy keeps the while's narrowing.
        while self._proto.state is not ConnectionState.CLOSED:
            try:
                for event in self._proto.events():
                    if isinstance(event, CloseConnection):
                        self.close_code = event.code
                        if self._proto.state is not ConnectionState.CLOSED:  # type: ignore[comparison-overlap]
                            return  # a parse failure
                if self._proto.state is not ConnectionState.CLOSED:  # type: ignore[comparison-overlap]
                    try:
                        data = await self.stream.socket.recv(RECEIVE_BYTES)
                    except (OSError, trio.ClosedResourceError):
                        data = b""
                    self._feed(data)
            except ConnectionClosed:
                return

    def discard_unread(self, limit: int = 1 << 20) -> None:
        """Read and drop what the peer sent and nobody will read, without waiting.

        Closing a socket with unread bytes in its receive buffer makes the
        kernel answer with a reset, and a reset makes the peer's kernel throw
        away what it had not yet handed to the client: the Close frame among it.
        """
        while limit > 0:
            try:
                data = os.read(self._fd, 65536)
            except OSError:  # nothing more now (BlockingIOError), or the socket is gone
                return
            if not data:
                return
            self.bytes_received += len(data)
            limit -= len(data)


def _rest_of_frame(data: bytes, offset: int, starts: Sequence[int]) -> bytes:
    """The bytes from ``offset`` to the end of the frame it falls in (``starts``:
    where whole frames begin, in order); b"" when a frame begins at ``offset``."""
    index = bisect_right(starts, offset)  # starts[index - 1] <= offset < starts[index]
    if index and starts[index - 1] == offset:
        return b""
    end = starts[index] if index < len(starts) else len(data)
    return bytes(data[offset:end])
