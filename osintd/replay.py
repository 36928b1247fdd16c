"""The replay source: GH Archive files (one Events API event per line).

Owns: reading ``.json``/``.json.gz`` files line by line off the event loop,
pacing them by their own timestamps at ``--replay-speed`` (or as fast as the
pipeline takes them), and counting lines it cannot use.
Must not: score; a replay is "not live": event time is the only clock the
scorer uses, so rankings come out as the live run's did.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import IO

import attrs
import orjson
import trio

from osintd.models import Event, SourceHealth
from osintd.normalize import from_events_api

log = logging.getLogger(__name__)

#: How much of the file one read off the event loop takes (about 2,000 GH Archive lines).
READ_BYTES = 2 * 1024 * 1024
#: Events per channel item at --replay-speed max (few enough to keep the pipeline's buffers small).
SEND_BATCH = 64


@attrs.define
class ReplayStats:
    lines: int = 0
    events: int = 0
    skipped_unknown: int = 0
    unusable: int = 0


class ReplaySource:
    name = "replay"
    component = "replay"
    live = False

    def __init__(self, path: Path, speed: float | None) -> None:
        """``speed`` multiplies event time (10 = ten times faster); ``None`` means as fast as possible."""
        self.path = path
        self.speed = speed
        self.stats = ReplayStats()
        self.finished = trio.Event()

    async def run(self, events: trio.MemorySendChannel[Event | list[Event]],
                  health: trio.MemorySendChannel[SourceHealth]) -> None:
        handle = await trio.to_thread.run_sync(self._open)
        try:
            first_event_time: float | None = None
            started = 0.0
            while True:
                lines = await trio.to_thread.run_sync(handle.readlines, READ_BYTES)
                if not lines:
                    break
                if self.speed is None:  # as fast as the pipeline goes: in batches
                    for start in range(0, len(lines), SEND_BATCH):
                        batch = [e for e in map(self._parse, lines[start:start + SEND_BATCH]) if e is not None]
                        if batch:
                            await events.send(batch)
                    continue
                for line in lines:
                    event = self._parse(line)
                    if event is None:
                        continue
                    at = event.created_at.timestamp()
                    if first_event_time is None:  # pacing starts with the first event
                        first_event_time, started = at, trio.current_time()
                    await trio.sleep_until(started + max(at - first_event_time, 0.0) / self.speed)
                    await events.send(event)
        finally:
            await trio.to_thread.run_sync(handle.close)
        log.info("replay of %s finished: %d events from %d lines (%d unknown types, %d unusable)",
                 self.path, self.stats.events, self.stats.lines, self.stats.skipped_unknown, self.stats.unusable)
        self.finished.set()
        await health.send(SourceHealth("replay", "ok", f"Replay of {self.path.name} finished"))

    def _open(self) -> IO[bytes]:
        # Bytes: orjson parses UTF-8 itself, and a line that is not UTF-8 is just one unusable line.
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def _parse(self, line: bytes) -> Event | None:
        self.stats.lines += 1
        line = line.strip()
        if not line:
            return None
        try:
            item = orjson.loads(line)
            event = from_events_api(item, source="replay")
        except ValueError as exc:  # bad JSON or UTF-8 (orjson.JSONDecodeError), or Unusable
            self.stats.unusable += 1
            if self.stats.unusable <= 5:
                log.warning("%s line %d: skipped: %s", self.path.name, self.stats.lines, exc)
            return None
        if event is None:
            self.stats.skipped_unknown += 1
            return None
        self.stats.events += 1
        return event
