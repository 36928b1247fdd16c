"""The reference server of the benchmark: the `websockets` library's asyncio
server, fanning out with ``websockets.asyncio.server.broadcast()``.

It sends the stream osintd's demo sends, in the same shape: ``new_event``
messages of about 380 bytes (type, timestamp with microseconds stamped when
the message is made, event_id, repo_full_name, event_type, title, author,
url, data, seq), each encoded once and handed to ``broadcast()``.

    python reference_server.py --port P --rate 20        # Poisson arrivals, 20 msg/s on average
    python reference_server.py --port P --rate max       # as fast as it can broadcast
    python reference_server.py --port P --rate 0 --heartbeat-interval 2

HTTP on the same port: ``GET /health`` → 200, ``GET /stats`` → JSON
(connections, messages made, broadcasts).  Binds 127.0.0.1 only.
No compression (osintd has none either), a listen backlog like osintd's.

At ``--rate max`` the producer yields to the event loop after every message
and pauses while the sampled clients' write buffers hold more than
``--high-water`` bytes on average: ``broadcast()`` has no backpressure, and
without this its buffers would grow without bound whenever clients lag.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http
import json
import random
import signal

from websockets.asyncio.server import broadcast, serve

UTC = dt.timezone.utc

# The same names as osintd's demo, so both streams look alike (the venv has osintd installed).
from osintd.demo import AUTHORS, REPOSITORIES, SUBJECTS  # noqa: E402



def _templates(count: int, seed: int = 7) -> list[dict]:
    """Message bodies without timestamp and seq, shaped and sized like osintd's demo new_events."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        repo = rnd.choice(REPOSITORIES)
        base = f"https://github.com/{repo}"
        number = rnd.randint(200, 20000)
        kind = rnd.choice(("commit", "commit", "pull_request", "issue", "comment", "star", "review"))
        subject = rnd.choice(SUBJECTS)
        if kind == "commit":
            sha = f"{rnd.getrandbits(160):040x}"
            title, url = f"Fix bug in {subject}", f"{base}/commit/{sha}"
            data = {"sha": sha, "branch": "main", "additions": rnd.randint(1, 400),
                    "deletions": rnd.randint(0, 200), "files_changed": rnd.randint(1, 25)}
        elif kind == "pull_request":
            title, url = f"Speed up {subject}", f"{base}/pull/{number}"
            data = {"number": number, "merged": True, "action": "merged"}
        elif kind == "issue":
            title, url = f"Bug: {subject} returns wrong result", f"{base}/issues/{number}"
            data = {"number": number, "action": "opened"}
        elif kind == "comment":
            title = f"Comment on: Memory leak in {subject}"
            url = f"{base}/issues/{number}#issuecomment-{rnd.getrandbits(32)}"
            data = {"issue_number": number, "action": "created"}
        elif kind == "review":
            title, url = f"Review (approved): Document {subject}", f"{base}/pull/{number}#pullrequestreview"
            data = {"number": number, "state": "approved", "action": "submitted"}
        else:
            title, url, data = f"Starred {repo}", base, {"action": "started"}
        out.append({"event_id": f"{kind}_{rnd.getrandbits(48):012x}", "repo_full_name": repo,
                    "event_type": kind, "title": title, "author": rnd.choice(AUTHORS), "url": url,
                    "data": data})
    return out


class Reference:
    def __init__(self, rate: float | None, heartbeat_interval: float, high_water: int) -> None:
        self.rate = rate  # None: as fast as possible
        self.heartbeat_interval = heartbeat_interval
        self.high_water = high_water
        self.connections: set = set()
        self.seq = 0
        self.made = 0
        self.paused = 0
        self.templates = _templates(1000)

    async def handler(self, ws) -> None:
        self.connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.connections.discard(ws)

    def make(self) -> str:
        """One new_event, stamped now and encoded once (as osintd's hub does)."""
        self.seq += 1
        body = self.templates[self.seq % len(self.templates)]
        message = {"type": "new_event",
                   "timestamp": dt.datetime.now(UTC).isoformat(timespec="microseconds"),
                   **body, "seq": self.seq}
        self.made += 1
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    async def produce(self) -> None:
        if self.rate == 0:
            return
        if self.rate is None:
            await self._produce_max()
            return
        rnd = random.Random(1)
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += rnd.expovariate(self.rate)
            # Always yield, even when behind schedule: the loop must run the sockets' callbacks.
            await asyncio.sleep(max(0.0, due - loop.time()))
            broadcast(self.connections, self.make())

    async def _produce_max(self) -> None:
        checked = 0
        while True:
            if self.connections:
                broadcast(self.connections, self.make())
                checked += 1
                if checked >= 20:
                    checked = 0
                    while self._buffered() > self.high_water:
                        self.paused += 1
                        await asyncio.sleep(0.002)
            else:
                await asyncio.sleep(0.01)
                continue
            await asyncio.sleep(0)

    def _buffered(self) -> float:
        """Average write-buffer bytes over up to 32 connections."""
        sample = list(self.connections)[:: max(1, len(self.connections) // 32)][:32]
        sizes = [ws.transport.get_write_buffer_size() for ws in sample if ws.transport is not None]
        return sum(sizes) / len(sizes) if sizes else 0.0

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            broadcast(self.connections, json.dumps(
                {"type": "heartbeat", "timestamp": dt.datetime.now(UTC).isoformat(timespec="microseconds"),
                 "seq": self.seq}, separators=(",", ":")))

    def process_request(self, connection, request):
        if request.path == "/health":
            return connection.respond(http.HTTPStatus.OK, json.dumps({"status": "ok"}))
        if request.path == "/stats":
            return connection.respond(http.HTTPStatus.OK, json.dumps({
                "connections": len(self.connections), "seq": self.seq, "made": self.made, "paused": self.paused}))
        return None  # a WebSocket handshake


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", default="0", help="messages per second (Poisson), 0 for none, or max")
    parser.add_argument("--heartbeat-interval", type=float, default=3600.0)
    parser.add_argument("--high-water", type=int, default=256 * 1024)
    args = parser.parse_args()
    rate = None if args.rate == "max" else float(args.rate)
    ref = Reference(rate, args.heartbeat_interval, args.high_water)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(ref.handler, "127.0.0.1", args.port, compression=None, backlog=4096,
                     process_request=ref.process_request, max_size=64 * 1024,
                     ping_interval=20, ping_timeout=20):
        print(f"reference server on ws://127.0.0.1:{args.port}/ (rate {args.rate})", flush=True)
        tasks = [asyncio.create_task(ref.produce()), asyncio.create_task(ref.heartbeats())]
        await stop.wait()
        for task in tasks:
            task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
