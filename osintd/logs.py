"""Logging set-up: one line per event, suited to a terminal or to journald.

Owns: the root logger's handler and format.
Must not: log anything itself.

Under systemd (``JOURNAL_STREAM`` set) journald adds its own timestamp, so
lines carry none and start with a syslog priority prefix (``<4>``) instead.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # trio-websocket logs every frame at debug; keep it at warning unless asked.
    logging.getLogger("trio-websocket").setLevel(max(root.level, logging.WARNING))
