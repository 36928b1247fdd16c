"""The replay source: GH Archive files (one Events API event per line).

Owns: running the reader process (:mod:`osintd.replay_reader`, which reads,
parses and normalises the file), pacing its events by their own timestamps at
``--replay-speed`` (or passing them on as fast as the pipeline takes them),
and reporting what the reader counted and could not use.
Must not: score; a replay is "not live": event time is the only clock the
scorer uses, so rankings come out as the live run's did.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

import trio

from osintd.models import Event, SourceHealth
from osintd.replay_reader import LENGTH, Chunk, ReplayStats, decode_chunk, event_from_fields

log = logging.getLogger(__name__)

#: Events per channel item at --replay-speed max (few enough to keep the pipeline's buffers small).
SEND_BATCH = 64
#: How long a reader that has been told to stop gets before it is killed.
READER_GRACE = 2.0

__all__ = ["ReplaySource", "ReplayStats", "SEND_BATCH"]


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
        self._span = SpanGuard()
        #: The reader process's pid while it runs (None before and after).
        self.reader_pid: int | None = None

    @property
    def out_of_span(self) -> int:
        """Events dropped for a time far from the file's other events (see SpanGuard)."""
        return self._span.dropped

    async def run(self, events: trio.MemorySendChannel[Event | list[Event]],
                  health: trio.MemorySendChannel[SourceHealth]) -> None:
        error = None
        pace = _Pacing(self.speed) if self.speed is not None else None
        # aclosing: cancelled while it waits on ``events``, the generator is not inside its
        # own ``try``; only closing it runs the ``finally`` that stops the reader now rather
        # than whenever the generator is collected.
        async with contextlib.aclosing(self._read()) as chunks:
            async for chunk in chunks:
                self.stats = chunk.stats
                for warning in chunk.warnings:
                    log.warning("%s", warning)
                batch = self._span.admit([event_from_fields(fields) for fields in chunk.events])
                if chunk.done:
                    batch += self._span.finish()
                if pace is None:  # as fast as the pipeline goes: in batches
                    for start in range(0, len(batch), SEND_BATCH):
                        await events.send(batch[start:start + SEND_BATCH])
                else:
                    for event in batch:
                        await pace.wait_for(event)
                        await events.send(event)
                error = chunk.error
        stats = self.stats
        if error is not None:
            log.error("replay stopped early, after %d events from %d lines: %s", stats.events, stats.lines, error)
            await health.send(SourceHealth("replay", "down", f"Replay stopped early: {error}"))
        else:
            log.info("replay of %s finished: %d events from %d lines (%d skipped, %d unusable, "
                     "%d dated far from the others)", self.path, stats.events, stats.lines, stats.skipped_total,
                     stats.unusable, self.out_of_span)
            await health.send(SourceHealth("replay", "ok", f"Replay of {self.path.name} finished"))
        self.finished.set()

    async def _read(self) -> AsyncGenerator[Chunk, None]:
        """The reader's chunks, in order, until the one marked done."""
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "osintd.replay_reader", str(self.path)], stdout=subprocess.PIPE)
        assert process.stdout is not None  # stdout=PIPE
        self.reader_pid = process.pid
        log.info("replay of %s: reader process %d started", self.path, process.pid)
        try:
            buffer = bytearray()
            while True:
                data = await process.stdout.receive_some(1 << 20)
                if not data:
                    code = await process.wait()
                    raise RuntimeError(f"the replay reader ended without finishing {self.path.name} "
                                       f"(exit status {code}); its error, if any, is in the log above")
                buffer += data
                for chunk in _complete_chunks(buffer):
                    yield chunk
                    if chunk.done:
                        return
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process)
            self.reader_pid = None


class SpanGuard:
    """Keeps one bad timestamp from moving a replay's clock.

    A replay's "now" is its newest event time, so one line dated 9999 would decay every
    other repository to nothing for good.  An event more than ``MAX_JUMP`` after every
    event admitted so far is held back: it is admitted, with those after it, only if the
    next ``CONFIRM`` events confirm the jump (they too are that far ahead, and within
    ``MAX_JUMP`` of it: the file moved on, as concatenated hours with a gap do); if events
    near the clock come instead, it is dropped and counted (``dropped``).  The clock
    starts at the median of the first ``CONFIRM`` events, so the very first line cannot
    set it either.  Events far in the past need nothing: they are old, not scored.
    """

    MAX_JUMP = 86_400.0
    CONFIRM = 3

    def __init__(self) -> None:
        self.clock: float | None = None
        self.dropped = 0
        self._start: list[Event] = []
        self._held: list[Event] = []

    def admit(self, events: list[Event]) -> list[Event]:
        """Those of ``events`` (in file order) that can go on now, in order."""
        out: list[Event] = []
        for event in events:
            if self.clock is None:
                self._start.append(event)
                if len(self._start) > self.CONFIRM:
                    self._begin(out)
            else:
                self._admit(event, out)
        return out

    def finish(self) -> list[Event]:
        """At the end of the file: what was waiting for the start; held events are dropped."""
        out: list[Event] = []
        if self.clock is None and self._start:
            self._begin(out)
        self.dropped += len(self._held)
        self._held = []
        return out

    def _begin(self, out: list[Event]) -> None:
        times = sorted(event.created_at.timestamp() for event in self._start)
        self.clock = times[len(times) // 2]
        start, self._start = self._start, []
        for event in start:
            self._admit(event, out)

    def _admit(self, event: Event, out: list[Event]) -> None:
        assert self.clock is not None
        at = event.created_at.timestamp()
        if at <= self.clock + self.MAX_JUMP:
            if self._held:  # back near the clock: what jumped ahead was not the file moving on
                self.dropped += len(self._held)
                self._held = []
            out.append(event)
            self.clock = max(self.clock, at)
            return
        if self._held and abs(at - self._held[0].created_at.timestamp()) > self.MAX_JUMP:
            self.dropped += len(self._held)  # not a jump these confirm: start over from this one
            self._held = []
        self._held.append(event)
        if len(self._held) > self.CONFIRM:
            held, self._held = self._held, []
            self.clock = held[0].created_at.timestamp()
            for confirmed in held:
                self._admit(confirmed, out)


def _complete_chunks(buffer: bytearray) -> list[Chunk]:
    """Take every whole chunk off the front of ``buffer``."""
    chunks = []
    offset = 0
    while len(buffer) - offset >= LENGTH.size:
        (size,) = LENGTH.unpack_from(buffer, offset)
        end = offset + LENGTH.size + size
        if end > len(buffer):
            break
        chunks.append(decode_chunk(bytes(buffer[offset + LENGTH.size:end])))
        offset = end
    del buffer[:offset]
    return chunks


async def _stop(process: trio.Process) -> None:
    """End the reader: it has finished, or the daemon is stopping and it need not."""
    assert process.stdout is not None  # opened with stdout=PIPE (ReplaySource._read)
    await process.stdout.aclose()  # a reader still writing gets EPIPE and exits quietly
    with trio.move_on_after(READER_GRACE):
        await process.wait()
        return
    process.kill()
    await process.wait()


class _Pacing:
    """Sleeps until each event is due: event time since the first event, divided by the speed."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._first: float | None = None
        self._started = 0.0

    async def wait_for(self, event: Event) -> None:
        at = event.created_at.timestamp()
        if self._first is None:  # pacing starts with the first event
            self._first, self._started = at, trio.current_time()
        await trio.sleep_until(self._started + max(at - self._first, 0.0) / self.speed)
