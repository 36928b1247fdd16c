"""osintd's own server-side WebSocket layer (``osintd/wsio.py``) against real
sockets: the wsproto parts it relies on, the handshake, ping/pong, the close
handshake both ways, size and binary limits, fragmentation, and peers that
vanish or never read.  Raw peers come from ``wsraw``; what the server sends
is parsed back with wsproto's client-side frame parser."""

from __future__ import annotations

import json
import struct

import h11
import pytest
import trio
import trio_websocket
import wsproto
from wsproto.connection import Connection, ConnectionState
from wsproto.frame_protocol import FrameProtocol, Opcode

import wsraw
from conftest import ScriptedSource, make_settings, receive_json, receive_until, start_app, ws_url
from osintd import wsio
from osintd.session import SessionSettings

LIMIT = SessionSettings().max_message_bytes
CLOSE_TIMEOUT = SessionSettings().close_timeout


# ------------------------------------------------- the wsproto parts we rely on


def test_pinned_wsproto_version_is_the_one_installed():
    assert wsproto.__version__.startswith(wsio.SUPPORTED_WSPROTO), (
        f"wsproto {wsproto.__version__}: re-check osintd/wsio.py against H11Handshake.connection "
        "and wsproto.connection.Connection")


def test_the_undocumented_wsproto_parts_wsio_uses_still_behave():
    head = wsraw.handshake(8000)
    server = h11.Connection(h11.SERVER)
    server.receive_data(head + wsraw.frame(0x1, b'{"type": "ping"}'))
    request = server.next_event()
    response, connection = wsio.accept(request, server.trailing_data[0])
    assert response.startswith(b"HTTP/1.1 101") and b"sec-websocket-extensions" not in response.lower()
    assert isinstance(connection, Connection) and connection.state is ConnectionState.OPEN
    events = list(connection.events())  # the bytes after the head were not lost
    assert [type(e).__name__ for e in events] == ["TextMessage"] and events[0].data == '{"type": "ping"}'
    closing = connection.send(wsproto.events.CloseConnection(code=1000, reason="x"))
    assert connection.state is ConnectionState.LOCAL_CLOSING and closing[0] == 0x88


def test_frame_text_is_what_a_client_parses_back():
    text = json.dumps({"type": "new_event", "title": "ünïcode ✓" * 50})
    frame = wsio.frame_text(text.encode())
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(frame)
    parsed = list(reader.received_frames())
    assert len(parsed) == 1 and parsed[0].payload == text and parsed[0].message_finished
    assert frame[0] == 0x81 and not frame[1] & 0x80  # FIN + text, unmasked


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_text_is_byte_for_byte_wsprotos_framing(length):
    """Every length class of RFC 6455 5.2 (7-bit, 16-bit, 64-bit) on both sides of each boundary."""
    text = "x" * length
    frame = wsio.frame_text(text.encode())
    assert frame == bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))
    assert wsio.frame_payload(frame) == text.encode()


@pytest.mark.parametrize("text", ["ünïcode ✓", "🔥 HOT " * 20, "日本語" * 30000])
def test_frame_text_of_non_ascii_is_byte_for_byte_wsprotos_framing(text):
    """The length in the header is the UTF-8 length, not the number of characters."""
    frame = wsio.frame_text(text.encode())
    assert frame == bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))
    assert wsio.frame_payload(frame) == text.encode()


# ------------------------------------------------------------------- helpers




class Peer:
    """A raw client: sends frames as written, reads server frames with wsproto's parser."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = FrameProtocol(client=True, extensions=[])
        self.pending: list = []

    @classmethod
    async def open(cls, port: int, receive_buffer: int | None = None) -> "Peer":
        return cls(await wsraw.open_raw(port, receive_buffer, path="/ws/live-updates?snapshot=0"))

    async def send(self, *frames: bytes) -> None:
        await self.stream.send_all(b"".join(frames))

    async def next_frame(self):
        """The next complete frame (opcode, payload), or None at EOF; fails after 60 s
        (virtual under the autojump clock), so a server that never answers fails a test
        instead of hanging it."""
        while not self.pending:
            with trio.fail_after(60):
                data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.parser.receive_bytes(data)
            self.pending.extend(self.parser.received_frames())
        return self.pending.pop(0)

    async def next_json(self) -> dict:
        frame = await self.next_frame()
        assert frame is not None and frame.opcode is Opcode.TEXT, frame
        return json.loads(frame.payload)

    async def until(self, opcode: Opcode):
        """Frames up to the first one with ``opcode`` (which is returned), skipping the rest."""
        while True:
            frame = await self.next_frame()
            assert frame is not None, f"EOF before a {opcode!r} frame"
            if frame.opcode is opcode:
                return frame

    async def at_eof(self) -> bool:
        """Whether the server closes the TCP connection (anything still sent is skipped)."""
        while (frame := await self.next_frame()) is not None:
            pass
        return True


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return wsraw.frame(0x8, struct.pack("!H", code) + reason)


async def _connected(app, **kwargs) -> Peer:
    peer = await Peer.open(app.port, **kwargs)
    assert (await peer.next_json())["type"] == "connection"
    return peer


# --------------------------------------------------------------- handshake


async def test_handshake_never_negotiates_compression_and_keeps_bytes_sent_early(app, autojump_clock):
    stream = await wsraw.connect(app.port)
    head = wsraw.handshake(app.port, path="/ws/live-updates?snapshot=0",
                           headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    await stream.send_all(head + wsraw.frame(0x1, b'{"type": "ping"}'))  # before the 101 arrives
    peer = Peer(stream)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await stream.receive_some(1)
    assert answer.startswith(b"HTTP/1.1 101") and b"sec-websocket-extensions" not in answer.lower()
    assert (await peer.next_json())["type"] == "connection"
    assert (await peer.next_json())["type"] == "pong"


@pytest.mark.parametrize("drop, replace, status", [
    ("Sec-WebSocket-Key", None, 400),
    ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426),
])
async def test_invalid_handshakes_get_json_refusals(app, drop, replace, status, autojump_clock):
    head = wsraw.handshake(app.port).decode()
    lines = [line for line in head.split("\r\n") if not (replace is None and line.startswith(drop))]
    if replace is not None:
        lines = [replace if line == drop else line for line in lines]
    stream = await wsraw.connect(app.port)
    await stream.send_all("\r\n".join(lines).encode())
    answer = await wsraw.read_all(stream)
    assert answer.startswith(f"HTTP/1.1 {status}".encode()) and b'"bad_request"' in answer
    if status == 426:
        assert b"sec-websocket-version: 13" in answer.lower()
    assert app.hub.connection_count == 0


# --------------------------------------------------------------- ping / pong


async def test_client_ping_gets_its_pong_with_the_same_payload(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(wsraw.frame(0x9, b"are you there"))
    pong = await peer.until(Opcode.PONG)
    assert pong.payload == b"are you there"


async def test_server_pings_when_idle_and_a_pong_keeps_the_connection(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(ping_interval=20.0, ping_timeout=10.0), source=ScriptedSource())
    peer = await _connected(app)
    for _ in range(3):  # three rounds: each ping is answered in time
        ping = await peer.until(Opcode.PING)
        await peer.send(wsraw.frame(0xA, ping.payload))
    assert app.hub.connection_count == 1
    await peer.send(wsraw.frame(0x1, b'{"type": "ping"}'))
    while (message := await peer.next_json())["type"] == "heartbeat":
        pass
    assert message["type"] == "pong"
    nursery.cancel_scope.cancel()


async def test_unanswered_ping_drops_the_peer_without_a_close_frame(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(ping_interval=20.0, ping_timeout=10.0), source=ScriptedSource())
    peer = await _connected(app)
    start = trio.current_time()
    await peer.until(Opcode.PING)  # read, but never answered
    frames = []
    while (frame := await peer.next_frame()) is not None:
        frames.append(frame.opcode)
    assert Opcode.CLOSE not in frames  # 1011: a peer that does not answer gets no close handshake
    assert 29 <= trio.current_time() - start <= 32
    assert app.hub.connection_count == 0
    nursery.cancel_scope.cancel()


async def test_a_wrong_pong_does_not_count(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(ping_interval=20.0, ping_timeout=10.0), source=ScriptedSource())
    peer = await _connected(app)
    ping = await peer.until(Opcode.PING)
    start = trio.current_time()
    await peer.send(wsraw.frame(0xA, ping.payload + b"?"))
    assert await peer.at_eof()
    assert trio.current_time() - start <= 10.5  # dropped at ping_timeout, not at a later ping
    assert app.hub.connection_count == 0
    nursery.cancel_scope.cancel()


# ------------------------------------------------------------ close handshake


async def test_client_initiated_close_is_answered_with_the_same_code(app, autojump_clock):
    peer = await _connected(app)
    start = trio.current_time()
    await peer.send(close_frame(4000, b"done here"))
    answer = await peer.until(Opcode.CLOSE)
    assert answer.payload == (4000, "done here")
    assert await peer.at_eof()
    assert trio.current_time() - start < 0.5  # the server closes TCP at once, no timeout involved
    await trio.sleep(0.1)
    assert app.hub.connection_count == 0


async def test_client_close_through_a_library_ends_cleanly(app, autojump_clock):
    ws = await trio_websocket.connect_websocket_url(app._test_nursery, ws_url(app, "snapshot=0"))
    await receive_json(ws)
    await ws.aclose(1000, "bye")
    assert ws.closed.code == 1000
    await trio.sleep(0.1)
    assert app.hub.connection_count == 0


async def test_server_initiated_close_waits_for_the_answer_then_closes(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(wsraw.frame(0x2, b"\x00"))  # binary: the server closes with 1003
    close = await peer.until(Opcode.CLOSE)
    assert close.payload[0] == 1003
    start = trio.current_time()
    await peer.send(close_frame(1003))
    assert await peer.at_eof()
    assert trio.current_time() - start < 0.5  # closed on our answer, not on its timeout


async def test_server_initiated_close_gives_up_on_a_silent_peer(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(wsraw.frame(0x2, b"\x00"))
    await peer.until(Opcode.CLOSE)
    start = trio.current_time()
    assert await peer.at_eof()  # never answered: closed after close_timeout
    assert CLOSE_TIMEOUT - 0.1 <= trio.current_time() - start <= CLOSE_TIMEOUT + 0.5


async def test_shutdown_closes_every_client_with_1001(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(), source=ScriptedSource())
    peers = [await _connected(app) for _ in range(3)]
    app.hub.close_all((1001, "server shutting down"))
    for peer in peers:
        close = await peer.until(Opcode.CLOSE)
        assert close.payload == (1001, "server shutting down")
        await peer.send(close_frame(1001))
        assert await peer.at_eof()
    nursery.cancel_scope.cancel()


# ----------------------------------------------------- limits and fragments


async def test_binary_first_fragment_closes_1003(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(wsraw.frame(0x2, b"\x00" * 10, fin=False))  # the rest never comes
    assert (await peer.until(Opcode.CLOSE)).payload[0] == 1003


async def test_oversize_message_in_small_fragments_closes_1009(app, autojump_clock):
    peer = await _connected(app)
    chunk = b"x" * 4096
    frames = [wsraw.frame(0x1, chunk, fin=False)]
    frames += [wsraw.frame(0x0, chunk, fin=False) for _ in range(LIMIT // len(chunk))]
    await peer.send(*frames)  # one byte past the limit with the last fragment, still unfinished
    close = await peer.until(Opcode.CLOSE)
    assert close.payload[0] == 1009 and str(LIMIT) in close.payload[1]


async def test_the_limit_counts_bytes_not_characters(app, autojump_clock):
    peer = await _connected(app)
    pad = "é" * (LIMIT // 2)  # LIMIT characters' worth of bytes, half as many characters
    await peer.send(wsraw.frame(0x1, json.dumps({"type": "ping", "pad": pad}, ensure_ascii=False).encode()))
    assert (await peer.until(Opcode.CLOSE)).payload[0] == 1009


async def test_fragmented_message_with_a_ping_between_and_utf8_split(app, autojump_clock):
    peer = await _connected(app)
    text = json.dumps({"type": "subscribe", "types": ["new_event"], "repos": ["ünï/*"]},
                      ensure_ascii=False).encode()
    cut = text.index("ü".encode()) + 1  # inside the two bytes of ü
    await peer.send(wsraw.frame(0x1, text[:cut], fin=False),
                    wsraw.frame(0x9, b"between"),
                    wsraw.frame(0x0, text[cut:cut + 5], fin=False),
                    wsraw.frame(0x0, text[cut + 5:], fin=True))
    assert (await peer.until(Opcode.PONG)).payload == b"between"
    ack = await peer.next_json()
    assert ack["type"] == "subscribed" and ack["repos"] == ["ünï/*"]


async def test_several_messages_in_one_segment_are_all_answered(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(*(wsraw.frame(0x1, b'{"type": "ping"}') for _ in range(5)))
    assert [(await peer.next_json())["type"] for _ in range(5)] == ["pong"] * 5


async def test_invalid_utf8_closes_1007(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(wsraw.frame(0x1, b'{"type": "\xff"}'))
    close = await peer.until(Opcode.CLOSE)
    assert close.payload[0] == 1007
    start = trio.current_time()
    assert await peer.at_eof()
    assert trio.current_time() - start < 0.5  # no Close is awaited from a peer whose bytes are garbage


async def test_unmasked_client_frame_closes_1002(app, autojump_clock):
    peer = await _connected(app)
    await peer.send(b"\x81\x10" + b'{"type": "ping"}')  # a client must mask
    close = await peer.until(Opcode.CLOSE)
    assert close.payload[0] == 1002


# ------------------------------------------------------- peers that misbehave


@pytest.mark.parametrize("cut", ["after_handshake", "mid_frame"])
async def test_abrupt_disconnect_is_cleaned_up(app, cut, autojump_clock):
    calm = await _connected(app)
    peer = await _connected(app)
    if cut == "mid_frame":
        await peer.send(wsraw.frame(0x1, b'{"type": "ping", "pad": "' + b"x" * 500 + b'"}')[:100])
    await peer.stream.aclose()
    await trio.sleep(1)
    assert app.hub.connection_count == 1
    await calm.send(wsraw.frame(0x1, b'{"type": "ping"}'))
    assert (await calm.next_json())["type"] == "pong"


async def test_a_peer_that_never_reads_but_pings_is_dropped_and_others_go_on(nursery, autojump_clock):
    """A ping costs a pong, so pings count against the message budget (issue 14): a peer
    that floods pings and reads nothing is dropped with 1008 at once (it used to be found
    only by the keepalive, 30 s later, once its pongs had filled the socket), and nobody
    else waits."""
    app = await start_app(nursery, make_settings(ping_interval=20.0, ping_timeout=10.0, heartbeat_interval=1000.0,
                                                  metrics_interval=1000.0),
                          source=ScriptedSource())
    calm = await Peer.open(app.port)
    stalled = await _connected(app, receive_buffer=4096)  # its sender is idle from here on

    async def spam() -> None:
        try:
            while True:
                await stalled.send(*(wsraw.frame(0x9, b"p" * 125) for _ in range(100)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    nursery.start_soon(spam)

    async def answer_calm_pings() -> None:
        while (frame := await calm.next_frame()) is not None:
            if frame.opcode is Opcode.PING:
                await calm.send(wsraw.frame(0xA, frame.payload))

    nursery.start_soon(answer_calm_pings)
    await trio.sleep(1)
    assert app.hub.connection_count == 1  # well before ping_interval + ping_timeout
    await calm.send(wsraw.frame(0x1, b'{"type": "ping"}'))  # the calm one was never held up
    with trio.fail_after(1):
        while app.hub.clients and next(iter(app.hub.clients.values())).frames_sent < 2:
            await trio.sleep(0.01)
    nursery.cancel_scope.cancel()


async def test_direct_and_batched_writes_reach_a_real_client(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event")) as ws:
            await receive_json(ws)
            await trio.sleep(1)  # the sender is idle now: the next frames go straight to the socket
            client = next(iter(app.hub.clients.values()))
            assert client.idle
            await source.emit(*(source.event("org/a") for _ in range(200)))
            seqs = [(await receive_json(ws))["seq"] for _ in range(200)]
            assert seqs == sorted(seqs) and len(set(seqs)) == 200
            assert client.frames_sent >= 201
        nursery.cancel_scope.cancel()


async def test_ping_from_a_library_client_mid_stream(app, autojump_clock):
    ws = await trio_websocket.connect_websocket_url(app._test_nursery, ws_url(app, "snapshot=0"))
    await receive_json(ws)
    with trio.fail_after(5):
        await ws.ping(b"lib")  # returns once the server's pong arrives
    await ws.send_message('{"type": "ping"}')
    await receive_until(ws, lambda m: m["type"] == "pong")
    await ws.aclose()
