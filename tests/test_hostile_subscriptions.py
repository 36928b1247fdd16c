"""Issue 14, finding 1: one subscription must not freeze the server.

``{"type": "subscribe", "repos": ["[[[[…"]}`` with 15,000 ``[`` froze every client,
``/health`` and the pipeline for 10 s (``fnmatch.translate`` is quadratic in unclosed
brackets, on the event loop); ``?repos=`` on the URL did the same before the handshake;
ten clients holding 9,000 globs each kept a core busy.  Against a running daemon with a
control client connected: globs over the limits are refused at once, globs at the limits
cost nothing noticeable, the control client never goes a second without a message and
``/health`` answers within a second.  Finding 2 (stalled bodies) is checked the same way
at the end.
"""

from __future__ import annotations

import fnmatch
import json
import random

import httpx
import pytest
import trio
import trio_websocket

from conftest import spawn_daemon
from hostile import health_times, watch
from osintd.globs import MAX_GLOB_LENGTH, MAX_GLOBS, Glob


@pytest.fixture
def daemon(tmp_path):
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "40")
    yield daemon
    daemon.stop()


async def _answer(url: str, repos: list[str]) -> dict:
    async with trio_websocket.open_websocket_url(url + "?snapshot=0&types=heartbeat") as ws:
        await ws.get_message()
        await ws.send_message(json.dumps({"type": "subscribe", "repos": repos}))
        with trio.fail_after(5):
            while True:
                message = json.loads(await ws.get_message())
                if message["type"] in ("subscribed", "error"):
                    return message


async def test_hostile_globs_are_refused_or_cheap_and_nothing_stalls(daemon):
    gaps: list[float] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, daemon.url, gaps, stop)
        await trio.sleep(1.0)
        async with httpx.AsyncClient(timeout=5) as http:
            # One glob of 15,000 and one of 60,000 "[": refused, with what to do.
            for length in (15_000, 60_000):
                answer = await _answer(daemon.url, ["[" * length])
                assert answer["type"] == "error" and answer["error_code"] == "INVALID_MESSAGE"
                assert f"at most {MAX_GLOB_LENGTH}" in answer["message"]
            # The same on the URL: refused before the handshake completes (15,000 "[" make a
            # head over 16 KiB: 431; 1,000 fit in one: 400 for the glob).
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            refused = await http.get(f"{daemon.http}/ws/live-updates", params={"repos": "[" * 15_000},
                                     headers=upgrade)
            assert refused.status_code == 431
            refused = await http.get(f"{daemon.http}/ws/live-updates", params={"repos": "[" * 1_000},
                                     headers=upgrade)
            assert refused.status_code == 400 and f"at most {MAX_GLOB_LENGTH}" in refused.text
            # Ten clients asking for 9,000 globs each: refused.
            async with trio.open_nursery() as attackers:
                answers: list[dict] = []

                async def many() -> None:
                    answers.append(await _answer(daemon.url, ["a*"] * 9_000))  # 45 KB: under the size limit
                for _ in range(10):
                    attackers.start_soon(many)
            assert [a["type"] for a in answers] == ["error"] * 10
            assert all(f"at most {MAX_GLOBS}" in a["message"] for a in answers)
            # At the limits, the nastiest globs allowed: accepted, and cheap.
            nasty = [("*[?" * 70)[:MAX_GLOB_LENGTH] for _ in range(MAX_GLOBS)]
            async with trio.open_nursery() as holders:
                held: list[dict] = []

                async def hold() -> None:
                    held.append(await _answer(daemon.url, nasty))
                for _ in range(10):
                    holders.start_soon(hold)
            assert [a["type"] for a in held] == ["subscribed"] * 10
            times = await health_times(http, f"{daemon.http}/api/v1/health", 0.2)
        await trio.sleep(1.0)
        stop.set()
    assert max(gaps) < 1.0, gaps
    assert max(times) < 1.0, times


def test_globs_match_as_fnmatch_does_without_brackets():
    """``*`` and ``?`` mean what they mean to fnmatch; ``[`` is itself (fnmatch's classes
    are not supported: repository names have no brackets)."""
    rng = random.Random(7)
    for _ in range(20_000):
        glob = "".join(rng.choice("ab*?/.") for _ in range(rng.randint(0, 9)))
        name = "".join(rng.choice("ab/.") for _ in range(rng.randint(0, 9)))
        assert Glob.compile(glob).matches(name) == fnmatch.fnmatchcase(name, glob), (glob, name)
    assert Glob.compile("org/[ab]").matches("org/[ab]") and not Glob.compile("org/[ab]").matches("org/a")
    assert Glob.compile("openai/*").matches("openai/openai-python")


async def test_stalled_bodies_do_not_silence_a_running_daemon(tmp_path):
    """Issue 14, finding 2, in the acceptance's form: a running daemon with a control client
    connected; 64 webhook bodies stalled half way (the most that may arrive at once) and one
    more (503): the control client never goes a second without a message and /health
    answers within a second."""
    from osintd.server import MAX_UNFINISHED_BODIES

    secret = tmp_path / "secret"
    secret.write_text("s")
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "40", "--webhook-secret-file", str(secret))
    try:
        gaps: list[float] = []
        stop = trio.Event()
        head = (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nX-GitHub-Event: push\r\n"
                f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: 1000000\r\n\r\n{{").encode()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, daemon.url, gaps, stop)
            await trio.sleep(1.0)
            stalled = []
            for _ in range(MAX_UNFINISHED_BODIES):
                stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
                await stream.send_all(head)
                stalled.append(stream)
            await trio.sleep(0.5)
            one_more = await trio.open_tcp_stream("127.0.0.1", daemon.port)
            await one_more.send_all(head)
            with trio.fail_after(5):
                answer = await one_more.receive_some(4096)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
            async with httpx.AsyncClient(timeout=5) as http:
                times = await health_times(http, f"{daemon.http}/health", 0.3)
            await trio.sleep(1.0)
            stop.set()
            for stream in (*stalled, one_more):
                await stream.aclose()
        assert max(gaps) < 1.0, gaps
        assert max(times) < 1.0, times
    finally:
        daemon.stop()
