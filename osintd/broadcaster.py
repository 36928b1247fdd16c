"""The broadcaster: numbers every broadcast, remembers the recent ones, and
decides which client gets which frame.  No I/O, no awaits, no clock of its own.

Owns: ``seq`` and ``epoch``; the replay ring; the set of attached clients
(their :class:`~osintd.outbox.Outbox`) and their filters; what a new client
gets first (``connection``, then a snapshot or a resume's answer and the
frames it missed); how a frame is offered to every client.
Must not: await, touch a socket, read a clock (the caller passes ``now``),
decide about overload (``governor``) or durability (``writeahead``).

Theory of operation.  The hub stamps a message (:meth:`stamp`, or
:meth:`stamp_event` for a scored event): it gets the next ``seq`` and goes
into the ring.  Once it may be shown (at once, or after its batch is stored),
the hub calls :meth:`deliver`: ``delivered`` moves to its ``seq`` and the
frame is offered to every client whose filter admits it.  A client that has
fallen too far behind is detached and its outbox ended with 1013; the frame
stays shared: one object, encoded once, for every client.

Invariants:

* ``seq`` rises by one for each stamped frame; the ring holds the most recent
  ``replay_capacity`` stamped frames, consecutive by ``seq``.
* ``delivered`` <= ``seq``; frames are delivered in ``seq`` order.
* Attaching a client, computing what it missed and starting its live feed
  happen in one call without an await: no gap and no duplicate.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable

import attrs

from osintd.globs import Glob
from osintd.messages import Connection, NewEvent, Outgoing, Resumed, Snapshot
from osintd.models import Event
from osintd.outbox import BEHIND, SLOW_CONSUMER, Outbox
from osintd.store import StoredFrame
from osintd.wire import encode
from osintd.wsio import frame_payload, frame_text

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class Frame:
    """One message, encoded once, as every client receives it: ``wire`` is the
    complete WebSocket frame, the same bytes for every client.

    A broadcast's frame is made the first time anyone reads ``wire`` (a
    client's fan-out, a resume, the store, ``/api/v1/events``), and what it
    was made from is let go then: with nobody connected, nothing is encoded and
    an event's new_event is never even made.  Only the frame is kept (the ring
    holds thousands); the few who need the JSON take it back out (``payload``).

    Not frozen, for the one change it goes through (message or event →
    ``wire``); ``seq``, ``type`` and ``repo`` never change once made.
    """

    seq: int | None
    type: str
    repo: str | None
    _message: Outgoing | None = attrs.field(default=None, repr=False)
    #: An event and its announcement moment, for a new_event not made yet.
    _event: Event | None = attrs.field(default=None, repr=False)
    _at: dt.datetime | None = attrs.field(default=None, repr=False)

    @classmethod
    def of(cls, seq: int | None, type: str, repo: str | None, payload: bytes) -> Frame:
        """The frame of an already encoded message."""
        frame = cls(seq, type, repo)
        frame.wire = frame_text(payload)
        return frame

    @classmethod
    def stamped(cls, seq: int, message: Outgoing) -> Frame:
        """The frame of broadcast number ``seq``, to be encoded when first read."""
        return cls(seq, message.TYPE, getattr(message, "repo_full_name", None), message)

    @classmethod
    def of_event(cls, seq: int, event: Event, at: dt.datetime) -> Frame:
        """The frame of broadcast number ``seq``, the new_event of ``event`` announced at ``at``."""
        return cls(seq, NewEvent.TYPE, event.repo_full_name, None, event, at)

    @functools.cached_property
    def wire(self) -> bytes:
        message = self._message
        if message is None and self._event is not None and self._at is not None:
            message = NewEvent.of(self._event, self._at)
        self._message = self._event = self._at = None
        if message is None:
            raise RuntimeError(f"frame {self.seq} of type {self.type} has neither bytes nor a message")
        return frame_text(encode(message, seq=self.seq))

    @property
    def payload(self) -> bytes:
        """The message's JSON (UTF-8)."""
        return frame_payload(self.wire)

    def stored(self) -> StoredFrame:
        assert self.seq is not None, "only stamped frames are stored"
        return StoredFrame(self.seq, self.type, self.repo, self.payload)


#: Answers a Filter remembers per repository name before it starts over (a bound on memory).
FILTER_MEMORY = 4096


@attrs.frozen
class Filter:
    """A client's subscription: ``None`` admits everything of that kind.

    ``repos`` are globs (``globs``: checked against their limits before a Filter is made);
    a repository's answer is worked out once (at most ``MAX_GLOBS`` matches) and then
    remembered, so admitting a frame costs a set and a dictionary lookup."""

    types: frozenset[str] | None = None
    repos: tuple[str, ...] | None = None
    #: The limits of the client's token (``auth.Grant.scope``): nothing outside them passes,
    #: whatever the subscription asks for.
    within: Filter | None = None
    _globs: tuple[Glob, ...] | None = attrs.field(init=False, default=None, eq=False)
    _answers: dict[str, bool] = attrs.field(init=False, factory=dict, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.repos is not None:
            object.__setattr__(self, "_globs", tuple(Glob.compile(glob) for glob in self.repos))

    def admits(self, frame: Frame) -> bool:
        # The rule of admits_kind, written out: this runs for every filtered client and frame.
        if self.within is not None and not self.within.admits(frame):
            return False
        # Heartbeats always pass: clients watch them to tell a quiet feed from a dead one.
        if self.types is not None and frame.type not in self.types and frame.type != "heartbeat":
            return False
        if self._globs is not None and frame.repo is not None:
            return self._admits_repo(frame.repo)
        return True

    def admits_kind(self, type: str, repo: str | None) -> bool:
        """Whether a message of ``type`` about ``repo`` would pass (for data not sent as a
        frame: a snapshot's rows, REST answers)."""
        if self.within is not None and not self.within.admits_kind(type, repo):
            return False
        if self.types is not None and type not in self.types and type != "heartbeat":
            return False
        if self._globs is not None and repo is not None:
            return self._admits_repo(repo)
        return True

    def _admits_repo(self, name: str) -> bool:
        answers = self._answers
        answer = answers.get(name)
        if answer is None:
            assert self._globs is not None
            if len(answers) >= FILTER_MEMORY:
                answers.clear()
            answer = answers[name] = any(glob.matches(name) for glob in self._globs)
        return answer


EVERYTHING = Filter()


class Broadcaster:
    """See the module docstring."""

    def __init__(self, replay_capacity: int = 10_000, epoch: str | None = None, seq: int = 0,
                 ring: Iterable[StoredFrame] = ()) -> None:
        self.epoch = epoch or secrets.token_hex(8)
        self.seq = seq
        self.delivered = seq
        self.ring: collections.deque[Frame] = collections.deque(maxlen=replay_capacity)
        for stored in ring:
            self.ring.append(Frame.of(stored.seq, stored.type, stored.repo, stored.payload))
        self.clients: dict[str, Outbox] = {}
        #: Frames written whole or in part to clients that have since gone.
        self._frames_sent_by_gone = 0
        self.slow_consumers_dropped = 0
        self.clients_connected_total = 0
        self.broadcasts_by_type: collections.Counter[str] = collections.Counter()

    # ----------------------------------------------------------------- stamping

    def stamp(self, message: Outgoing) -> Frame:
        self.seq += 1
        return self._keep(Frame.stamped(self.seq, message))

    def stamp_event(self, event: Event, at: dt.datetime) -> Frame:
        self.seq += 1
        return self._keep(Frame.of_event(self.seq, event, at))

    def adopt(self, stored: StoredFrame) -> Frame | None:
        """A frame the cluster's leader stamped (read from the cluster's stream): it
        takes its ``seq`` here too.  None for one already had.  A gap (the stream
        trimmed past this node) starts the ring afresh, so that it stays consecutive."""
        if stored.seq <= self.delivered:
            return None
        if stored.seq != self.seq + 1:
            self.ring.clear()
        self.seq = stored.seq
        return self._keep(Frame.of(stored.seq, stored.type, stored.repo, stored.payload))

    def rollback(self) -> None:
        """Forget the frames stamped but never delivered (a cluster leader that lost its
        lease: they were never stored, and the next leader numbers its own)."""
        while self.ring and (self.ring[-1].seq or 0) > self.delivered:
            self.broadcasts_by_type[self.ring.pop().type] -= 1
        self.seq = self.delivered

    def _keep(self, frame: Frame) -> Frame:
        self.ring.append(frame)
        self.broadcasts_by_type[frame.type] += 1
        return frame

    # --------------------------------------------------------------- fanning out

    def deliver(self, frame: Frame, now: float) -> int:
        """A stamped frame may now be shown: offered to every client it is for (see :meth:`offer_all`)."""
        assert frame.seq is not None
        self.delivered = frame.seq
        return self.offer_all(frame, now)

    def offer_all(self, frame: Frame, now: float) -> int:
        """Offer ``frame`` (stamped and delivered, or one that is never stamped, a
        heartbeat) to every client whose filter admits it; how many clients had it
        queued for their sender instead of written at once.  Clients too far behind
        are dropped."""
        clients = self.clients
        if not clients:
            return 0
        queued = 0
        for client in list(clients.values()):
            admits = client.filter
            if admits is not EVERYTHING and not admits.admits(frame):
                continue
            outcome = client.offer(frame, now)
            if outcome:  # not written at once
                if outcome == BEHIND:
                    self.drop(client, now)
                else:
                    queued += 1
        return queued

    def drop(self, client: Outbox, now: float) -> None:
        """``client`` is too far behind the others: it is let go with 1013."""
        if self.clients.pop(client.client_id, None) is None:
            return
        self.slow_consumers_dropped += 1
        self._frames_sent_by_gone += client.frames_sent
        log.warning("client %s dropped: slow consumer (%.1fs behind, %d queued)",
                    client.client_id, client.lag(now), client.queued)
        client.end(SLOW_CONSUMER)

    def senders_busy(self) -> int:
        """How many clients have frames waiting for their sender."""
        return sum(1 for client in self.clients.values() if client.queued)

    # ------------------------------------------------------------------ clients

    def attach(self, client: Outbox, snapshot: Callable[[], Snapshot], now: dt.datetime, *,
               send_snapshot: bool = True, since: int | None = None, epoch: str | None = None) -> None:
        """Register ``client``: its first frames (connection, then a resume answer
        or the snapshot) go before anything live, and live frames follow.  A
        refused resume is always followed by the snapshot."""
        client.connected_seq = self.delivered
        first = [direct(Connection(now, client.client_id, self.epoch, self.delivered))]
        if since is not None:
            first.extend(self._replay(client, since, epoch, now, snapshot))
        elif send_snapshot:
            first.append(direct(snapshot()))
        client.offer_first(first)
        self.clients[client.client_id] = client
        self.clients_connected_total += 1

    def detach(self, client: Outbox) -> None:
        if self.clients.pop(client.client_id, None) is not None:
            self._frames_sent_by_gone += client.frames_sent

    def resume(self, client: Outbox, since: int, epoch: str, snapshot: Callable[[], Snapshot],
               now: dt.datetime) -> None:
        """A ``resume`` request on a live connection.

        Everything not yet taken by the sender is taken back and queued again
        in order after the answer, so the client still sees each seq once and in
        order.  If this connection has already delivered data newer than what
        the client is missing, order cannot be kept: ``recovered`` is false."""
        pending = client.take_back()
        delivered = client.last_data_seq
        # The frames meant for this client alone (pongs, errors …) stay; stamped ones are replayed.
        direct_frames = [frame for frame in pending if frame.seq is None and frame.type != "heartbeat"]
        if delivered is not None and since < delivered:
            answer = self._refuse(since, epoch, now, snapshot,
                                  "data after your since was already delivered on this connection; "
                                  "reconnect with ?since=SEQ&epoch=E to resume without a gap")
        else:
            answer = self._replay(client, since if delivered is None else max(since, delivered), epoch,
                                  now, snapshot, reported_since=since)
        client.offer_first([*answer, *direct_frames])

    def _replay(self, client: Outbox, since: int, epoch: str | None, now: dt.datetime,
                snapshot: Callable[[], Snapshot], reported_since: int | None = None) -> list[Frame]:
        reported = since if reported_since is None else reported_since
        oldest = self.ring[0].seq if self.ring else self.delivered + 1
        assert oldest is not None
        if epoch != self.epoch:
            return self._refuse(reported, epoch, now, snapshot,
                                f"epoch {epoch!r} is not the current epoch {self.epoch!r}")
        if since > self.delivered:
            return self._refuse(reported, epoch, now, snapshot,
                                f"since {since} is ahead of the current seq {self.delivered}")
        if since + 1 < oldest:
            return self._refuse(reported, epoch, now, snapshot,
                                f"messages after {since} are no longer kept (oldest kept: {oldest})")
        missed = [frame for frame in self._ring_after(since)
                  if frame.seq is not None and frame.seq <= self.delivered and client.filter.admits(frame)]
        answer = direct(Resumed(now, True, reported, self.epoch, self.delivered, len(missed)))
        return [answer, *missed]

    def _refuse(self, since: int, epoch: str | None, now: dt.datetime, snapshot: Callable[[], Snapshot],
                reason: str) -> list[Frame]:
        refusal = direct(Resumed(now, False, since, self.epoch, self.delivered, 0, reason))
        return [refusal, direct(snapshot())]

    def _ring_after(self, since: int) -> Iterable[Frame]:
        if not self.ring:
            return ()
        first = self.ring[0].seq
        assert first is not None
        return itertools.islice(self.ring, max(since - first + 1, 0), None)

    # -------------------------------------------------------------------- views

    @property
    def frames_delivered(self) -> int:
        """Frames handed to clients' sockets, over the daemon's life."""
        return self._frames_sent_by_gone + sum(client.frames_sent for client in self.clients.values())

    def end_all(self, reason: tuple[int, str]) -> None:
        for client in list(self.clients.values()):
            self.detach(client)
            client.end(reason)


def direct(message: Outgoing) -> Frame:
    """The frame of a message for one client (never stamped), encoded now."""
    return Frame.of(None, message.TYPE, None, encode(message))
