"""Logging set-up: one line per event, as text (a terminal, journald) or JSON.

Owns: the root logger's handler and format (``--log-format text|json``).
Must not: log anything itself.

Text: under systemd (``JOURNAL_STREAM`` set) journald adds its own timestamp,
so lines carry none and start with a syslog priority prefix (``<4>``) instead.

JSON: one object per line, made by orjson: ``time`` (ISO 8601, UTC),
``level``, ``logger``, ``message``, then the structured fields the log call
passed with ``extra=`` (``client_id``, ``peer`` …), and ``exception`` when
there is one.  Callers pass only what may be shown: never a token or secret.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys

import orjson

FORMATS = ("text", "json")

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
#: What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a field orjson cannot encode (a Path, an enum) is shown as its text, not a crash.
        return orjson.dumps(line, default=str).decode()


def configure(level: str, format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # trio-websocket logs every frame at debug; keep it at warning unless asked.
    logging.getLogger("trio-websocket").setLevel(max(root.level, logging.WARNING))
