"""The replay's reader process: a GH Archive file, parsed and normalised beside the daemon.

Owns: the child process that reads a ``.json``/``.json.gz`` file line by line,
parses each line (orjson) and normalises it (:func:`osintd.normalize.from_events_api`);
and the format of what it writes to its stdout, which only the parent
(:class:`osintd.replay.ReplaySource`) reads.
Must not: score, pace, or log: the parent does all three (it alone knows the
log format and the clock).

Why a process: parsing and normalising are about half of the CPU an event costs
in a replay at ``--replay-speed max``, and the daemon's event loop is one core.
In a second process they run beside scoring and fan-out instead of before them.

The stream is a sequence of chunks, each a 4-byte big-endian length and then
that many bytes of pickle.  A chunk is one :class:`Chunk`: the events
normalised since the last one (as plain tuples, :func:`event_fields`, which
pickle about four times faster than attrs instances), the reader's counts so
far, and warnings for the parent to log.  The last chunk has ``done`` set, and
``error`` too if the file could not be read to its end.  Pickle is safe here:
the parent reads only its own child, started from its own installation.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import pickle
import signal
import struct
import sys
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import orjson

from osintd.models import Event, EventType
from osintd.normalize import from_events_api

#: Events per chunk: large enough that framing and pickling cost little per event.
CHUNK_EVENTS = 512
#: How many unusable lines get a warning of their own (the rest are only counted).
WARNED_LINES = 5

LENGTH = struct.Struct(">I")
_EVENT_TYPES = {member.value: member for member in EventType}

#: An event as :func:`event_fields` lays it out: :class:`Event`'s fields, the type by its value.
EventFields = tuple[str, str, str, str, str, str, dt.datetime, str | None, bool, Mapping[str, Any], str, str]


@attrs.define
class ReplayStats:
    lines: int = 0
    events: int = 0
    #: Lines osintd does not use (their type, or their action), by Events API type.
    skipped: dict[str, int] = attrs.field(factory=dict)
    unusable: int = 0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


@attrs.define
class Chunk:
    events: list[EventFields]
    stats: ReplayStats
    warnings: list[str]
    done: bool = False
    error: str | None = None


def event_fields(event: Event) -> EventFields:
    """``event`` as a plain tuple, in :class:`Event`'s field order; see :func:`event_from_fields`."""
    return (event.event_id, event.repo_full_name, event.event_type.value, event.title, event.author, event.url,
            event.created_at, event.action, event.is_bot, event.data, event.source, event.activity_key)


def event_from_fields(fields: EventFields) -> Event:
    (event_id, repo, event_type, title, author, url, created_at, action, is_bot, data, source, key) = fields
    return Event(event_id, repo, _EVENT_TYPES[event_type], title, author, url, created_at, action, is_bot, data,
                 source, key)


def encode_chunk(chunk: Chunk) -> bytes:
    body = pickle.dumps((chunk.events, attrs.astuple(chunk.stats), chunk.warnings, chunk.done, chunk.error),
                        protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


def decode_chunk(body: bytes) -> Chunk:
    events, stats, warnings, done, error = pickle.loads(body)
    return Chunk(events, ReplayStats(*stats), warnings, done, error)


class Reader:
    """Reads one file and yields chunks; the counts are the file's so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = ReplayStats()
        self._events: list[EventFields] = []
        self._warnings: list[str] = []

    def chunks(self) -> Iterator[Chunk]:
        try:
            with self._open() as handle:
                for line in handle:
                    self._take(line)
                    if len(self._events) >= CHUNK_EVENTS:
                        yield self._chunk()
        except (OSError, EOFError, zlib.error) as exc:  # unreadable, truncated or corrupt .gz
            yield self._chunk(done=True, error=f"{self.path.name}: {exc}")
            return
        yield self._chunk(done=True)

    def _open(self) -> io.BufferedIOBase:
        # Bytes: orjson parses UTF-8 itself, and a line that is not UTF-8 is just one unusable line.
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def _take(self, line: bytes) -> None:
        stats = self.stats
        stats.lines += 1
        line = line.strip()
        if not line:
            return
        try:
            item = orjson.loads(line)
            event = from_events_api(item, source="replay")
        except ValueError as exc:  # bad JSON or UTF-8 (orjson.JSONDecodeError), or Unusable
            stats.unusable += 1
            if stats.unusable <= WARNED_LINES:
                self._warnings.append(f"{self.path.name} line {stats.lines}: skipped: {exc}")
            return
        if event is None:
            kind = str(item.get("type"))  # from_events_api returns None only for an object with a type
            stats.skipped[kind] = stats.skipped.get(kind, 0) + 1
            return
        stats.events += 1
        self._events.append(event_fields(event))

    def _chunk(self, done: bool = False, error: str | None = None) -> Chunk:
        chunk = Chunk(self._events, attrs.evolve(self.stats, skipped=dict(self.stats.skipped)), self._warnings,
                      done, error)
        self._events, self._warnings = [], []
        return chunk


def main(argv: list[str], out: BinaryIO) -> int:
    if len(argv) != 1:
        print("usage: python -m osintd.replay_reader FILE (started by osintd --replay)", file=sys.stderr)
        return 2
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for chunk in Reader(Path(argv[0])).chunks():
            out.write(encode_chunk(chunk))
        out.flush()
    except BrokenPipeError:  # the daemon stopped reading: it is shutting down
        # Nothing more can be written; keep the interpreter's own flush at exit from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.stdout.buffer))
