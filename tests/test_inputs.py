"""Bad input of every kind gets its answer, and the server stays up for everyone else."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket

import httpx
import orjson
import pytest
import trio
import trio_websocket

import wsraw
from conftest import ScriptedSource, make_settings, receive_json, receive_until, start_app, ws_url
from osintd.server import ACCEPT_BURST


async def _health(app) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{app.port}/health")).status_code


async def _open(app, query: str = "snapshot=0"):
    ws = await trio_websocket.connect_websocket_url(app._test_nursery, ws_url(app, query))
    assert (await receive_json(ws))["type"] == "connection"
    return ws




@pytest.mark.parametrize("text, code", [
    ("{not json", "INVALID_JSON"),
    ('"just a string"', "INVALID_MESSAGE"),
    ('{"no": "type"}', "INVALID_MESSAGE"),
    ('{"type": "launch_rockets"}', "UNKNOWN_TYPE"),
    ('{"type": "resume", "since": "five", "epoch": "e"}', "INVALID_MESSAGE"),
    ('{"type": "subscribe", "types": ["new_event", "gossip"]}', "INVALID_MESSAGE"),
    ('{"type": "subscribe", "repos": "openai/*"}', "INVALID_MESSAGE"),
    # Issue 14: nested 10,000 deep, it closed the connection (a RecursionError) instead.
    ('{"type": "ping", "x": ' + "[" * 10_000 + "]" * 10_000 + "}", "INVALID_JSON"),
    ("[" * 30_000, "INVALID_JSON"),
])
async def test_client_mistakes_get_an_error_and_the_connection_stays_open(app, text, code, autojump_clock):
    ws = await _open(app)
    await ws.send_message(text)
    error = await receive_json(ws)
    assert error["type"] == "error" and error["error_code"] == code and error["severity"] == "warning"
    assert error["message"]
    await ws.send_message('{"type": "ping"}')
    assert (await receive_json(ws))["type"] == "pong"
    await ws.aclose()
    assert await _health(app) == 200


async def _closed_with(ws) -> tuple[int, str | None]:
    with trio.fail_after(30):
        try:
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed as closed:
            return closed.reason.code, closed.reason.reason


async def test_binary_frame_closes_1003(app, autojump_clock):
    ws = await _open(app)
    await ws.send_message(b"\x00\x01")
    assert (await _closed_with(ws))[0] == 1003
    assert await _health(app) == 200


async def test_oversized_frame_closes_1009(app, autojump_clock):
    ws = await _open(app)
    await ws.send_message("x" * (64 * 1024 + 1))
    assert (await _closed_with(ws))[0] == 1009
    assert await _health(app) == 200


async def test_a_frame_at_the_limit_is_still_answered(app, autojump_clock):
    ws = await _open(app)
    await ws.send_message(json.dumps({"type": "ping", "pad": "x" * (64 * 1024 - 40)}))
    assert (await receive_json(ws))["type"] == "pong"


async def test_flood_closes_1008_and_others_keep_going(app, autojump_clock):
    calm = await _open(app)
    ws = await _open(app)
    for _ in range(200):
        try:
            await ws.send_message('{"type": "ping"}')
        except trio_websocket.ConnectionClosed:
            break
    code, reason = await _closed_with(ws)
    assert code == 1008 and "too many messages" in reason
    await calm.send_message('{"type": "ping"}')
    await receive_until(calm, lambda m: m["type"] == "pong")
    assert await _health(app) == 200


async def test_a_ping_frame_flood_counts_against_the_message_budget(app, autojump_clock):
    """Issue 14: ping frames were unlimited (12,400/s from one client took a core): each
    costs a pong, so each counts like a message, and a flood ends with 1008."""
    calm = await _open(app)
    stream = await wsraw.open_raw(app.port, path="/ws/live-updates?snapshot=0&types=heartbeat")
    try:
        await stream.send_all(b"".join(wsraw.frame(0x9, b"p") for _ in range(500)))
    except trio.BrokenResourceError:
        pass  # the server may close before the flood is all sent: its close code says why
    assert wsraw.close_code(await wsraw.read_all(stream)) == 1008
    await calm.send_message('{"type": "ping"}')
    await receive_until(calm, lambda m: m["type"] == "pong")
    assert await _health(app) == 200


async def test_ping_after_server_close_is_contained(app, autojump_clock):
    """trio-websocket #184: a ping arriving while the server closes raised in its
    reader task and took down a stock server.  Here it ends that connection only."""
    calm = await _open(app)
    for _ in range(5):
        stream = await wsraw.open_raw(app.port)
        # A binary frame makes the server close (1003); the pings race the close.
        await stream.send_all(wsraw.frame(0x2, b"\x00") + b"".join(wsraw.frame(0x9, b"p%d" % i) for i in range(20)))
        data = await wsraw.read_all(stream)
        assert wsraw.close_code(data) == 1003
    await calm.send_message('{"type": "ping"}')
    await receive_until(calm, lambda m: m["type"] == "pong")
    assert await _health(app) == 200


async def test_dead_peer_is_found_by_ping_and_cleaned_up(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(ping_interval=20.0, ping_timeout=10.0), source=ScriptedSource())
    stream = await wsraw.open_raw(app.port)  # completes the handshake, then never reads or answers
    await trio.sleep(1)
    assert app.hub.connection_count == 1
    await trio.sleep(40)
    assert app.hub.connection_count == 0
    nursery.cancel_scope.cancel()


async def test_handshake_timeout_closes_silent_connections(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(handshake_timeout=10.0), source=ScriptedSource())
    stream = await wsraw.connect(app.port)
    await stream.send_all(b"GET /ws/live-updates HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing
    with trio.fail_after(11):
        assert await wsraw.read_all(stream) == b""
    nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ HTTP side


async def _get(app, path: str, method: str = "GET", **kwargs) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.request(method, f"http://127.0.0.1:{app.port}{path}", **kwargs)


async def test_health_endpoints_and_stats(app, autojump_clock):
    health = await _get(app, "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    detail = (await _get(app, "/api/v1/health")).json()
    assert detail["components"]["api"] == "operational" and detail["epoch"] == app.hub.epoch
    ws = await _open(app)
    stats = (await _get(app, "/ws/stats")).json()
    assert stats["connections"] == 1 and stats["clients"][0]["queued"] == 0
    assert {"messages_by_type", "slow_consumers_dropped", "queue_depths", "frames_delivered"} <= set(stats)
    await ws.aclose()


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nothing/here", 404),
    ("POST", "/health", 405),
    ("DELETE", "/ws/stats", 405),
    ("GET", "/ws/live-updates", 426),
])
async def test_http_errors_are_json(app, method, path, status, autojump_clock):
    response = await _get(app, path, method)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] and body["message"]


async def test_a_body_no_route_takes_is_refused_before_it_is_read(app, autojump_clock):
    response = await _get(app, "/health", "POST", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


async def test_malformed_request_is_400(app, autojump_clock):
    stream = await wsraw.connect(app.port)
    await stream.send_all(b"THIS IS NOT HTTP\r\n\r\n")
    answer = await wsraw.read_all(stream)
    assert answer.startswith(b"HTTP/1.1 400") and b'"bad_request"' in answer
    assert await _health(app) == 200


async def _refused_status(app, query: str = "", **headers: str) -> int:
    """The HTTP status a raw upgrade request gets (101 when accepted)."""
    stream = await wsraw.connect(app.port)
    path = "/ws/live-updates" + (f"?{query}" if query else "")
    await stream.send_all(wsraw.handshake(app.port, path=path, headers=headers))
    head = b""
    while b"\r\n" not in head:
        head += await stream.receive_some(1024)
    await stream.aclose()
    return int(head.split()[1])


async def test_foreign_origin_403_own_origin_and_no_origin_pass(app, autojump_clock):
    assert await _refused_status(app, Origin="http://evil.example") == 403
    assert await _refused_status(app, Origin=f"http://localhost:{app.port}.evil.example") == 403
    for origin in (f"http://localhost:{app.port}", f"http://127.0.0.1:{app.port}", None):
        headers = [("Origin", origin)] if origin else []
        ws = await trio_websocket.connect_websocket_url(app._test_nursery, ws_url(app), extra_headers=headers)
        assert (await receive_json(ws))["type"] == "connection"
        await ws.aclose()


async def test_allowed_origin_flag_admits_that_origin(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(allowed_origins=("https://dash.example",)), source=ScriptedSource())
    ws = await trio_websocket.connect_websocket_url(nursery, ws_url(app),
                                                    extra_headers=[("Origin", "https://dash.example")])
    assert (await receive_json(ws))["type"] == "connection"
    nursery.cancel_scope.cancel()


async def test_foreign_host_is_421(app, autojump_clock):
    response = await _get(app, "/health", headers={"Host": "attacker.example"})
    assert response.status_code == 421 and response.json()["error"] == "misdirected_request"
    stream = await wsraw.connect(app.port)
    await stream.send_all(wsraw.handshake(app.port).replace(b"Host: 127.0.0.1", b"Host: rebind.example"))
    assert (await wsraw.read_all(stream)).startswith(b"HTTP/1.1 421")


async def test_max_clients_refuses_the_next_with_503(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(max_clients=2), source=ScriptedSource())
    first = await trio_websocket.connect_websocket_url(nursery, ws_url(app))
    second = await trio_websocket.connect_websocket_url(nursery, ws_url(app))
    assert await _refused_status(app) == 503
    await first.aclose()
    await trio.sleep(1)
    third = await trio_websocket.connect_websocket_url(nursery, ws_url(app))
    assert (await receive_json(third))["type"] == "connection"
    nursery.cancel_scope.cancel()


async def test_bad_query_is_400(app, autojump_clock):
    for query in ("since=abc&epoch=x", "since=3", "types=new_event,gossip", "snapshot=maybe"):
        assert await _refused_status(app, query) == 400, query
    assert await _refused_status(app, "types=new_event&repos=openai/*") == 101


async def test_a_backlog_of_connections_is_taken_in_a_few_turns_of_the_loop(app):
    """trio's serve_listeners accepts one connection per turn of the event loop; at
    saturation a turn is long, and thousands of clients took minutes to connect."""
    count = 300
    before = app.server.connections_accepted
    # Connected while the loop is held by this test: all of them wait in the listen backlog.
    sockets = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(count)]
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(count_turns)
                while app.server.connections_accepted < before + count:
                    await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()
    finally:
        for sock in sockets:
            sock.close()
    assert turns <= count // ACCEPT_BURST + 10, f"{turns} turns of the loop to accept {count} connections"


# ------------------------------------------------------- issue 14: strict HTTP and WebSocket


async def _answer_to(app, head: bytes) -> bytes:
    stream = await wsraw.connect(app.port)
    await stream.send_all(head)
    return await wsraw.read_all(stream)  # to EOF: every refusal closes the connection


async def test_bad_since_and_epoch_shapes_are_400_with_an_answer(app, autojump_clock):
    """``since=²`` (a Unicode digit) and a 5,000-digit since dropped the connection unanswered."""
    for query in ("since=%C2%B2&epoch=e", f"since={'9' * 5000}&epoch=e", "since=1&epoch=" + "%F0%9F%92%A5",
                  "since=1&epoch=" + "e" * 100):
        assert await _refused_status(app, query) == 400, query
    assert await _refused_status(app, f"since=0&epoch={app.hub.epoch}") == 101


async def test_a_malformed_websocket_key_is_400(app, autojump_clock):
    for key in ("abc", "!!!!!!!!!!!!!!!!!!!!!!!!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"):
        head = re.sub(rb"Sec-WebSocket-Key: [^\r]*", b"Sec-WebSocket-Key: " + key.encode(), wsraw.handshake(app.port))
        assert key.encode() in head
        answer = await _answer_to(app, head)
        assert answer.startswith(b"HTTP/1.1 400") and b"Sec-WebSocket-Key" in answer, (key, answer[:200])


async def test_strict_http_heads(app, autojump_clock):
    port = app.port
    cases = [
        (f"GET /health HTTP/9.9\r\nHost: 127.0.0.1:{port}\r\n\r\n", b"505"),
        ("GET /health HTTP/1.1\r\nHost: 127.0.0.1:abc\r\n\r\n", b"400"),
        ("GET /health HTTP/1.1\r\nHost: [::1]:99999\r\n\r\n", b"400"),
        (f"POST /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 5\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        # A 40 KB head in one piece (h11 bounds only heads that arrive incomplete).
        (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {'a' * 40_000}\r\n\r\n", b"431"),
    ]
    for head, status in cases:
        answer = await _answer_to(app, head.encode())
        assert answer.startswith(b"HTTP/1.1 " + status), (head[:80], answer[:200])
        assert b"Connection: close" in answer or b"connection: close" in answer.lower()
    ok = await _answer_to(app, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    assert ok.startswith(b"HTTP/1.1 200")
    assert await _health(app) == 200


async def test_stalled_request_bodies_are_bounded_in_number_and_time(nursery, autojump_clock):
    """Issue 14, finding 2: only the head had a time limit, so 1,100 stalled bodies exhausted
    the descriptors.  At most MAX_UNFINISHED_BODIES bodies arrive at once (the next request
    with a body gets 503), each within BODY_TIMEOUT (then 408 and the connection closes), and
    requests without a body are answered all along."""
    from osintd.server import BODY_TIMEOUT, MAX_UNFINISHED_BODIES

    app = await start_app(nursery, make_settings(webhook_secret=b"s"))
    # A delivery whose signature header is well formed: its body is read before it is checked.
    head = (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n"
            "Content-Length: 1000\r\n\r\n{").encode()
    stalled = []
    for _ in range(MAX_UNFINISHED_BODIES):
        stream = await wsraw.connect(app.port)
        await stream.send_all(head)
        stalled.append(stream)
    await trio.sleep(1)
    one_more = await _answer_to(app, head)
    assert one_more.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in one_more
    assert await _health(app) == 200  # no body: answered
    started = trio.current_time()
    answers = [await wsraw.read_all(stream) for stream in stalled]  # each ends when the server closes it
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[0][:100]
    assert trio.current_time() - started <= BODY_TIMEOUT
    # Their places are free again: a whole request with a body is answered, not refused.
    whole = head.replace(b"Content-Length: 1000", b"Content-Length: 2") + b"}"
    answer = await _answer_to(app, whole)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:100]  # read whole, then its signature checked


def _signed_head(port: int, body: bytes, secret: bytes, length: int | None = None) -> bytes:
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: watch\r\nX-GitHub-Delivery: d-{len(body)}\r\nX-Hub-Signature-256: sha256={signature}\r\n"
            f"Connection: close\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n").encode()


async def test_bodies_arriving_at_once_are_bounded_in_bytes(nursery, autojump_clock, monkeypatch):
    """Issue 14, finding 2: 20 stalled 20 MiB bodies held 400 MiB.  Together the bodies still
    arriving hold at most MAX_BUFFERED_BODY_BYTES: the request whose chunk would pass it gets
    503 and is closed, the others finish, and the budget is free again after them."""
    monkeypatch.setattr("osintd.server.MAX_BUFFERED_BODY_BYTES", 1_000_000)
    app = await start_app(nursery, make_settings(webhook_secret=b"s"))
    body = orjson.dumps({"action": "started", "repository": {"full_name": "o/r", "id": 1},
                         "sender": {"login": "u", "id": 2}, "pad": "x" * 399_000})
    head = _signed_head(app.port, body, b"s")
    holding = []
    for _ in range(2):  # 2 × 200 KB, each waiting for the rest of its body
        stream = await wsraw.connect(app.port)
        await stream.send_all(head + body[:200_000])
        holding.append(stream)
    await trio.sleep(0.5)
    third = await wsraw.connect(app.port)
    await third.send_all(head + body)  # 400 KB would make it 800 KB: fits
    assert (await wsraw.read_all(third)).startswith(b"HTTP/1.1 202")
    fourth = await wsraw.connect(app.port)
    await fourth.send_all(_signed_head(app.port, body, b"s", 700_000) + b" " * 700_000)  # 400 + 700 KB: refused
    answer = await wsraw.read_all(fourth)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in answer, answer[:200]
    for stream in holding:
        await stream.send_all(body[200_000:])
    answers = [await wsraw.read_all(stream) for stream in holding]
    # The same delivery as the third's: answered as a redelivery already seen.
    assert [answer[:12] for answer in answers] == [b"HTTP/1.1 200"] * 2, [a[:100] for a in answers]
    assert app.server._buffered_body_bytes == 0  # nothing is left counted after the bodies ended
    assert await _health(app) == 200


async def test_a_signature_is_checked_over_a_body_that_streams_in_pieces(nursery, autojump_clock):
    """The HMAC is fed chunk by chunk as the body arrives; a body in 1,000 pieces is
    accepted with its right signature and refused when one byte differs from what was signed."""
    app = await start_app(nursery, make_settings(webhook_secret=b"s"))
    body = orjson.dumps({"action": "started", "repository": {"full_name": "o/r", "id": 1},
                         "sender": {"login": "u", "id": 2}, "pad": "y" * 20_000})
    for sent, status in ((body, b"202"), (body.replace(b"yyy", b"yyz", 1), b"401")):
        stream = await wsraw.connect(app.port)
        await stream.send_all(_signed_head(app.port, body, b"s"))
        for start in range(0, len(sent), 21):
            await stream.send_all(sent[start:start + 21])
            if start % 2100 == 0:
                await trio.sleep(0.01)  # many separate reads on the server's side
        answer = await wsraw.read_all(stream)
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
