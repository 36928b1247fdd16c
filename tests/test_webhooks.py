"""POST /webhooks/github over a real socket: every sample, signed; tampering; redelivery;
the same activity by webhook and by polling broadcast once."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import httpx
import trio
import trio_websocket

from conftest import make_settings, receive_json, start_app, ws_url
from fakegithub import FakeGitHub
from osintd.clock import WallClock
from osintd.normalize import from_events_api, from_webhook

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "github-samples"
SECRET = b"It's a Secret to Everybody"


def _sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _samples(with_names: bool = False) -> list:
    paths = [path for path in sorted((SAMPLES / "webhooks").glob("*.json")) if not path.name.startswith("_")]
    if with_names:
        return [(path.name, path.name.split(".")[0], path.read_bytes()) for path in paths]
    return [(path.name.split(".")[0], path.read_bytes()) for path in paths]


async def _post(app, event: str, body: bytes, delivery: str, signature: str | None) -> httpx.Response:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
               "User-Agent": "GitHub-Hookshot/123abc"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    async with httpx.AsyncClient() as http:
        return await http.post(f"http://127.0.0.1:{app.port}/webhooks/github", content=body, headers=headers)


async def _drain(ws, seconds: float = 3) -> list[dict]:
    found = []
    with trio.move_on_after(seconds):
        while True:
            message = await receive_json(ws)
            if message["type"] == "new_event":
                found.append(message)
    return found


async def test_every_signed_sample_yields_its_new_event(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(webhook_secret=SECRET))
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event"),
                                                 message_queue_size=256) as ws:
        await receive_json(ws)
        expected: dict[str, str] = {}
        for index, (name, event, body) in enumerate(_samples(with_names=True)):
            delivery = f"delivery-{index}"
            response = await _post(app, event, body, delivery, _sign(body))
            wanted = from_webhook(event, json.loads(body), dt.datetime.now(dt.timezone.utc), delivery)
            assert response.status_code == 202, (event, response.text)
            assert response.json()["status"] == ("ignored" if wanted is None else "accepted"), event
            if wanted is not None:
                assert wanted.event_id == response.json()["event_id"] == delivery  # X-GitHub-Delivery
                expected[delivery] = str(wanted.event_type)
        received = await _drain(ws)
    assert len(expected) >= 29
    # Distinct deliveries are distinct events: issues.opened and its variants each count.  (The
    # samples that are one activity's two webhooks, such as push.tag-created and create.tag, are
    # years apart here, 2019 against now for the types without a time: far beyond the merging
    # horizon.  tests/test_identity.py merges such pairs at real distances.)
    assert {m["event_id"]: m["event_type"] for m in received} == expected
    assert len(received) == len(expected)
    assert (app.scorer.merged, app.scorer.duplicates) == (0, 0)
    assert app.webhooks.stats.skipped == {"check_suite": 1, "pull_request": 1, "star": 1}
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{app.port}/metrics")).text
    for kind in ("check_suite", "pull_request", "star"):  # by X-GitHub-Event
        assert f'osintd_events_skipped_total{{source="webhook",type="{kind}"}} 1.0' in metrics


async def test_bad_signatures_are_401_and_nothing_is_broadcast(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(webhook_secret=SECRET))
    event, body = next(s for s in _samples() if s[0] == "issues")
    tampered = body.replace(b'"opened"', b'"closed"', 1)
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event")) as ws:
        await receive_json(ws)
        for signature in (None, "sha256=" + "0" * 64, _sign(body, b"wrong secret"), "sha1=abc", _sign(body)[:-2]):
            response = await _post(app, event, body, "d-1", signature)
            assert response.status_code == 401 and response.json()["error"] == "bad_signature"
        response = await _post(app, event, tampered, "d-2", _sign(body))
        assert response.status_code == 401
        assert await _drain(ws) == []


async def test_redelivery_is_broadcast_once(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(webhook_secret=SECRET))
    event, body = next(s for s in _samples() if s[0] == "release")
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event")) as ws:
        await receive_json(ws)
        statuses = [(await _post(app, event, body, "same-delivery", _sign(body))).status_code for _ in range(3)]
        assert statuses == [202, 200, 200]
        assert len(await _drain(ws)) == 1


async def test_oversized_and_unreadable_bodies(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(webhook_secret=SECRET))
    big = b"{" + b" " * (25 * 1024 * 1024) + b"}"
    assert (await _post(app, "push", big, "d-big", _sign(big))).status_code == 413
    broken = b'{"action": '
    response = await _post(app, "issues", broken, "d-broken", _sign(broken))
    assert response.status_code == 400 and response.json()["error"] == "bad_payload"
    # Issue 14: nested 10,000 deep, a signed body got no answer at all (a RecursionError).
    deep = b'{"action": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    response = await _post(app, "issues", deep, "d-deep", _sign(deep))
    assert response.status_code == 400 and "depth" in response.json()["message"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{app.port}/webhooks/github")).status_code == 405


async def test_webhooks_off_without_a_secret(nursery, autojump_clock):
    app = await start_app(nursery, make_settings())
    body = b"{}"
    assert (await _post(app, "push", body, "d", _sign(body))).status_code == 404


async def test_same_event_by_webhook_and_polling_is_broadcast_once(nursery, autojump_clock):
    """The repo-events sample's PushEvent, and a webhook push with the same head commit."""
    clock = WallClock()
    fake = await nursery.start(FakeGitHub(lambda: clock.now().timestamp()).serve)
    items = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())
    items = items if isinstance(items, list) else next(v for v in items.values() if isinstance(v, list))
    push = next(item for item in items if item["type"] == "PushEvent")
    repo = push["repo"]["name"]
    polled = from_events_api(push)
    # The webhook form of that push: built from the push sample with the head commit swapped in.
    webhook = json.loads((SAMPLES / "webhooks" / "push.branch-created.json").read_text())
    webhook["after"] = push["payload"]["head"]
    webhook["ref"] = push["payload"]["ref"]
    webhook["head_commit"]["id"] = push["payload"]["head"]
    webhook["repository"]["full_name"] = repo
    webhook["repository"]["name"] = repo.split("/")[1]
    webhook["repository"]["owner"]["login"] = repo.split("/")[0]
    # Pushed when GitHub listed it (the sample's own pushed_at is three years earlier: beyond the horizon).
    webhook["repository"]["pushed_at"] = int(polled.created_at.timestamp())
    assert from_webhook("push", webhook, clock.now(), "d-push").activity_key == polled.activity_key
    fake.add_events(f"/repos/{repo}/events")  # nothing yet
    app = await start_app(nursery, make_settings(webhook_secret=SECRET, repos=(repo,), github_api_url=fake.url))
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event")) as ws:
        await receive_json(ws)
        body = json.dumps(webhook).encode()
        assert (await _post(app, "push", body, "d-push", _sign(body))).status_code == 202
        fake.add_events(f"/repos/{repo}/events", push)
        await trio.sleep(130)
        received = await _drain(ws)
    assert len(fake.requests) >= 2
    assert [m["event_id"] for m in received] == ["d-push"]  # the webhook came first; the poll merged with it
    assert (app.scorer.total_events, app.scorer.merged) == (1, 1)


async def test_a_delivery_that_cannot_be_stored_is_503_for_github_to_redeliver(tmp_path, nursery):
    """Issue 14: acknowledged means stored; with the disk full, a delivery gets 503.  (Real
    time: the store writes in a thread, which an autojumping clock would outrun.)"""
    app = await start_app(nursery, make_settings(webhook_secret=SECRET, state_dir=tmp_path / "state"))

    def full(row):  # what SQLite raises on a full disk, from the store's own writer
        raise sqlite3.OperationalError("database or disk is full")
    app.store._keep_delivery = full
    name, event, body = next((n, e, b) for n, e, b in _samples(with_names=True) if n == "watch.started.json")
    answer = await _post(app, event, body, "d-full", _sign(body))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
    assert answer.json()["error"] == "state_unwritable" and app.webhooks.stats.deliveries["unstored"] == 1
    assert app.scorer.total_events == 0


async def test_an_unsigned_delivery_is_refused_before_its_body_is_read(nursery, autojump_clock):
    """Issue 14: webhook bodies (up to 25 MB) were read before the signature was checked.
    A delivery whose X-Hub-Signature-256 cannot be a signature is answered 401 from its head
    alone: here the 20 MB body it announces is never sent."""
    import wsraw

    app = await start_app(nursery, make_settings(webhook_secret=SECRET))
    for signature in (None, "sha1=abc", "sha256=" + "z" * 64, "sha256=" + "a" * 63):
        stream = await wsraw.connect(app.port)
        head = (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nX-GitHub-Event: push\r\n"
                f"X-GitHub-Delivery: d\r\nContent-Type: application/json\r\nContent-Length: 20000000\r\n"
                + (f"X-Hub-Signature-256: {signature}\r\n" if signature else "") + "\r\n")
        await stream.send_all(head.encode())
        answer = await wsraw.read_all(stream)
        assert answer.startswith(b"HTTP/1.1 401") and b"bad_signature" in answer, (signature, answer[:120])
    assert app.webhooks.stats.deliveries["unauthorized"] == 4
