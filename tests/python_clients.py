"""N clients as people write them: the asyncio ``websockets`` library, every
message parsed with ``json.loads`` as the guide's examples do, in one Python
process (so each reads at Python speed, sharing one core).

    python tests/python_clients.py URL --clients 10 --expect 9000 [--idle 20] [--stop-after 120]

Prints ``ready`` once every client has its ``connection`` message, then, when
every client has ``--expect`` new_events (or nothing came for ``--idle``
seconds, or ``--stop-after`` passed), one JSON line per client: how many
new_events, how many distinct, whether every broadcast's ``seq`` followed the
one before, and how the connection ended (close code, or null while open).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import websockets


async def client(url: str, expect: int, idle: float, deadline: float, connected: list[int]) -> dict:
    events: list[str] = []
    seqs: list[int] = []
    close_code = None
    async with await _connect(url, deadline) as ws:
        try:
            while len(events) < expect and time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=idle)
                except asyncio.TimeoutError:
                    break
                message = json.loads(raw)
                if message["type"] == "connection":
                    connected.append(1)
                if "seq" in message and message["type"] not in ("connection", "heartbeat", "snapshot",
                                                                   "resumed"):
                    seqs.append(message["seq"])
                if message["type"] == "new_event":
                    events.append(message["event_id"])
        except websockets.ConnectionClosed as closed:
            close_code = closed.rcvd.code if closed.rcvd is not None else 1006
    consecutive = all(b == a + 1 for a, b in zip(seqs, seqs[1:]))
    return {"new_events": len(events), "distinct": len(set(events)), "consecutive": consecutive,
            "close_code": close_code, "broadcasts": len(seqs)}


async def _connect(url: str, deadline: float) -> websockets.ClientConnection:
    """Connect, retrying while nothing listens yet (``--retry-connect``: a daemon starting)."""
    while True:
        try:
            return await websockets.connect(url, max_size=2**22, ping_interval=None)
        except OSError:
            if not RETRY or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


RETRY = False


async def main() -> None:
    global RETRY
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--stop-after", type=float, default=120.0)
    parser.add_argument("--retry-connect", action="store_true")
    args = parser.parse_args()
    RETRY = args.retry_connect
    deadline = time.monotonic() + args.stop_after
    connected: list[int] = []
    tasks = [asyncio.create_task(client(args.url, args.expect, args.idle, deadline, connected))
             for _ in range(args.clients)]
    while len(connected) < args.clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    for result in await asyncio.gather(*tasks):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
