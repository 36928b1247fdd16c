"""The JSON wire format, made in one place by one cattrs converter.

Owns: turning message objects into JSON (UTF-8 bytes) and client JSON into request
objects, with the error codes of a malformed request.
Must not: decide who receives what, or hold any state (but for a cache of the
last timestamp it formatted).

Outgoing JSON puts ``type`` first, then the message's fields in declaration
order, leaving out optional fields (typed ``X | None``) that are None, then
``seq`` where the hub stamped one.

Encoding is on the path of every event (tens of thousands a second), so each
outgoing class gets its own function, generated once by cattrs from the
converter's hooks: no dispatch on the message's class, no dict walked twice.
"""

from __future__ import annotations

import datetime as dt
import json
import typing
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
import orjson
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.fns import identity
from cattrs.gen import make_dict_unstructure_fn_from_attrs, override

from osintd import globs
from osintd.clock import isoformat
from osintd.messages import (INCOMING_TYPES, SUBSCRIBABLE_TYPES, Incoming, Outgoing, RankedRepo, ResumeRequest,
                             SubscribeRequest)


class _LastTimestamp:
    """``clock.isoformat``, remembering the last moment it formatted.

    The differ stamps a whole batch of events with one ``now``, so every
    new_event of a batch but the first finds its text here: formatting takes
    0.9 us (astimezone + isoformat), as long as all the rest of encoding a
    new_event now.  Identity, not equality: the very same object formats the
    same way, whatever its zone.
    """

    def __init__(self) -> None:
        self._last: tuple[dt.datetime | None, str] = (None, "")  # one tuple: never a torn pair

    def __call__(self, moment: dt.datetime) -> str:
        last, text = self._last
        if moment is not last:
            text = isoformat(moment)
            self._last = (moment, text)
        return text


converter = cattrs.Converter()
converter.register_unstructure_hook(dt.datetime, _LastTimestamp())


def _strict(kind: type) -> Callable[[Any, type], Any]:
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


@attrs.frozen
class _Typed:
    """The ``TYPE`` class variable of every outgoing class, as an attribute cattrs can
    generate code for: listed before the message's own fields (and renamed ``type``),
    it makes the generated function write ``type`` first, in the one dict it builds."""

    TYPE: str


attrs.resolve_types(_Typed)


def _payload_function(cls: type) -> Callable[[Outgoing], dict[str, Any]]:
    """The function that turns a ``cls`` message into its JSON object, less ``seq``."""
    attrs.resolve_types(cls)
    fields = attrs.fields(cls)
    # A dict[str, Any] (new_event's data, error's details) goes to orjson as it is:
    # cattrs would otherwise look up a hook for each value's class, which was a third
    # of the cost of encoding a new_event, for values that are JSON primitives all
    # but always.  Whatever orjson does not write itself it hands to the converter
    # (``default=`` in ``encode``), datetimes included, so the output is the same.
    # Values typed Any, not AttributeOverride: mypy checks what a **dict holds against every
    # keyword parameter of the function, not only against its **kwargs.
    as_is: dict[str, Any] = {
        field.name: override(unstruct_hook=identity) for field in fields if field.type == dict[str, Any]}
    payload: Callable[[Outgoing], dict[str, Any]] = make_dict_unstructure_fn_from_attrs(
        [attrs.fields(_Typed).TYPE, *fields], cls, converter, TYPE=override(rename="type"), **as_is)
    if not any(type(None) in typing.get_args(field.type) for field in fields):
        return payload

    def leaving_out_none(message: Outgoing) -> dict[str, Any]:
        return {k: v for k, v in payload(message).items() if v is not None}
    return leaving_out_none


def _row_leaving_out_none(row: RankedRepo) -> dict[str, Any]:
    """A snapshot's row (nested in its ``top``), optional fields that are None left out
    like a message's."""
    return {k: v for k, v in _row(row).items() if v is not None}


attrs.resolve_types(RankedRepo)
_row = make_dict_unstructure_fn_from_attrs(list(attrs.fields(RankedRepo)), RankedRepo, converter)
converter.register_unstructure_hook(RankedRepo, _row_leaving_out_none)


_payload_functions: dict[type, Callable[[Outgoing], dict[str, Any]]] = {
    cls: _payload_function(cls) for cls in typing.get_args(Outgoing)
}


#: Datetimes anywhere in the payload go to ``default`` (the converter), as clock.isoformat
#: writes them; orjson's own form drops the microseconds when they are zero.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def encode(message: Outgoing, seq: int | None = None) -> bytes:
    """The message as one compact JSON text in UTF-8 (non-ASCII characters kept, not
    escaped): bytes, as orjson makes them and as the WebSocket frame carries them."""
    payload = _payload_functions[type(message)](message)
    if seq is not None:
        payload["seq"] = seq
    try:
        encoded = orjson.dumps(payload, default=converter.unstructure, option=_ORJSON_OPTIONS)
        # orjson (3.12 on) hands back its buffer without shrinking it: 4 KB behind a 500-byte
        # new_event.  Whoever keeps the result (a list, a cache) would pin those 4 KB; the
        # benchmark keeping 200,000 went 800 MB up and spent half its encode time faulting
        # pages in.  A copy of its own size costs 0.03-0.15 us (join of two parts always copies).
        return b"".join((encoded, b""))
    except orjson.JSONEncodeError:
        # What orjson refuses (a lone surrogate in a title, an integer beyond 64 bits) the
        # json module writes, escaped to ASCII so that the text is still valid UTF-8; the
        # dict[str, Any] fields that went to orjson as they were are unstructured first.
        return json.dumps(converter.unstructure(payload), separators=(",", ":")).encode()


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
        # orjson, not json: it refuses nesting deeper than 1,024 with an error (json recurses
        # until RecursionError, which closed the connection instead of answering).
        raw = orjson.loads(text)
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
        try:
            globs.check(request.repos or ())
        except globs.GlobError as exc:
            raise RequestRejected("INVALID_MESSAGE", f"subscribe: {exc}") from None
    elif isinstance(request, ResumeRequest) and request.since < 0:
        raise RequestRejected("INVALID_MESSAGE", "resume: since must be 0 or more")
