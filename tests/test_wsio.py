"""The one place osintd relies on trio-websocket's internals: fail loudly if they change."""

from __future__ import annotations

import json

import trio
import trio_websocket
import wsproto
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol

from conftest import ScriptedSource, receive_json, start_app, ws_url
from osintd import wsio


def test_pinned_trio_websocket_version_is_the_one_installed():
    version = trio_websocket.__version__
    assert version.startswith(wsio.SUPPORTED_TRIO_WEBSOCKET), (
        f"trio-websocket {version}: re-check osintd/wsio.py against its _stream_lock and _wsproto")


async def test_the_internals_wsio_uses_still_exist():
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        ws = trio_websocket.WebSocketConnection(left, wsproto.WSConnection(wsproto.ConnectionType.SERVER))
        assert isinstance(ws._stream_lock, trio.StrictFIFOLock)
        assert isinstance(ws._wsproto, wsproto.WSConnection)
        assert ws._wsproto.state is ConnectionState.CONNECTING
        nursery.cancel_scope.cancel()


def test_frame_text_is_what_a_client_parses_back():
    text = json.dumps({"type": "new_event", "title": "ünïcode ✓" * 50})
    frame = wsio.frame_text(text)
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(frame)
    parsed = list(reader.received_frames())
    assert len(parsed) == 1 and parsed[0].payload == text and parsed[0].message_finished
    assert frame[0] == 0x81 and not frame[1] & 0x80  # FIN + text, unmasked


async def test_direct_and_batched_writes_reach_a_real_client(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event")) as ws:
            await receive_json(ws)
            await trio.sleep(1)  # the sender is idle now: the next frames go straight to the socket
            client = next(iter(app.hub.clients.values()))
            assert client.idle and client.writer is not None and client.writer.open
            await source.emit(*(source.event("org/a") for _ in range(200)))
            seqs = [(await receive_json(ws))["seq"] for _ in range(200)]
            assert seqs == sorted(seqs) and len(set(seqs)) == 200
            assert client.frames_sent >= 201
        nursery.cancel_scope.cancel()
