"""The published protocol: an AsyncAPI 3.0 document of ``/ws/live-updates``, made from
the message classes.

Owns: the JSON Schema of every message, walked from the attrs classes of
``osintd.messages`` (field types, defaults, class docstrings, ``#:`` field comments)
by the rules ``wire`` writes them with; the AsyncAPI document that ties them to the
channel, its query string and the operations on it.
Must not: describe by hand a field that a class declares, or serialise messages
(``wire`` does).

Schemas are AsyncAPI Schema Objects (a superset of JSON Schema draft-07, the payload
format AsyncAPI 3.0 assumes when no ``schemaFormat`` is named) written with draft-07
keywords only, so ``jsonschema.Draft7Validator`` checks messages against them.
How ``wire``'s rules become schema:

* ``type`` is a ``const``, first; every field not typed ``X | None`` is required
  (a field with a default, such as ``status = "connected"``, is still always sent).
* ``X | None`` fields are left out of the JSON when None, never ``null``: not
  required, and typed ``X`` alone.
* ``seq``: broadcasts (the types a subscription may name) carry it; an ``error`` is
  also sent to one client alone (its own mistake), without one, so there it is
  optional; answers to one client (``pong``, ``subscribed``) never have it.
* Objects stay open (no ``additionalProperties: false``): a later osintd may add a
  field, and a client must ignore what it does not know.  The tests close every
  object before validating (``tests/conftest.py``), so nothing osintd sends goes
  undocumented.

After changing a message class: ``python -m osintd.asyncapi > docs/asyncapi.json``
(``tests/test_asyncapi.py`` fails until the committed document is the generated one).
"""

from __future__ import annotations

import ast
import datetime as dt
import enum
import functools
import inspect
import json
import sys
import types
import typing
from typing import Any, Literal

import attrs

from osintd import __version__
from osintd.messages import (SUBSCRIBABLE_TYPES, Error, Incoming, NewEvent, Outgoing, PingRequest, Pong,
                             ResumeRequest, Resumed, Subscribed, SubscribeRequest)
from osintd.models import EventType

Schema = dict[str, Any]

CHANNEL = "liveUpdates"
ADDRESS = "/ws/live-updates"
#: ``clock.isoformat``'s form: UTC, microseconds, explicit offset.
TIMESTAMP_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$"



def _narrower_fields() -> dict[tuple[type, str], Schema]:
    """Fields whose values are narrower than their Python type says: ``NewEvent.event_type``
    is a ``str`` so that encoding (on the path of every event) writes it as it is; the
    others are checked by ``wire.decode_request``, not by their type."""
    kinds = {"type": "array", "items": {"type": "string", "enum": sorted(SUBSCRIBABLE_TYPES)}}
    return {(NewEvent, "event_type"): {"type": "string", "enum": [kind.value for kind in EventType]},
            (SubscribeRequest, "types"): kinds, (Subscribed, "types"): kinds,
            (ResumeRequest, "since"): {"type": "integer", "minimum": 0}}


#: What a client request is answered with (``session`` sends it); a malformed one gets an ``error``.
_ANSWERS: dict[type[Incoming], type[Outgoing]] = {
    PingRequest: Pong, SubscribeRequest: Subscribed, ResumeRequest: Resumed}

_SEQ_DESCRIPTION = "Number of this broadcast, rising by one per broadcast within an epoch."


def _query_schema() -> Schema:
    """The query string ``server.Upgrade.parse`` accepts on the WebSocket URL."""
    kinds = "|".join(sorted(SUBSCRIBABLE_TYPES))
    return {
        "type": "object",
        "properties": {
            "snapshot": {"type": "string", "enum": ["0", "1", "true", "false"], "default": "1",
                         "description": "Send a snapshot right after connection (0 or false: don't)."},
            "since": {"type": "string", "pattern": r"^[0-9]{1,18}$", "examples": ["1523"],
                      "description": "Resume: the last seq received; the missed broadcasts follow a "
                                     "resumed message. Needs epoch."},
            "epoch": {"type": "string", "pattern": r"^[A-Za-z0-9]{1,64}$", "examples": ["a1b2c3d4e5f60718"],
                      "description": "Resume: the epoch of the connection message that numbered since."},
            "types": {"type": "string", "pattern": rf"^\s*({kinds})?\s*(,\s*({kinds})?\s*)*$",
                      "examples": ["new_event,ranking_change"],
                      "description": "Comma-separated message types to receive (heartbeats always come); "
                                     "the subscribe message's types."},
            "repos": {"type": "string", "examples": ["openai/*,langchain-ai/langchain"],
                      "description": "Comma-separated globs on repo_full_name (* any run of characters, "
                                     "? one character), at most 100 of 200 characters; messages without a "
                                     "repository always pass. The subscribe message's repos."},
            "token": {"type": "string", "examples": ["4pZ3m0bq2yq9cW1H8mT0x7Uo5nRk_vL2sJd6aE"],
                      "description": "With access control on: the client's token, for clients that cannot "
                                     "send Authorization: Bearer (browsers). A missing, wrong or expired "
                                     "token is refused with 401; a JWT that expires mid-session closes it "
                                     "with 1008."},
        },
        "dependencies": {"since": ["epoch"]},
    }


# ------------------------------------------------------------------ descriptions


def _docstring(cls: type) -> str | None:
    """The class's own docstring (not one inherited from ``Enum`` or ``object``)."""
    doc = vars(cls).get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


@functools.cache
def _comments_of_module(module: str) -> dict[str, dict[str, str]]:
    """The ``#:`` comment lines right above each field of each class in ``module``, by class
    and field name (none where the source is not at hand)."""
    try:
        lines = inspect.getsource(sys.modules[module]).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, dict[str, str]] = {}
    for node in ast.parse("\n".join(lines)).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = found.setdefault(node.name, {})
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                comment: list[str] = []
                row = statement.lineno - 2  # the line above, 0-based
                while row >= 0 and lines[row].strip().startswith("#:"):
                    comment.insert(0, lines[row].strip().removeprefix("#:").strip())
                    row -= 1
                if comment:
                    fields[statement.target.id] = " ".join(comment)
    return found


def _field_comments(cls: type) -> dict[str, str]:
    return _comments_of_module(cls.__module__).get(cls.__qualname__, {})


def _described(schema: Schema, description: str | None) -> Schema:
    if not description:
        return schema
    description = description.replace("``", "`")  # reStructuredText to CommonMark, as AsyncAPI reads it
    if "$ref" in schema:  # draft-07 ignores a $ref's siblings: wrap it
        return {"allOf": [schema], "description": description}
    return {**schema, "description": description}


# ------------------------------------------------------------------ the walk


class _Walker:
    """Turns Python types into schemas; nested attrs classes go into ``components``."""

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}
        self._narrower = _narrower_fields()

    def type_schema(self, tp: Any) -> Schema:
        if tp is Any:
            return {}
        if tp is dt.datetime:
            return {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}
        simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
        if tp in simple:
            return {"type": simple[tp]}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return _described({"type": "string", "enum": [member.value for member in tp]}, _docstring(tp))
        if attrs.has(tp):
            return self._component(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Literal:
            strings = all(isinstance(arg, str) for arg in args)
            return {"type": "string", "enum": list(args)} if strings else {"enum": list(args)}
        if origin in (types.UnionType, typing.Union):
            present = [arg for arg in args if arg is not type(None)]  # None is never written (see above)
            if len(present) == 1:
                return self.type_schema(present[0])
            return {"anyOf": [self.type_schema(arg) for arg in present]}
        if origin is list:
            return {"type": "array", "items": self.type_schema(args[0])}
        if origin is dict and args[0] is str:
            return {"type": "object"} if args[1] is Any else {
                "type": "object", "additionalProperties": self.type_schema(args[1])}
        raise TypeError(f"osintd.asyncapi cannot describe {tp!r}: teach _Walker.type_schema")

    def _component(self, cls: type) -> Schema:
        """A nested record (a snapshot's rows, metrics, system): its fields, as ``wire`` writes
        them nested (no ``type``, no ``seq``), once in ``components.schemas``."""
        if cls.__name__ not in self.components:
            self.components[cls.__name__] = {}  # taken, in case the class nests itself
            self.components[cls.__name__] = self.object_schema(cls)
        return {"$ref": f"#/components/schemas/{cls.__name__}"}

    def object_schema(self, cls: type, first: Schema | None = None, last: Schema | None = None,
                      required_first: bool = True, required_last: bool = True) -> Schema:
        """``cls``'s fields as an object, with ``first`` and ``last`` properties around them."""
        attrs.resolve_types(cls)
        comments = _field_comments(cls)
        properties: Schema = dict(first or {})
        required = list(properties) if required_first else []
        for field in attrs.fields(cls):
            schema = self._narrower.get((cls, field.name)) or self.type_schema(field.type)
            properties[field.name] = _described(schema, comments.get(field.name))
            if type(None) not in typing.get_args(field.type):
                required.append(field.name)
        properties.update(last or {})
        if required_last:
            required.extend(last or {})
        return _described({"type": "object", "properties": properties, "required": required}, _docstring(cls))

    def message(self, cls: type[Outgoing | Incoming], outgoing: bool) -> Schema:
        kind = cls.TYPE
        first = {"type": {"type": "string", "const": kind}}
        seq = {"seq": {"type": "integer", "minimum": 0, "description": _SEQ_DESCRIPTION}}
        broadcast = outgoing and kind in SUBSCRIBABLE_TYPES
        schema = self.object_schema(cls, first, seq if broadcast else None,
                                    required_last=broadcast and cls is not Error)
        return {"title": kind, **schema}


# ------------------------------------------------------------------ the document


def _message_object(cls: type, payload: Schema) -> Schema:
    summary = (_docstring(cls) or "").split("\n\n")[0].replace("\n", " ").replace("``", "`")
    return {"name": payload["title"], "title": payload["title"], "summary": summary,
            "contentType": "application/json", "payload": payload}


def _ref(kind: str) -> Schema:
    return {"$ref": f"#/channels/{CHANNEL}/messages/{kind}"}


def document() -> Schema:
    """The AsyncAPI 3.0 document, as a JSON-ready dict (built afresh each call)."""
    walker = _Walker()
    server_side = typing.get_args(Outgoing)
    client_side = typing.get_args(Incoming)
    messages = {cls.TYPE: _message_object(cls, walker.message(cls, outgoing=True)) for cls in server_side}
    requests = {cls.TYPE: _message_object(cls, walker.message(cls, outgoing=False)) for cls in client_side}
    if messages.keys() & requests.keys():
        raise ValueError(f"a type names both a server and a client message: {messages.keys() & requests.keys()}")
    answers = {answer.TYPE for answer in _ANSWERS.values()}
    operations: Schema = {
        "sendLiveUpdates": {
            "action": "send", "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "title": "Live updates",
            "summary": "What osintd sends every client: connection, then a snapshot (or a resume's answer), "
                       "then broadcasts and heartbeats as they happen.",
            "messages": [_ref(kind) for kind in messages if kind not in answers],
        },
    }
    for request, answer in _ANSWERS.items():
        operations[f"receive{request.__name__.removesuffix('Request')}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "summary": f"A client's {request.TYPE}, answered with {answer.TYPE} "
                       f"(a malformed one with an error, INVALID_MESSAGE).",
            "messages": [_ref(request.TYPE)],
            "reply": {"channel": {"$ref": f"#/channels/{CHANNEL}"},
                      "messages": [_ref(answer.TYPE), _ref(Error.TYPE)]},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "osintd live updates",
            "version": __version__,
            "description": (
                "Live GitHub activity intelligence over one WebSocket: every message is a JSON object with "
                "`type` and `timestamp`. Broadcasts carry `seq`, rising by one per broadcast; with the "
                "`epoch` of `connection` a client resumes without loss (`?since=SEQ&epoch=E`, or a "
                "`resume` message). Objects are open: ignore fields you do not know, later versions may "
                "add some. Generated from osintd/messages.py by `python -m osintd.asyncapi`."),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "localhost:8000", "protocol": "ws",
                      "description": "osintd's default address (--host, --port); behind a TLS proxy, wss."},
        },
        "channels": {
            CHANNEL: {
                "address": ADDRESS,
                "title": "Live updates",
                "description": (
                    "Client mistakes: invalid JSON, an unknown type or a malformed request is answered with an "
                    "`error` (INVALID_JSON, UNKNOWN_TYPE, INVALID_MESSAGE) and the connection stays open; a "
                    "binary frame closes it with 1003, a frame over 64 KiB with 1009, flooding with 1008, a "
                    "client too slow for the feed with 1013; the server stopping closes with 1001."),
                "messages": {kind: {"$ref": f"#/components/messages/{kind}"} for kind in [*messages, *requests]},
                "bindings": {"ws": {"method": "GET", "query": _query_schema(), "bindingVersion": "0.1.0"}},
            },
        },
        "operations": operations,
        "components": {
            "messages": {**messages, **requests},
            "schemas": dict(sorted(walker.components.items())),
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served at ``/asyncapi.json`` and committed as ``docs/asyncapi.json``."""
    return (json.dumps(document(), indent=2, ensure_ascii=False) + "\n").encode()


def main() -> None:
    sys.stdout.buffer.write(document_bytes())


if __name__ == "__main__":
    main()
