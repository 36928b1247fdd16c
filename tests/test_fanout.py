"""Fan-out: slow clients are dropped without stalling anyone; resume has no gap and no duplicate."""

from __future__ import annotations

import json

import trio
import trio_websocket

import wsraw
from conftest import ScriptedSource, make_settings, receive_json, start_app, ws_url


async def _read_events(ws, count: int) -> list[int]:
    seqs = []
    while len(seqs) < count:
        message = await receive_json(ws)
        if message["type"] == "new_event":
            seqs.append(message["seq"])
    return seqs


async def test_stalled_client_dropped_while_100_others_get_everything_in_order(autojump_clock):
    source = ScriptedSource()
    total = 600
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(client_queue=16, send_timeout=5.0), source=source)
        stalled = await wsraw.open_raw(app.port, receive_buffer=4096)
        results: dict[int, list[int]] = {}

        async def fast_client(index: int, ready: trio.Event) -> None:
            async with trio_websocket.open_websocket_url(ws_url(app, "types=new_event&snapshot=0"),
                                                         message_queue_size=64) as ws:
                await receive_json(ws)  # connection
                ready.set()
                results[index] = await _read_events(ws, total)

        async with trio.open_nursery() as clients:
            for index in range(100):
                ready = trio.Event()
                clients.start_soon(fast_client, index, ready)
                await ready.wait()
            # In small bursts, so that fast clients never fall 16 behind.
            for start in range(0, total, 8):
                await source.emit(*(source.event(f"org/r{i % 7}") for i in range(start, start + 8)))
                await trio.sleep(0.05)
        assert app.hub.stats.slow_consumers_dropped == 1
        assert app.hub.connection_count == 0  # the 100 have closed, the stalled one was dropped
        # The stalled peer finds its connection closed (after what was already on the wire).
        with trio.fail_after(30):
            leftover = await wsraw.read_all(stalled)
        assert wsraw.close_code(leftover) in (None, 1013)
        nursery.cancel_scope.cancel()
    assert len(results) == 100
    expected = results[0]
    assert expected == sorted(expected) and len(set(expected)) == total
    assert all(seqs == expected for seqs in results.values())


async def test_slow_consumer_gets_1013_when_the_close_can_be_delivered(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(client_queue=4), source=source)
        stalled = await wsraw.open_raw(app.port, receive_buffer=4096)
        for _ in range(200):  # until the socket buffers are full and the queue of four overflows
            await source.emit(*(source.event("org/a", title="x" * 2000) for _ in range(20)))
            await trio.sleep(0.01)
            if app.hub.stats.slow_consumers_dropped:
                break
        assert app.hub.stats.slow_consumers_dropped == 1
        # Reading again lets the write in progress finish; then the close frame follows it.
        with trio.fail_after(30):
            data = await wsraw.read_all(stalled)
        nursery.cancel_scope.cancel()
    assert wsraw.close_code(data) == 1013 and b"slow consumer" in data[-64:]


async def _connection_seq(ws) -> dict:
    message = await receive_json(ws)
    assert message["type"] == "connection"
    return message


async def test_resume_after_disconnect_yields_every_missed_message_once(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0")) as witness:
            hello = await _connection_seq(witness)
            witness_seqs: list[int] = []

            async def watch() -> None:
                try:
                    while True:
                        message = await receive_json(witness)
                        if "seq" in message and message["type"] != "heartbeat":
                            witness_seqs.append(message["seq"])
                except trio_websocket.ConnectionClosed:
                    pass

            nursery.start_soon(watch)
            mine: list[int] = []
            async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0")) as ws:
                await _connection_seq(ws)
                await source.emit(*(source.event("org/a") for _ in range(5)))
                mine += await _read_events(ws, 5)
            last = mine[-1]
            # While we are away: events, rankings, summaries …
            await source.emit(*(source.event(f"org/{i % 3}") for i in range(40)))
            await trio.sleep(3)
            async with trio_websocket.open_websocket_url(
                    ws_url(app, f"since={last}&epoch={hello['epoch']}")) as ws:
                await _connection_seq(ws)
                resumed = await receive_json(ws)
                assert resumed["type"] == "resumed" and resumed["recovered"] is True
                replay = [(await receive_json(ws))["seq"] for _ in range(resumed["replayed"])]
                await source.emit(source.event("org/after"))
                after = await _read_events(ws, 1)
            await trio.sleep(3)
        nursery.cancel_scope.cancel()
    combined = [s for s in mine if s > hello["seq"]] + replay + after
    assert combined == witness_seqs[:len(combined)]
    assert len(combined) == len(set(combined)) and replay and replay[0] == last + 1


async def test_resume_by_message_before_data_recovers(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        await source.emit(*(source.event("org/a") for _ in range(3)))
        await trio.sleep(2)
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0")) as ws:
            hello = await _connection_seq(ws)
            await ws.send_message(json.dumps({"type": "resume", "since": 1, "epoch": hello["epoch"]}))
            resumed = await receive_json(ws)
            assert resumed == {**resumed, "type": "resumed", "recovered": True, "since": 1,
                               "replayed": hello["seq"] - 1}
            replay = [(await receive_json(ws))["seq"] for _ in range(resumed["replayed"])]
            assert replay == list(range(2, hello["seq"] + 1))
        nursery.cancel_scope.cancel()


async def test_resume_refused_with_snapshot_for_wrong_epoch_or_lost_history(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(replay_capacity=5), source=source)
        await source.emit(*(source.event("org/a") for _ in range(20)))
        await trio.sleep(2)
        for query, why in ((f"since=1&epoch={app.hub.epoch}", "no longer kept"),
                           ("since=1&epoch=elsewhere", "is not the current epoch"),
                           (f"since={app.hub.seq + 50}&epoch={app.hub.epoch}", "ahead of")):
            async with trio_websocket.open_websocket_url(ws_url(app, query)) as ws:
                await _connection_seq(ws)
                resumed = await receive_json(ws)
                assert resumed["recovered"] is False and why in resumed["reason"]
                assert (await receive_json(ws))["type"] == "snapshot"
        nursery.cancel_scope.cancel()


async def test_subscribe_filters_by_type_and_repo_glob(autojump_clock):
    source = ScriptedSource()
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, source=source)
        async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0")) as ws, \
                trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event&repos=openai/*")) as q:
            await receive_json(ws)
            await receive_json(q)
            await ws.send_message(json.dumps({"type": "subscribe", "types": ["new_event"], "repos": ["langchain-ai/*"]}))
            ack = await receive_json(ws)
            assert ack["type"] == "subscribed" and ack["repos"] == ["langchain-ai/*"]
            await source.emit(source.event("openai/openai-python"), source.event("langchain-ai/langchain"),
                              source.event("other/x"), source.event("openai/whisper"))
            assert [(await receive_json(q))["repo_full_name"] for _ in range(2)] == [
                "openai/openai-python", "openai/whisper"]
            got = await receive_json(ws)
            assert got["repo_full_name"] == "langchain-ai/langchain"
            with trio.move_on_after(5):
                extra = await receive_json(ws)
                raise AssertionError(f"filtered client got {extra}")
        nursery.cancel_scope.cancel()
