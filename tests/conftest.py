"""Shared test fixtures.

Two ways to run osintd here, both on real loopback sockets:

* ``daemon`` starts the console script as a user would (``python -m osintd``)
  on a free port, in demo mode, and ends it by its PID afterwards.
* ``start_app`` runs :class:`osintd.app.App` inside the test's trio run, so a
  test can use trio's autojump clock and a :class:`ScriptedSource` whose events
  it chooses itself.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import functools
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import attrs
import jsonschema
import pytest
import trio
import trio_websocket

from osintd import asyncapi
from osintd.app import App
from osintd.config import Settings
from osintd.models import Event, EventType, SourceHealth

ROOT = Path(__file__).resolve().parent.parent
#: Real recorded GitHub events beside the repository (see its README for provenance and quirks).
REAL_GITHUB = ROOT.parent / "shared" / "real-github"


@functools.cache
def _real_lines(name: str) -> tuple[bytes, ...]:
    # Split on "\n" only: some lines hold a raw U+2028 inside a JSON string.
    with gzip.open(REAL_GITHUB / name, "rb") as handle:
        return tuple(line for line in handle.read().split(b"\n") if line.strip())


def real_items(name: str) -> list[dict]:
    """Every item of a shared real file (``gharchive/2015-01-01-0.json.gz`` …), freshly parsed."""
    return [json.loads(line) for line in _real_lines(name)]


@functools.cache
def _real_by_id(name: str) -> dict[str, dict]:
    return {item["id"]: item for item in real_items(name)}


def real_item(name: str, item_id: str) -> dict:
    """One item of a shared real file, by its GitHub id (a copy: change it freely)."""
    return copy.deepcopy(_real_by_id(name)[item_id])


# ------------------------------------------------------------------ subprocess


@attrs.define
class Daemon:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/live-updates"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def missing(what: str) -> NoReturn:
    """A program or package a test needs is absent: a skip on a developer's machine, a
    failure in CI (``CI`` set), where ``.ci/run`` installs everything and a skip would hide
    that a part was never tested."""
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


def spawn_daemon(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 15) -> Daemon:
    """Start ``python -m osintd --port 0 ARGS`` and wait for its "serving" line."""
    log_path = tmp_path / f"osintd-{time.monotonic_ns()}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "osintd", "--port", "0", *args],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"serving ws://[^:]+:(\d+)/ws/live-updates", log_path.read_text(errors="replace"))
        if match:
            return Daemon(process, int(match.group(1)), log_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"osintd did not start:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def daemon(tmp_path):
    """osintd --demo as a subprocess: seeded, with a 1 s heartbeat so tests see one quickly."""
    started = spawn_daemon(tmp_path, "--demo", "--demo-seed", "7", "--demo-rate", "20",
                           "--heartbeat-interval", "1", "--metrics-interval", "1")
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


# ------------------------------------------------------------------- in-process


T0 = dt.datetime(2026, 1, 15, 10, 0, tzinfo=dt.timezone.utc)


class ScriptedSource:
    """A source whose events the test sends itself (``await source.emit(...)``)."""

    name = "scripted"
    live = True

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel(10_000)
        self._health_send, self._health_receive = trio.open_memory_channel(100)
        self._numbers = iter(range(1, 10**9))
        self.now = _now  # start_app points this at the app's clock

    async def run(self, events, health) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_health, health)
            async for event in self._receive:
                await events.send(event)
            nursery.cancel_scope.cancel()

    async def _forward_health(self, health) -> None:
        async for report in self._health_receive:
            await health.send(report)

    def event(self, repo: str, event_type: EventType = EventType.COMMIT, *, action: str | None = None,
              title: str = "Fix bug in parser", author: str | None = None, at: dt.datetime | None = None,
              event_id: str | None = None) -> Event:
        """One event; by default its author is one of five people in turn, as osintd ranks
        repositories where several people are active."""
        number = next(self._numbers)
        return Event(event_id=event_id or f"{event_type}_{number:06d}", repo_full_name=repo,
                     event_type=event_type, title=title, author=author or f"dev{number % 5}",
                     url=f"https://github.com/{repo}/x/{number}",
                     created_at=at or self.now(), action=action, data={"n": number})

    async def emit(self, *events: Event) -> None:
        for event in events:
            await self._send.send(event)

    async def report(self, health: SourceHealth) -> None:
        await self._health_send.send(health)

    async def finish(self) -> None:
        await self._send.aclose()


def _now() -> dt.datetime:
    # Same anchor the app's WallClock uses: wall time now + trio time since start.
    return dt.datetime.now(dt.timezone.utc)


def make_settings(**overrides) -> Settings:
    base = dict(port=0, heartbeat_interval=30.0, metrics_interval=5.0, announce_interval=1.0,
                summary_interval=0.0, ping_interval=1000.0, ping_timeout=10.0)
    base.update(overrides)
    return Settings(**base)


async def start_app(nursery: trio.Nursery, settings: Settings | None = None, source=None, model=None) -> App:
    app = App(settings or make_settings(), source=source, model=model)
    await nursery.start(app.run)
    if source is not None and hasattr(source, "now"):
        source.now = app.clock.now
    return app


def ws_url(app: App, query: str = "") -> str:
    return f"ws://127.0.0.1:{app.port}/ws/live-updates" + (f"?{query}" if query else "")


# ------------------------------------------------------------ the published protocol

def closed(schema):
    """``schema`` with every object that lists its properties closed to others: the document
    leaves them open for clients (see ``osintd.asyncapi``); the tests hold osintd to it."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {key: closed(value) for key, value in schema.items()}
    if "properties" in copy and copy.get("type") == "object" and "additionalProperties" not in copy:
        copy["additionalProperties"] = False
    return copy


def inlined(schema, components):
    """``schema`` with each ``$ref`` to ``#/components/schemas/NAME`` replaced by that schema,
    and an ``allOf`` of one (a described ``$ref``) by its only member: what the validator
    would look up on every message, looked up once."""
    if isinstance(schema, list):
        return [inlined(item, components) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if set(schema) == {"$ref"}:
        return inlined(components[schema["$ref"].removeprefix("#/components/schemas/")], components)
    if "allOf" in schema and len(schema["allOf"]) == 1 and set(schema) <= {"allOf", "description"}:
        return inlined(schema["allOf"][0], components)
    return {key: inlined(value, components) for key, value in schema.items()}


@functools.cache
def protocol_validators(strict: bool = True) -> dict[str, jsonschema.Draft7Validator]:
    """A compiled validator for each message of the generated AsyncAPI document, by ``type``
    (server and client messages alike), made once per test session; ``strict`` closes objects."""
    document = closed(asyncapi.document()) if strict else asyncapi.document()
    components = document["components"]
    return {kind: jsonschema.Draft7Validator(inlined(message["payload"], components["schemas"]))
            for kind, message in components["messages"].items()}


#: Messages of one type checked in full before the checks thin out (below), and then one in how many.
CHECK_ALL_FIRST, CHECK_ONE_IN = 1000, 100
_checked_by_type: collections.Counter[str] = collections.Counter()


def check_message(message) -> None:
    """Fail unless ``message`` is exactly as docs/asyncapi.json describes its type (the type
    always; past the first ``CHECK_ALL_FIRST`` messages of a type in this session, the rest
    of it in one message of ``CHECK_ONE_IN``: jsonschema takes about 0.1 ms for a new_event,
    and a fan-out test receives 60,000 of them alike)."""
    validators = protocol_validators()
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in validators:
        raise AssertionError(f"a message of a type docs/asyncapi.json does not know: {message!r:.300}")
    _checked_by_type[kind] += 1
    seen = _checked_by_type[kind]
    if seen > CHECK_ALL_FIRST and seen % CHECK_ONE_IN:
        return
    validate_message(message)


def validate_message(message) -> None:
    """Fail unless ``message`` (of a type the document knows) matches its schema in full."""
    kind = message["type"]
    validators = protocol_validators()
    error = jsonschema.exceptions.best_match(validators[kind].iter_errors(message))
    if error is not None:
        where = "".join(f"[{part!r}]" for part in error.absolute_path) or "the message"
        raise AssertionError(f"{kind} does not match docs/asyncapi.json at {where}: {error.message}\n"
                             f"{message!r:.1000}")


async def receive_json(ws: trio_websocket.WebSocketConnection) -> dict:
    """The next message, checked against the published protocol."""
    message = json.loads(await ws.get_message())
    check_message(message)
    return message


async def receive_until(ws, predicate, limit: int = 10_000) -> list[dict]:
    """Messages up to and including the first one that satisfies ``predicate``."""
    seen = []
    for _ in range(limit):
        message = await receive_json(ws)
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"no matching message in {limit}: last {seen[-3:]}")


async def collect_for(ws, seconds: float, kind: str | None = None) -> list[dict]:
    """Every message (of ``kind``, if given) that arrives within ``seconds`` (virtual under autojump)."""
    found = []
    with trio.move_on_after(seconds):
        while True:
            message = await receive_json(ws)
            if kind is None or message["type"] == kind:
                found.append(message)
    return found


@pytest.fixture
async def app(nursery):
    """A whole daemon in the test's nursery, fed by a ScriptedSource (``app._test_nursery`` for clients)."""
    started = await start_app(nursery, make_settings(), source=ScriptedSource())
    started._test_nursery = nursery
    yield started
    nursery.cancel_scope.cancel()


def retired_type_items() -> list[dict]:
    """One Events API item of each type GitHub retired (in the shared README's list, absent
    from its files), shaped as GitHub listed them: a FollowEvent as a public project's
    2013 recording has it (``repo`` is ``"/"``), the others as GitHub's Events API docs
    described their payloads.  osintd skips them: none is activity in a repository."""
    actor = {"id": 3097493, "login": "Pr0tectedV0id", "gravatar_id": "",
             "url": "https://api.github.com/users/Pr0tectedV0id", "avatar_url": ""}
    repo = {"id": 7089213, "name": "electricpixels/MCSquared",
            "url": "https://api.github.com/repos/electricpixels/MCSquared"}
    return [
        {"id": "1649737771", "type": "FollowEvent", "public": True, "created_at": "2013-01-04T02:13:02Z",
         "actor": actor, "repo": {"url": "https://api.github.com/repos//", "name": "/"},
         "payload": {"target": {"login": "octocat", "id": 583231, "followers": 20, "repos": 8}}},
        {"id": "1649737772", "type": "GistEvent", "public": True, "created_at": "2013-01-04T02:13:05Z",
         "actor": actor, "repo": {"url": "https://api.github.com/repos//", "name": "/"},
         "payload": {"action": "create", "gist": {"id": "4449842", "url": "https://gist.github.com/4449842",
                                                  "public": True, "description": "notes"}}},
        {"id": "1649737773", "type": "DownloadEvent", "public": True, "created_at": "2013-01-04T02:13:09Z",
         "actor": actor, "repo": repo,
         "payload": {"download": {"id": 390203, "name": "MCSquared-1.0.zip", "size": 1024, "download_count": 0,
                                  "content_type": "application/zip"}}},
        {"id": "1649737774", "type": "TeamAddEvent", "public": False, "created_at": "2013-01-04T02:13:11Z",
         "actor": actor, "repo": repo,
         "payload": {"team": {"id": 292112, "name": "Owners", "permission": "admin"}, "repo": repo}},
    ]
