"""The published protocol (docs/asyncapi.json, ``osintd.asyncapi``) against what osintd
really sends and accepts.

``receive_json`` and friends in conftest check every message the suite receives
against the document; here: the committed file is the generated one, it is served,
a real run produces every server message type it lists and each one validates, the
guide's client messages validate, and the schemas refuse what they should.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import json
import re
import typing
import urllib.parse

import httpx
import jsonschema
import pytest
import trio
import trio_websocket

from conftest import ROOT, make_settings, missing, protocol_validators, start_app, validate_message, ws_url
from osintd import asyncapi, wire
from osintd.messages import (Incoming, Outgoing, RankedRepo, RankingChange, Resumed, Snapshot, Subscribed,
                             SystemStatus)
from osintd.models import Momentum, RankChange, TrendStatus
from osintd.server import BadQuery, Upgrade
from test_guide_clients import CLIENTS, GUIDE

DOCUMENT = asyncapi.document()
#: The AsyncAPI specification's own JSON Schema of a 3.0.0 document (npm's @asyncapi/specs, `make test` installs it).
SPECIFICATION = ROOT / "tests/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"
REGENERATE = ".venv/bin/python -m osintd.asyncapi > docs/asyncapi.json"


def _kinds(operations: typing.Iterable[dict]) -> set[str]:
    refs = [ref for operation in operations
            for ref in [*operation["messages"], *operation.get("reply", {}).get("messages", [])]]
    return {ref["$ref"].rpartition("/")[2] for ref in refs}


OPERATIONS = DOCUMENT["operations"].values()
#: What osintd sends: its send operations and the replies of its receive operations.
SERVER_TYPES = _kinds(op for op in OPERATIONS if op["action"] == "send") | _kinds(
    op["reply"] for op in OPERATIONS if "reply" in op)
CLIENT_TYPES = _kinds({"messages": op["messages"]} for op in OPERATIONS if op["action"] == "receive")


# ------------------------------------------------------------------ the document itself


def test_the_committed_document_is_the_generated_one():
    committed = (ROOT / "docs" / "asyncapi.json").read_bytes()
    assert committed == asyncapi.document_bytes(), (
        f"docs/asyncapi.json differs from what osintd/messages.py makes: regenerate it with  {REGENERATE}")


def test_the_document_is_a_valid_asyncapi_3_document():
    if not SPECIFICATION.exists():
        missing("the AsyncAPI specification's schema is missing: cd tests/asyncapi && npm ci")
    validator = jsonschema.Draft7Validator(json.loads(SPECIFICATION.read_text(encoding="utf-8")))
    problems = [f"{'/'.join(map(str, error.absolute_path))}: {error.message:.200}"
                for error in validator.iter_errors(DOCUMENT)]
    assert not problems, problems
    # Not vacuous: an AsyncAPI 2 action is refused.
    wrong = copy.deepcopy(DOCUMENT)
    wrong["operations"]["receivePing"]["action"] = "publish"
    assert not validator.is_valid(wrong)


def test_the_document_lists_every_message_class_once():
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert SERVER_TYPES == {cls.TYPE for cls in typing.get_args(Outgoing)}
    assert CLIENT_TYPES == {cls.TYPE for cls in typing.get_args(Incoming)}
    channel = DOCUMENT["channels"]["liveUpdates"]
    assert channel["address"] == "/ws/live-updates"
    assert set(channel["messages"]) == SERVER_TYPES | CLIENT_TYPES == set(DOCUMENT["components"]["messages"])
    for kind, message in DOCUMENT["components"]["messages"].items():
        jsonschema.Draft7Validator.check_schema(message["payload"])  # a well-formed schema
        assert message["payload"]["properties"]["type"] == {"type": "string", "const": kind}
        assert message["payload"]["required"][0] == "type"


def test_optional_fields_may_be_left_out_but_never_null():
    """``X | None`` fields: not required, and typed X alone (wire leaves a None out)."""
    payloads = {kind: m["payload"] for kind, m in DOCUMENT["components"]["messages"].items()}
    assert "people" not in payloads["ranking_change"]["required"]
    assert payloads["ranking_change"]["properties"]["people"]["type"] == "integer"
    assert "metrics" not in payloads["snapshot"]["required"] and "system" in payloads["snapshot"]["required"]
    assert "reason" not in payloads["resumed"]["required"]
    assert not {"types", "repos"} & set(payloads["subscribed"]["required"])
    # seq: always on broadcasts, optional on error (one client's mistake has none), never on answers.
    assert "seq" in payloads["new_event"]["required"] and "seq" in payloads["heartbeat"]["required"]
    assert "seq" in payloads["error"]["properties"] and "seq" not in payloads["error"]["required"]
    assert "seq" not in payloads["pong"]["properties"]
    assert "null" not in json.dumps(DOCUMENT)


async def test_the_document_is_served_at_asyncapi_json(autojump_clock):
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery)
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{app.port}/asyncapi.json")
        nursery.cancel_scope.cancel()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "max-age" in response.headers["cache-control"]
    assert response.content == (ROOT / "docs" / "asyncapi.json").read_bytes()


def test_the_query_string_it_describes_is_the_one_the_server_parses():
    query = DOCUMENT["channels"]["liveUpdates"]["bindings"]["ws"]["query"]
    validator = jsonschema.Draft7Validator(query)
    for name, schema in query["properties"].items():
        for value in [*schema.get("examples", []), *schema.get("enum", [])]:
            params = {name: value, "epoch": "abc123"} if name == "since" else {name: value}
            assert validator.is_valid(params), params
            Upgrade.parse(urllib.parse.urlencode(params))  # the server takes it too
    for params in ({"since": "5"}, {"snapshot": "yes"}, {"types": "new_event,bogus"}, {"epoch": "a-b"},
                   {"since": "-1", "epoch": "abc"}):
        assert not validator.is_valid(params), params
        with pytest.raises(BadQuery):
            Upgrade.parse(urllib.parse.urlencode(params))


# ------------------------------------------------------------------ real messages


async def _receive(ws, seen: dict[str, list[dict]]) -> dict:
    """The next message, validated in full (not the sampling of conftest's helpers)."""
    message = json.loads(await ws.get_message())
    validate_message(message)
    seen.setdefault(message["type"], []).append(message)
    return message


async def test_every_server_message_type_comes_and_validates(autojump_clock):
    """One demo run provokes each type the document lists; each message is validated."""
    seen: dict[str, list[dict]] = {}
    async with trio.open_nursery() as nursery:
        app = await start_app(nursery, make_settings(heartbeat_interval=30.0, demo_seed=3, demo_rate=8.0,
                                                     summary_interval=10.0))
        async with trio_websocket.open_websocket_url(ws_url(app)) as ws:
            hello = await _receive(ws, seen)
            await ws.send_message('{"type": "ping"}')
            await ws.send_message('{"type": "ping"')                     # error INVALID_JSON, no seq
            await ws.send_message('{"type": "subscribe"}')               # subscribed, no keys: all
            await ws.send_message(json.dumps({"type": "resume", "since": hello["seq"], "epoch": "other"}))
            async with trio_websocket.open_websocket_url(  # resumed with recovered true
                    ws_url(app, f"since={hello['seq']}&epoch={hello['epoch']}&types=new_event&repos=*")) as again:
                for _ in range(2):
                    await _receive(again, seen)
                await again.send_message('{"type": "subscribe", "types": ["ranking_change"], "repos": ["*/*"]}')
                while "subscribed" not in seen:
                    await _receive(again, seen)
            with trio.move_on_after(60):
                while SERVER_TYPES - set(seen):
                    await _receive(ws, seen)
        nursery.cancel_scope.cancel()
    assert set(seen) == SERVER_TYPES, f"never seen: {SERVER_TYPES - set(seen)}"
    assert {m["recovered"] for m in seen["resumed"]} == {True, False}
    assert {"seq" in m for m in seen["error"]} == {True, False}  # a broadcast one and one to us alone
    assert {len(m) for m in seen["subscribed"]} == {2, 4}        # keys left out, and both given
    counts = {kind: len(messages) for kind, messages in seen.items()}
    print("validated", sum(counts.values()), counts)


def test_a_message_with_every_optional_field_and_one_without_validate():
    """wire's own output, optional fields set and not, for the types that have them."""
    now = dt.datetime(2026, 1, 15, 10, 30, tzinfo=dt.timezone.utc)
    system = SystemStatus(now, "healthy", {"api": "operational"}, "All systems operational", "info")
    row = RankedRepo(1, "a/b", 2.5, TrendStatus.HOT, Momentum.STEADY, 1.2, 9, "busy")
    for message, seq in [
        (RankingChange(now, "a/b", 3, 1, 25.5, RankChange.UP), 7),
        (RankingChange(now, "a/b", 3, 1, 25.5, RankChange.UP, 4, 2, ["commit"]), 8),
        (Snapshot(now, "e1", 8, [row, RankedRepo(2, "c/d", 1.0, TrendStatus.QUIET, Momentum.DECELERATING,
                                                  0.1, 3, "", 3, 1, ["star"])], None, system), None),
        (Resumed(now, False, 3, "e1", 8, 0, "another epoch"), None),
        (Resumed(now, True, 3, "e1", 8, 5), None),
        (Subscribed(now, None, None), None),
    ]:
        validate_message(json.loads(wire.encode(message, seq)))


# ------------------------------------------------------------------ the guide's client messages


def _client_examples(text: str) -> list[dict]:
    """Client messages written in ``text``: inline JSON, Python dict literals sent with
    json.dumps, and JavaScript object literals given to send()."""
    found = []
    for literal in re.findall(r"`(\{\"type\":[^`]*\})`", text):
        try:
            found.append(json.loads(literal))
        except ValueError:  # a placeholder such as {"type": "resume", "since": SEQ, ...}
            continue
    found += [ast.literal_eval(literal) for literal in re.findall(r"json\.dumps\((\{[^()]*\})\)", text)]
    for literal in re.findall(r"send\((\{[^()]*\})\)", text):
        found.append(json.loads(re.sub(r"(\w+)\s*:", r'"\1":', literal.replace("'", '"'))))
    return [example for example in found if example.get("type") in CLIENT_TYPES]


def test_every_client_message_of_the_guide_and_readme_validates():
    sources = {path.name: path.read_text(encoding="utf-8") for path in sorted(CLIENTS.iterdir()) if path.is_file()}
    sources["README.md"] = (ROOT / "README.md").read_text(encoding="utf-8")
    if GUIDE.exists():
        sources["the guide"] = GUIDE.read_text(encoding="utf-8")
    examples = {name: _client_examples(text) for name, text in sources.items()}
    assert examples["live_updates_client.js"] == [{"type": "ping"}]
    assert examples["python_advanced.py"] == [{"type": "ping"}]
    assert {"type": "subscribe", "types": ["new_event", "ranking_change"], "repos": ["openai/*"]} in examples["README.md"]
    for name, found in examples.items():
        for example in found:
            validate_message(example)
            wire.decode_request(json.dumps(example))  # and the server takes it


def test_every_field_of_the_guides_server_examples_is_documented():
    if not GUIDE.exists():
        pytest.skip(f"the guide is not at {GUIDE} (set OSINTD_WEBSOCKET_GUIDE)")
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)]
    examples = [block for block in blocks if isinstance(block, dict) and block.get("type") in SERVER_TYPES]
    assert len({example["type"] for example in examples}) == 10
    for example in examples:
        documented = DOCUMENT["components"]["messages"][example["type"]]["payload"]["properties"]
        assert set(example) <= set(documented), (example["type"], set(example) - set(documented))


# ------------------------------------------------------------------ the schemas refuse


NEW_EVENT = {"type": "new_event", "timestamp": "2026-01-15T10:30:05.123456+00:00", "event_id": "1",
             "repo_full_name": "openai/openai-python", "event_type": "commit", "title": "Fix", "author": "alice",
             "url": "https://github.com/openai/openai-python/commit/abc123", "data": {"action": "pushed"}, "seq": 5}


def _changed(**changes) -> dict:
    message = copy.deepcopy(NEW_EVENT)
    for key, value in changes.items():
        if value is KeyError:
            del message[key]
        else:
            message[key] = value
    return message


@pytest.mark.parametrize("message, complaint", [
    (_changed(author=KeyError), "'author' is a required property"),
    (_changed(seq=KeyError), "'seq' is a required property"),
    (_changed(seq="5"), "'5' is not of type 'integer'"),
    (_changed(title=None), "None is not of type 'string'"),
    (_changed(data=[]), "[] is not of type 'object'"),
    (_changed(event_type="push"), "'push' is not one of"),
    (_changed(timestamp="2026-01-15T10:30:05.123456"), "does not match"),
    (_changed(type="new_events"), "unknown type"),
    ({"type": "ranking_change", "timestamp": NEW_EVENT["timestamp"], "repo_full_name": "a/b", "old_rank": 3,
      "new_rank": 1.5, "activity_score": 1.0, "change": "up", "seq": 1}, "1.5 is not of type 'integer'"),
    ({"type": "subscribed", "timestamp": NEW_EVENT["timestamp"], "types": None}, "None is not of type 'array'"),
    ({"type": "resume", "since": -1, "epoch": "e"}, "-1 is less than the minimum of 0"),
    ({"type": "resume", "since": True, "epoch": "e"}, "True is not of type 'integer'"),
    ({"type": "subscribe", "types": ["new_event", "news"]}, "'news' is not one of"),
])
def test_the_schemas_refuse_a_wrong_message(message, complaint):
    with pytest.raises(AssertionError) as refused:
        if message["type"] not in protocol_validators():
            raise AssertionError(f"unknown type {message['type']}")
        validate_message(message)
    assert complaint in str(refused.value)
    validate_message(NEW_EVENT)  # and the message it was made from passes


def test_unknown_fields_pass_the_published_schema_but_not_the_tests():
    """The document leaves objects open, so clients built from it accept what a later osintd
    adds; the suite closes them, so osintd cannot send a field the document lacks."""
    extra = _changed(novelty=1)
    pong_with_seq = {"type": "pong", "timestamp": NEW_EVENT["timestamp"], "seq": 3}
    for message in (extra, pong_with_seq):
        assert protocol_validators(strict=False)[message["type"]].is_valid(message)
        assert not protocol_validators()[message["type"]].is_valid(message)
