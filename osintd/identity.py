"""Identity: which events are the same activity.

Owns: the decision, event by event, between *new*, *duplicate* and *merged*,
and the bounded memory of ids and activity keys it takes.
Must not: read GitHub JSON (``normalize`` makes ``event_id`` and
``activity_key``), score, or store (the scorer asks; the state store keeps
the ids across restarts).

The rule
--------
1. **Duplicate**: an ``event_id`` seen before (a webhook redelivery, a page
   fetched again, a re-fetch after a crash).  ``event_id`` is GitHub's own
   identity (the Events API ``id``, the ``X-GitHub-Delivery``), so two events
   with distinct ids are never duplicates of each other.
2. **Merged**: the same activity already seen through the *other* kind of
   source.  Webhook deliveries (source ``webhook``) are one kind, Events API
   items (``poll`` and ``replay``) the other; an event's *channel* is its
   kind and, for the two activities GitHub announces with two webhook events,
   which of them it came by (``data.via``: a star is ``watch`` and ``star``;
   a tag created or a ref deleted is ``push`` and ``create``/``delete``).
   Sightings are counted per ``activity_key`` and channel, as a multiset: an
   event is merged when another channel already has at least as many
   sightings of its key as its own channel has with it, so the n-th sighting
   of a key by webhook matches the n-th by polling.  Two events of one
   channel with distinct ids are therefore never merged: a branch deleted and
   re-created, a pull request closed, reopened and closed, a commit pushed to
   two refs (two keys anyway), a star removed and given again are each kept
   as often as they happened.
3. **Horizon**: a sighting counts for :data:`HORIZON` (7 hours) of event time:
   it is forgotten once an event more than 7 hours newer than it has been
   seen (and the oldest, by event time, go first when more than ``capacity``
   are held).  A
   sighting of the same key after that is a new event.  Why 7 hours: GitHub
   documents that an event reaches the Events API anywhere from 30 seconds
   to 6 hours after it happened; the poller then reads it at its next poll,
   which a rate-limit pause can put off until the hourly reset.  Within 7
   hours a webhook and the poll of one activity are merged whenever GitHub
   keeps its word; later, keeping both risks counting an activity twice,
   while merging would risk losing a real repeat.
4. **New**: everything else.  Demo events (and any event without an
   ``activity_key``, such as one stored by an older osintd) are deduped by id
   only.

Memory: the last ``capacity`` ids (100,000 by default) and at most
``capacity`` sightings, each forgotten after the horizon.  After a restart
the scorer hands back the stored ids (:meth:`Identity.remember`) and replays
the stored events through :meth:`Identity.see`, which registers their keys
again: a poll of an activity the webhook brought before the restart still
merges.
"""

from __future__ import annotations

import collections
import enum
import heapq

from osintd.models import Event

__all__ = ["HORIZON", "Identity", "Verdict", "channel_of"]

#: Seconds of event time a sighting of an activity key can be matched for.
HORIZON = 7 * 3600.0

#: A key's counts after its first sighting, by channel number (made once).
_FIRST = tuple((0,) * channel + (1,) for channel in range(8))

#: Which kind of source each Event.source is, for merging (others: by id only).
_KINDS = {"webhook": "webhook", "poll": "events-api", "replay": "events-api"}


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    MERGED = "merged"


def channel_of(event: Event) -> str | None:
    """The channel ``event`` came by (see the rule), or ``None``: deduped by id only."""
    kind = _KINDS.get(event.source)
    if kind is None or not event.activity_key:
        return None
    via = event.data.get("via")
    return f"{kind}/{via}" if isinstance(via, str) else kind


class Identity:
    """Decides, for each event, whether it is new, a duplicate, or merged (see the module docstring).

    Memory, kept small because every event passes here: the ids as a set and a queue;
    per activity key a tuple of sighting counts, one per channel (``_channels`` numbers
    the channels); and a heap of the sightings by event time, to forget them in order."""

    def __init__(self, capacity: int = 100_000, horizon: float = HORIZON) -> None:
        self.capacity = capacity
        self.horizon = horizon
        #: The remembered ids, as a set to look up and a queue to forget the oldest from.
        self._ids: set[str] = set()
        self._id_order: collections.deque[str] = collections.deque()
        #: channel → its number, the index of its count in ``_counts``' tuples.
        self._channels: dict[str, int] = {}
        #: (Event.source, data.via) → channel number, or None: by id only.
        self._channel_numbers: dict[tuple[str, object], int | None] = {}
        #: activity key → how many sightings each channel has of it (immutable: no garbage-collector work).
        self._counts: dict[str, tuple[int, ...]] = {}
        #: The sightings still counted, oldest event time first: (event time, serial, key, channel).
        self._expiry: list[tuple[float, int, str, int]] = []
        self._serial = 0
        #: The newest event time seen among events that can merge.
        self._watermark = -float("inf")

    def see(self, event: Event) -> Verdict:
        """The verdict on ``event``; a new or merged event's id (and sighting) is remembered."""
        event_id = event.event_id
        ids = self._ids
        if event_id in ids:
            return Verdict.DUPLICATE
        ids.add(event_id)  # remember(), inline: every event passes here
        self._id_order.append(event_id)
        if len(self._id_order) > self.capacity:
            ids.discard(self._id_order.popleft())
        key = event.activity_key
        if not key:
            return Verdict.NEW
        via = event.data.get("via")
        channel = self._channel_numbers.get((event.source, via), -1)
        if channel == -1:
            channel = self._number(event)
        if channel is None:
            return Verdict.NEW
        return self._sight(key, channel, event.created_at.timestamp())

    def remember(self, event_id: str) -> None:
        """Remember an id as seen (the state store's ids, after a restart)."""
        self._ids.add(event_id)
        self._id_order.append(event_id)
        if len(self._id_order) > self.capacity:
            self._ids.discard(self._id_order.popleft())

    @property
    def sightings(self) -> int:
        """How many sightings are held (for tests and the curious)."""
        return len(self._expiry)

    def _number(self, event: Event) -> int | None:
        channel = channel_of(event)
        number = None if channel is None else self._channels.setdefault(channel, len(self._channels))
        self._channel_numbers[(event.source, event.data.get("via"))] = number
        return number

    def _sight(self, key: str, channel: int, at: float) -> Verdict:
        if at > self._watermark:
            self._watermark = at
        cutoff = self._watermark - self.horizon
        expiry = self._expiry
        while expiry and expiry[0][0] < cutoff:
            self._forget()
        if at < cutoff:
            return Verdict.NEW  # later than the horizon: whatever matched it is forgotten too
        counts = self._counts.get(key)
        merged = False
        if counts is None:  # nearly always
            counts = _FIRST[channel] if channel < len(_FIRST) else (0,) * channel + (1,)
        else:
            if len(counts) <= channel:
                counts += (0,) * (channel + 1 - len(counts))
            mine = counts[channel] + 1
            counts = counts[:channel] + (mine,) + counts[channel + 1:]
            merged = max(counts[:channel] + counts[channel + 1:], default=0) >= mine
        self._counts[key] = counts
        self._serial += 1
        heapq.heappush(expiry, (at, self._serial, key, channel))
        if len(expiry) > self.capacity:
            self._forget()
        return Verdict.MERGED if merged else Verdict.NEW

    def _forget(self) -> None:
        """Forget the sighting with the oldest event time."""
        _, _, key, channel = heapq.heappop(self._expiry)
        counts = self._counts[key]
        counts = counts[:channel] + (counts[channel] - 1,) + counts[channel + 1:]
        if any(counts):
            self._counts[key] = counts
        else:
            del self._counts[key]
