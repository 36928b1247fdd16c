"""The JSON wire format, made in one place by one cattrs converter.

Owns: turning message objects into JSON text and client JSON into request
objects, with the error codes of a malformed request.
Must not: decide who receives what, or hold any state.

Outgoing JSON leaves out fields that are None, puts ``type`` first, then the message's fields in declaration
order, then ``seq`` where the hub stamped one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import cattrs
import orjson
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from osintd.clock import isoformat
from osintd.messages import INCOMING_TYPES, SUBSCRIBABLE_TYPES, Incoming, Outgoing, SubscribeRequest

converter = cattrs.Converter()
converter.register_unstructure_hook(dt.datetime, isoformat)


def _strict(kind: type):
    def structure(value: Any, _type: type) -> Any:
        # bool is an int subclass; a client sending `true` for a seq is a mistake.
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value
    return structure


# Client input is structured strictly: cattrs would otherwise accept "5" for an int.
_strict_converter = cattrs.Converter(forbid_extra_keys=False)
_strict_converter.register_structure_hook(int, _strict(int))
_strict_converter.register_structure_hook(str, _strict(str))


def _string_list(value: Any, _type: type) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("expected a list of strings")
    return value


_strict_converter.register_structure_hook_func(lambda cls: cls == list[str], _string_list)


def to_dict(message: Outgoing, seq: int | None = None) -> dict[str, Any]:
    payload = {"type": message.TYPE}
    # Optional fields are None when unset and then left out.
    payload.update((k, v) for k, v in converter.unstructure(message).items() if v is not None)
    if seq is not None:
        payload["seq"] = seq
    return payload


def encode(message: Outgoing, seq: int | None = None) -> str:
    """The message as one compact JSON text (UTF-8 characters kept, not escaped)."""
    payload = to_dict(message, seq)
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        # What orjson refuses (a lone surrogate in a title, an integer beyond 64 bits) the
        # json module writes, escaped to ASCII so that the text is still valid UTF-8.
        return json.dumps(payload, separators=(",", ":"))


def dumps(value: Any) -> str:
    """JSON for the HTTP endpoints, through the same converter."""
    return json.dumps(converter.unstructure(value), ensure_ascii=False, separators=(",", ":"))


@attrs.frozen
class RequestRejected(Exception):
    """A client message osintd cannot act on; ``error_code`` goes on the wire."""

    error_code: str
    message: str

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"


def decode_request(text: str) -> Incoming:
    """Parse one client text frame, or raise :class:`RequestRejected`."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RequestRejected("INVALID_JSON", f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RequestRejected("INVALID_MESSAGE", "message must be a JSON object with a \"type\" field")
    kind = raw.pop("type", None)
    if not isinstance(kind, str):
        raise RequestRejected("INVALID_MESSAGE", "message needs a string \"type\" field")
    cls = INCOMING_TYPES.get(kind)
    if cls is None:
        known = ", ".join(sorted(INCOMING_TYPES))
        raise RequestRejected("UNKNOWN_TYPE", f"unknown message type {kind!r}; this server accepts {known}")
    try:
        request = _strict_converter.structure(raw, cls)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        raise RequestRejected("INVALID_MESSAGE", f"{kind}: {_describe(exc)}") from None
    _check(request)
    return request


def _describe(exc: BaseException) -> str:
    # transform_error names each bad field by its path, e.g. "... @ $.since".
    return "; ".join(cattrs.transform_error(exc, path="$"))


def _check(request: Incoming) -> None:
    if isinstance(request, SubscribeRequest):
        unknown = sorted(set(request.types or ()) - SUBSCRIBABLE_TYPES)
        if unknown:
            raise RequestRejected(
                "INVALID_MESSAGE",
                f"subscribe: unknown types {unknown}; choose from {sorted(SUBSCRIBABLE_TYPES)}",
            )
    elif request.TYPE == "resume" and request.since < 0:
        raise RequestRejected("INVALID_MESSAGE", "resume: since must be 0 or more")
