"""Runs the guide's "Recommended Handler Structure" snippet on a real connection.

Usage: python recommended_handler_structure_harness.py SNIPPET URL SECONDS RECORD

The snippet (``recommended_handler_structure.py``, kept byte-identical to the
guide) defines ``handle_message``, ``handle_new_event`` and
``handle_ranking_change``, and names eight handlers that the guide never
defines.  This harness supplies only those eight (each prints
``[harness] <type>``), loads the snippet's text into the same namespace, then
connects to URL, sends one ``{"type": "ping"}`` after the ``connection``
message (so the server's ``pong`` reaches ``handle_pong``) and feeds every
message it receives to the snippet's ``handle_message`` for SECONDS seconds.
Before each call it appends the message, as one JSON line, to RECORD, so the
test can work out what the snippet must have printed.  It exits 0 when the
time is up; an exception inside the snippet ends it with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import websockets

# The names handle_message's table refers to but the guide does not define.
MISSING_HANDLERS = {
    "handle_connection": "connection",
    "handle_heartbeat": "heartbeat",
    "handle_summary_update": "summary_update",
    "handle_trend_change": "trend_change",
    "handle_metrics_update": "metrics_update",
    "handle_system_status": "system_status",
    "handle_error": "error",
    "handle_pong": "pong",
}


def _stub(message_type: str):
    async def handler(data: dict) -> None:
        print(f"[harness] {message_type}")
    handler.__name__ = f"handle_{message_type}"
    return handler


def load_snippet(path: str) -> dict:
    namespace: dict = {"__name__": "recommended_handler_structure"}
    for name, message_type in MISSING_HANDLERS.items():
        namespace[name] = _stub(message_type)
    code = compile(Path(path).read_text(encoding="utf-8"), path, "exec")
    exec(code, namespace)  # noqa: S102 - the guide's snippet, unchanged
    for name in MISSING_HANDLERS:
        # The snippet must not define these itself; if it did, our stubs would be dead.
        assert namespace[name].__module__ == __name__, f"snippet defines {name}"
    return namespace


async def run(handle_message, url: str, seconds: float, record: Path) -> None:
    async with websockets.connect(url) as ws:
        with record.open("w", encoding="utf-8") as out:
            try:
                async with asyncio.timeout(seconds):
                    async for raw in ws:
                        data = json.loads(raw)
                        out.write(json.dumps(data, ensure_ascii=False) + "\n")
                        out.flush()
                        await handle_message(data)
                        if data.get("type") == "connection":
                            await ws.send(json.dumps({"type": "ping"}))
            except TimeoutError:
                pass


def main(argv: list[str]) -> int:
    snippet, url, seconds, record = argv[1], argv[2], float(argv[3]), Path(argv[4])
    namespace = load_snippet(snippet)
    asyncio.run(run(namespace["handle_message"], url, seconds, record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
