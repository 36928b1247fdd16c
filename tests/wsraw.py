"""A deliberately primitive WebSocket client over a raw trio socket, for peers that
misbehave on purpose: never read, never answer pings, send odd frames."""

from __future__ import annotations

import base64
import os
import socket
import struct

import trio


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def handshake(port: int, path: str = "/ws/live-updates", headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(port: int, receive_buffer: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def open_raw(port: int, receive_buffer: int | None = None, **kwargs) -> trio.SocketStream:
    """Connect and upgrade; returns once the 101 head has been read (nothing after it)."""
    stream = await connect(port, receive_buffer)
    await stream.send_all(handshake(port, **kwargs))
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream


async def read_all(stream: trio.SocketStream, limit: int = 50_000_000) -> bytes:
    data = b""
    while len(data) < limit:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    return data


def close_code(data: bytes) -> int | None:
    """The code of the first server Close frame in ``data`` (unmasked frames), if any."""
    offset = 0
    while offset + 2 <= len(data):
        opcode = data[offset] & 0x0F
        length = data[offset + 1] & 0x7F
        offset += 2
        if length == 126:
            length = struct.unpack("!H", data[offset:offset + 2])[0]
            offset += 2
        elif length == 127:
            length = struct.unpack("!Q", data[offset:offset + 8])[0]
            offset += 8
        payload = data[offset:offset + length]
        offset += length
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None
