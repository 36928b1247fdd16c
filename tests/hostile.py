"""The acceptance form of issue 14's findings: a control client and /health beside an attack.

``watch`` is the control client, connected to a running daemon while the attack runs; the
longest silence it saw is ``max(gaps)``.  ``health_times`` times /health answers.
"""

from __future__ import annotations

import json
import time

import httpx
import trio
import trio_websocket


async def watch(url: str, gaps: list[float], stop: trio.Event, query: str = "snapshot=0&types=new_event",
                messages: list[dict] | None = None) -> None:
    """Until ``stop``: every silence between two messages goes into ``gaps`` (a silence of
    2 s or more is recorded as such), every message into ``messages`` when given."""
    async with trio_websocket.open_websocket_url(f"{url}?{query}", message_queue_size=4096) as ws:
        await ws.get_message()  # connection
        last = time.monotonic()
        while not stop.is_set():
            with trio.move_on_after(2.0):
                text = await ws.get_message()
                if messages is not None:
                    messages.append(json.loads(text))
            now = time.monotonic()
            gaps.append(now - last)
            last = now


async def health_times(http: httpx.AsyncClient, url: str, pause: float, *, status: int = 200,
                       count: int = 5) -> list[float]:
    """``count`` health checks ``pause`` apart, each answered ``status``: how long each took."""
    times = []
    for _ in range(count):
        started = time.monotonic()
        assert (await http.get(url)).status_code == status
        times.append(time.monotonic() - started)
        await trio.sleep(pause)
    return times
