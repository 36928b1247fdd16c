"""Durable state in SQLite: what osintd must remember across restarts and crashes.

Owns: the state file (``<state dir>/osintd.sqlite3``, WAL), its schema, one
batched transaction per commit, pruning, and the clear refusal of a file it
cannot read.
Must not: decide what to store or when (the hub hands it batches), or run
SQLite on the event loop: every call goes through ``trio.to_thread``, one at
a time.

Stored: ``epoch`` and ``seq``; the replay ring (the last frames broadcast);
the events inside the scoring window (to rebuild scores); the ids of every
event broadcast in the last 90 days (so a re-fetch after a crash is deduped);
the last announced rank, trend and summary of each repository; each poll
target's ETag.  WAL with ``synchronous=NORMAL`` survives ``kill -9`` at any
moment: a transaction is either in the file or not.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Protocol

import attrs
import cattrs
import trio

from osintd.models import AnnouncedRepo, Event, TrendStatus

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILENAME = "osintd.sqlite3"
SEEN_RETENTION = 90 * 86400.0  # the Events API's own horizon

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ring (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, repo TEXT, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, created_at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (created_at);
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (at);
CREATE TABLE IF NOT EXISTS announced (repo TEXT PRIMARY KEY, rank INTEGER, trend TEXT, summary TEXT);
CREATE TABLE IF NOT EXISTS cursors (target TEXT PRIMARY KEY, etag TEXT);
CREATE TABLE IF NOT EXISTS deliveries (event_id TEXT PRIMARY KEY, received REAL NOT NULL, body TEXT NOT NULL);
"""

#: How long a webhook delivery queued here (acknowledged, not yet through the pipeline) is
#: kept for a restart to take up again; far longer than any restart, and GitHub's own
#: redelivery window.
DELIVERY_RETENTION = 7 * 86400.0

_events = cattrs.Converter()
_events.register_unstructure_hook(dt.datetime, lambda moment: moment.isoformat())
_events.register_structure_hook(dt.datetime, lambda value, _t: dt.datetime.fromisoformat(value))


def event_json(event: Event) -> str:
    """An event as the stores keep it (the state file's ``events`` rows, Redis's hashes)."""
    return json.dumps(_events.unstructure(event))


def event_from_json(text: str | bytes) -> Event:
    """Raises ``ValueError`` or ``cattrs.BaseValidationError`` for what is not a stored event."""
    return _events.structure(json.loads(text), Event)


class StateError(Exception):
    """The state file cannot be used; the message says how to recover."""


@attrs.frozen
class StoredFrame:
    seq: int
    type: str
    repo: str | None
    #: The message's JSON as the hub's frame holds it (UTF-8); the ring table keeps it as TEXT.
    payload: bytes


@attrs.frozen
class Announced:
    """What the differ last announced, repository by repository."""

    ranks: dict[str, int] = attrs.field(factory=dict)
    trends: dict[str, TrendStatus] = attrs.field(factory=dict)
    summaries: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class SavedState:
    epoch: str | None
    seq: int
    ring: list[StoredFrame]
    events: list[Event]
    seen: list[str]
    announced: Announced
    cursors: dict[str, str]
    #: Webhook deliveries acknowledged but not yet stored as events: news to take up again.
    deliveries: list[Event] = attrs.field(factory=list)


@attrs.define
class Batch:
    """Everything one transaction writes, in the order it happened."""

    frames: list[StoredFrame] = attrs.field(factory=list)
    events: list[Event] = attrs.field(factory=list)
    #: Repository → what is announced of it now (merged: the last write wins).
    announced: dict[str, AnnouncedRepo] = attrs.field(factory=dict)
    cursors: dict[str, str] = attrs.field(factory=dict)
    seq: int | None = None

    def __bool__(self) -> bool:
        return bool(self.frames or self.events or self.announced or self.cursors or self.seq is not None)


class Store(Protocol):
    """What the hub's write-ahead and the app need of durable state: this module's
    :class:`StateStore` (one node, SQLite) or ``cluster.RedisStore`` (a cluster)."""

    async def load(self) -> SavedState: ...
    async def commit(self, batch: Batch) -> None: ...
    async def set_epoch(self, epoch: str) -> None: ...
    async def keep_delivery(self, event: Event) -> None: ...
    async def close(self) -> None: ...


class StateStore:
    def __init__(self, connection: sqlite3.Connection, path: Path, ring_capacity: int, window: float) -> None:
        self._db = connection
        self.path = path
        self._ring_capacity = ring_capacity
        self._window = window
        self._lock = trio.Lock()

    # ------------------------------------------------------------ open/close

    @classmethod
    async def open(cls, state_dir: Path, *, ring_capacity: int, window: float, reset: bool = False) -> StateStore:
        path = state_dir / FILENAME
        connection = await trio.to_thread.run_sync(_connect, state_dir, path, reset)
        return cls(connection, path, ring_capacity, window)

    async def close(self) -> None:
        async with self._lock:
            await trio.to_thread.run_sync(self._db.close)

    # ------------------------------------------------------------------ read

    async def load(self) -> SavedState:
        async with self._lock:
            return await trio.to_thread.run_sync(self._load)

    def _load(self) -> SavedState:
        db = self._db
        meta = dict(db.execute("SELECT key, value FROM meta"))
        ring = [StoredFrame(seq, kind, repo, text.encode())
                for seq, kind, repo, text in db.execute("SELECT seq, type, repo, text FROM ring ORDER BY seq")]
        events = []
        for (body,) in db.execute("SELECT body FROM events ORDER BY created_at"):
            try:
                events.append(_events.structure(json.loads(body), Event))
            except (ValueError, cattrs.BaseValidationError) as exc:
                raise StateError(f"state file {self.path} holds an event osintd cannot read ({exc}); "
                                 "start once with --reset-state to begin afresh") from None
        seen = [event_id for (event_id,) in db.execute("SELECT event_id FROM seen ORDER BY at")]
        ranks, trends, summaries = {}, {}, {}
        for repo, rank, trend, summary in db.execute("SELECT repo, rank, trend, summary FROM announced"):
            if rank is not None:
                ranks[repo] = rank
            if trend is not None:
                trends[repo] = TrendStatus(trend)
            if summary is not None:
                summaries[repo] = summary
        cursors = {target: etag for target, etag in db.execute("SELECT target, etag FROM cursors")
                   if etag is not None}
        seq = meta.get("seq", "0")
        if not (seq.isascii() and seq.isdigit()):
            raise StateError(f"state file {self.path} holds a seq osintd cannot read ({seq[:40]!r}); "
                             "start once with --reset-state to begin afresh")
        return SavedState(epoch=meta.get("epoch"), seq=int(seq), ring=ring, events=events,
                          seen=seen, announced=Announced(ranks, trends, summaries), cursors=cursors,
                          deliveries=self._pending_deliveries(set(seen)))

    def _pending_deliveries(self, seen: set[str]) -> list[Event]:
        """Webhook deliveries acknowledged before a stop that never reached the write-ahead
        (their ids are not among those stored): to be taken up again, oldest first.  Each
        stays until the write-ahead stores its event (or, merged with one already stored,
        until DELIVERY_RETENTION), so a crash while they go through again loses none."""
        db = self._db
        rows = list(db.execute("SELECT event_id, received, body FROM deliveries ORDER BY received"))
        oldest = time.time() - DELIVERY_RETENTION
        done = [(event_id,) for event_id, received, _ in rows if event_id in seen or received < oldest]
        with db:
            db.executemany("DELETE FROM deliveries WHERE event_id = ?", done)
        finished = {event_id for (event_id,) in done}
        pending = []
        for event_id, _, body in rows:
            if event_id in finished:
                continue
            try:
                pending.append(_events.structure(json.loads(body), Event))
            except (ValueError, cattrs.BaseValidationError) as exc:
                raise StateError(f"state file {self.path} holds a webhook delivery osintd cannot read ({exc}); "
                                 "start once with --reset-state to begin afresh") from None
        return pending

    # ----------------------------------------------------------------- write

    async def set_epoch(self, epoch: str) -> None:
        async with self._lock:
            await trio.to_thread.run_sync(self._write, Batch(), epoch)

    async def keep_delivery(self, event: Event) -> None:
        """Store a webhook delivery's event before it is acknowledged: GitHub does not send
        again what was answered 2xx, so what is acknowledged must survive a crash.  Raises
        what the disk raises (the receiver then answers 503, and GitHub redelivers)."""
        row = (event.event_id, time.time(), json.dumps(_events.unstructure(event)))
        async with self._lock:
            await trio.to_thread.run_sync(self._keep_delivery, row)

    def _keep_delivery(self, row: tuple[str, float, str]) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?)", row)

    async def commit(self, batch: Batch) -> None:
        if not batch:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self._write, batch, None)

    def _write(self, batch: Batch, epoch: str | None) -> None:
        db = self._db
        with db:  # one transaction
            if epoch is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
            if batch.frames:
                # Decoded here, in the store's thread, not on the hub's path; TEXT, not a BLOB,
                # so that files written before (and sqlite3's shell) read the same.
                db.executemany("INSERT OR REPLACE INTO ring VALUES (?, ?, ?, ?)",
                               [(f.seq, f.type, f.repo, f.payload.decode()) for f in batch.frames])
                newest = batch.frames[-1].seq
                db.execute("DELETE FROM ring WHERE seq <= ?", (newest - self._ring_capacity,))
            if batch.events:
                db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                               [(e.event_id, e.created_at.timestamp(), json.dumps(_events.unstructure(e)))
                                for e in batch.events])
                db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)",
                               [(e.event_id, e.created_at.timestamp()) for e in batch.events])
                db.executemany("DELETE FROM deliveries WHERE event_id = ?",
                               [(e.event_id,) for e in batch.events if e.source == "webhook"])
                newest_event = max(e.created_at.timestamp() for e in batch.events)
                db.execute("DELETE FROM events WHERE created_at < ?", (newest_event - self._window,))
                db.execute("DELETE FROM seen WHERE at < ?", (newest_event - SEEN_RETENTION,))
            if batch.announced:
                _write_announced(db, batch.announced)
            if batch.cursors:
                db.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?)", list(batch.cursors.items()))
            if batch.seq is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(batch.seq),))


def _write_announced(db: sqlite3.Connection, announced: dict[str, AnnouncedRepo]) -> None:
    """Only the repositories whose announcements changed: a row per repository, none when nothing is announced."""
    db.executemany("DELETE FROM announced WHERE repo = ?", [(repo,) for repo, row in announced.items() if row.empty])
    db.executemany("INSERT OR REPLACE INTO announced VALUES (?, ?, ?, ?)",
                   [(repo, row.rank, _str(row.trend), row.summary) for repo, row in announced.items() if not row.empty])


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _connect(state_dir: Path, path: Path, reset: bool) -> sqlite3.Connection:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create state directory {state_dir}: {exc.strerror or exc}") from None
    if reset:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        log.warning("state reset: %s starts empty", path)
    hint = (f"move {path} aside (or start once with --reset-state to begin afresh; "
            "replay history and seq are then lost and clients resync)")
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # `with db:` opens and commits transactions.  "DEFERRED" rather than "": both are
        # SQLite's plain BEGIN, and typeshed types only the spelled-out levels.
        db.isolation_level = "DEFERRED"
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        db.execute("PRAGMA synchronous=NORMAL")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StateError(f"state file {path} is damaged ({check}): {hint}")
        db.executescript(_SCHEMA)
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is None:
            with db:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) != SCHEMA_VERSION:
            raise StateError(f"state file {path} has schema {version[0]}, this osintd knows {SCHEMA_VERSION}: {hint}")
    except sqlite3.DatabaseError as exc:
        raise StateError(f"state file {path} is unreadable ({exc}): {hint}") from None
    except OSError as exc:
        raise StateError(f"cannot open state file {path}: {exc.strerror or exc}") from None
    log.info("state file %s opened (journal %s)", path, mode)
    return db


