"""Fast WebSocket output: frames made once for every client, written in batches
or straight to the socket.

Owns: turning a message into its WebSocket frame bytes (once, with wsproto's
framing), and the two ways osintd writes those bytes to a client: a batch
under trio-websocket's write lock, or a direct non-blocking write when the
client is idle.
Must not: read, close, or decide who gets what.

This is the one place that uses trio-websocket's private internals
(``WebSocketConnection._stream_lock``, and the order in which it sets its
close reason before writing a close frame), pinned to the
versions in ``pyproject.toml`` and checked by ``tests/test_wsio.py``, which
fails loudly if the library changes them.  Server frames are unmasked and
permessage-deflate is never negotiated by trio-websocket, so one frame is
valid for every client.
"""

from __future__ import annotations

import os

import trio
import trio_websocket
from wsproto.frame_protocol import FrameProtocol

_framer = FrameProtocol(client=False, extensions=[])

#: The trio-websocket versions whose internals this module was written against.
SUPPORTED_TRIO_WEBSOCKET = ("0.12",)


def frame_text(text: str) -> bytes:
    """A complete, unmasked WebSocket text frame carrying ``text``."""
    return bytes(_framer.send_data(text, fin=True))


class SocketWriter:
    """Writes pre-framed bytes to one accepted connection.

    Invariant: every write, batched or direct, happens while no other writer
    (trio-websocket's pong, ping or close) is in the middle of one, so frames
    never interleave on the wire.
    """

    __slots__ = ("_ws", "_stream", "_lock", "_fd")

    def __init__(self, ws: trio_websocket.WebSocketConnection, stream: trio.SocketStream) -> None:
        self._ws = ws
        self._stream = stream
        self._lock: trio.StrictFIFOLock = ws._stream_lock  # private: see module docstring
        self._fd = stream.socket.fileno()

    @property
    def open(self) -> bool:
        # trio-websocket sets its close reason before it writes any close frame
        # (ours, the answer to the peer's, or 1009) and when the stream breaks, so
        # this one attribute read (cheap: it is on every direct write) suffices.
        return self._ws.closed is None

    async def write(self, data: bytes) -> None:
        """Write ``data`` completely; raises ``trio_websocket.ConnectionClosed`` once closing."""
        async with self._lock:
            if not self.open:
                raise trio_websocket.ConnectionClosed(self._ws.closed)
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise trio_websocket.ConnectionClosed(self._ws.closed) from None

    def try_write_now(self, data: bytes) -> int:
        """Write without waiting: the number of bytes the kernel took (maybe
        fewer than ``len(data)``), or -1 if a write cannot be attempted now."""
        if self._lock.locked() or not self.open:
            return -1
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1  # the connection is going away; the sender will find out
