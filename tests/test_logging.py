"""Logs as an operator reads them: --log-format json (one object per line) and the
access log (one line per HTTP answer and per WebSocket session end), from a spawned
daemon talked to by real clients."""

from __future__ import annotations

import datetime as dt
import json
import re

import trio
import trio_websocket

from conftest import spawn_daemon

SECRET = "s3cret-token-never-logged"


async def _raw_http(port: int, request: bytes) -> tuple[str, int, bytes]:
    """Send ``request`` on a fresh connection; (our address, bytes received, the answer)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    host = stream.socket.getsockname()[0]
    await stream.send_all(request)
    answer = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await stream.aclose()
    return host, len(answer), answer


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be one JSON object


async def test_json_logs_with_access_lines_for_http_and_websocket_sessions(tmp_path):
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "20",
                          env={"OSINTD_LOG_FORMAT": "json", "GITHUB_TOKEN": SECRET, "OSINTD_NO_SUCH_OPTION": "1"})
    try:
        health_peer, health_bytes, health = await _raw_http(
            daemon.port, f"GET /health?token={SECRET} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        assert health.startswith(b"HTTP/1.1 200 ")
        missing_peer, missing_bytes, missing = await _raw_http(
            daemon.port, b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert missing.startswith(b"HTTP/1.1 404 ")
        async with trio_websocket.open_websocket_url(f"{daemon.url}?token={SECRET}&snapshot=0") as ws:
            hello = json.loads(await ws.get_message())
            await ws.send_message('{"type": "ping"}')
            assert json.loads(await ws.get_message())["type"] == "pong"
            ws_peer = str(ws.local.address)
        async with trio_websocket.open_websocket_url(daemon.url) as binary:
            dropped = json.loads(await binary.get_message())
            await binary.send_message(b"\x00binary")
            with trio.fail_after(5):
                try:
                    while True:
                        await binary.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    assert closed.reason.code == 1003
        await trio.sleep(0.5)  # the server logs a session's end once its close handshake is over
    finally:
        assert daemon.stop() == 0
    text = daemon.log()
    assert SECRET not in text and "token=" not in text
    lines = _json_lines(text)
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        when = dt.datetime.fromisoformat(line["time"])
        assert when.utcoffset() == dt.timedelta(0) and abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=5)
        assert line["level"] in ("debug", "info", "warning", "error", "critical")
    assert any(line["logger"] == "osintd.app" and line["message"].startswith("serving ws://") for line in lines)
    assert any(line["level"] == "warning" and "OSINTD_NO_SUCH_OPTION" in line["message"] for line in lines)

    access = [line for line in lines if line["logger"] == "osintd.access"]
    health_line = next(line for line in access if line["path"] == "/health")
    assert (health_line["peer"], health_line["method"], health_line["status"], health_line["bytes_sent"]) == \
        (health_peer, "GET", 200, health_bytes)
    assert 0 <= health_line["duration_ms"] < 5000
    missing_line = next(line for line in access if line["path"] == "/nowhere")
    assert (missing_line["peer"], missing_line["status"], missing_line["bytes_sent"]) == (missing_peer, 404, missing_bytes)

    sessions = {line["client_id"]: line for line in access if line.get("status") == 101}
    polite = sessions[hello["client_id"]]
    assert (polite["peer"], polite["path"], polite["close_code"], polite["closed_by"]) == \
        (ws_peer, "/ws/live-updates", 1000, "client")
    assert polite["bytes_received"] > len('{"type": "ping"}') and polite["bytes_sent"] > 129  # 101 answer + frames
    assert polite["duration_ms"] >= 0
    binary_line = sessions[dropped["client_id"]]
    assert (binary_line["close_code"], binary_line["closed_by"]) == (1003, "server")
    connected = next(line for line in lines if line["message"].startswith(f"client {hello['client_id']} connected"))
    assert (connected["client_id"], connected["peer"]) == (hello["client_id"], ws_peer)


async def test_text_access_lines_by_default(tmp_path):
    daemon = spawn_daemon(tmp_path, "--demo")
    try:
        peer, size, answer = await _raw_http(
            daemon.port, b"GET /api/v1/repos?token=abc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")
        _, _, refused = await _raw_http(
            daemon.port, b"GET /ws/live-updates?token=abc HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\n"
                         b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 403 ")
    finally:
        assert daemon.stop() == 0
    text = daemon.log()
    assert re.search(rf"^\d{{4}}-\S+ \S+ INFO osintd\.access: {re.escape(peer)} GET /api/v1/repos 200 "
                     rf"\d+\.\d ms {size} B$", text, re.M), text
    assert re.search(r"INFO osintd\.access: 127\.0\.0\.1 GET /ws/live-updates 403 \d+\.\d ms \d+ B$", text, re.M)
    assert "token" not in text
    assert not text.lstrip().startswith("{")
