"""The internal records that flow between pipeline stages.

Owns: the shapes of events, scores and rankings inside osintd.
Must not: know the wire format (``messages``/``wire`` do) or do any I/O.

All records are frozen attrs classes, so a stage can hand one to the next
without either of them having to copy it.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

if TYPE_CHECKING:
    from osintd.messages import Announcement, Outgoing


class EventType(enum.StrEnum):
    """The ``event_type`` of a ``new_event`` message: one word per GitHub activity kind."""

    COMMIT = "commit"
    PULL_REQUEST = "pull_request"
    ISSUE = "issue"
    COMMENT = "comment"
    REVIEW = "review"
    RELEASE = "release"
    STAR = "star"
    FORK = "fork"
    CREATE = "create"
    DELETE = "delete"
    DISCUSSION = "discussion"
    MEMBER = "member"
    PUBLIC = "public"
    WIKI = "wiki"


class TrendStatus(enum.StrEnum):
    """Trend statuses exactly as the guide spells them, ordered from hottest down."""

    HOT = "🔥 HOT"
    ACTIVE = "📈 ACTIVE"
    STABLE = "📊 STABLE"
    COOLING = "📉 COOLING"
    QUIET = "💤 QUIET"


class Momentum(enum.StrEnum):
    ACCELERATING = "ACCELERATING"
    STEADY = "STEADY"
    DECELERATING = "DECELERATING"


class RankChange(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    NEW = "new"
    DROPPED = "dropped"


@attrs.frozen
class Event:
    """One piece of repository activity, normalised from any source.

    ``action`` refines ``event_type`` for scoring (``merged``, ``opened``,
    ``closed``, ``tag`` …); ``created_at`` is the event's own time, never the
    time osintd saw it, so that replays score exactly like the live run.

    ``event_id`` is GitHub's identity of this sighting (the Events API ``id``, the
    webhook's ``X-GitHub-Delivery``); ``activity_key`` names the activity itself,
    the same whichever way it arrives (``osintd.normalize`` builds both;
    ``osintd.identity`` uses both).  Events stored by older versions have no
    ``activity_key``: "" (they are then deduped by id only).
    """

    event_id: str
    repo_full_name: str
    event_type: EventType
    title: str
    author: str
    url: str
    created_at: dt.datetime
    action: str | None = None
    is_bot: bool = False
    data: Mapping[str, Any] = attrs.field(factory=dict)
    #: Which source saw it: ``demo``, ``poll``, ``webhook``, ``replay`` (for metrics and merging).
    source: str = "unknown"
    activity_key: str = ""

    @property
    def weight_key(self) -> str:
        """``event_type`` or ``event_type.action``: the key the scoring weights use."""
        return f"{self.event_type}.{self.action}" if self.action else str(self.event_type)


def no_summary() -> str:
    return ""


@attrs.frozen
class RepoScore:
    """A repository's standing at one moment, as the scorer computed it.

    The one-line ``summary`` is written the first time someone reads it, by
    ``summarize`` (which the scorer makes from what the repository held at
    that moment): a scoreboard's Top 30 each carry one, but the differ reads
    one only when the repository's rate limit allows an update, so most are
    never read.  Equality leaves the summary out; it follows from the rest
    and the titles, which a RepoScore does not show.

    The reasons behind the standing: ``people`` (distinct non-bot actors in
    the window), ``people_recent`` (in the model's recent span) and
    ``drivers`` (the event kinds with the most weight in the recent span).
    """

    repo_full_name: str
    activity_score: float
    velocity: float
    momentum: Momentum
    trend_status: TrendStatus
    events_in_window: int
    people: int = 0
    people_recent: int = 0
    drivers: tuple[str, ...] = ()
    summarize: Callable[[], str] = attrs.field(default=no_summary, eq=False, repr=False)

    @functools.cached_property
    def summary(self) -> str:
        return self.summarize()


@attrs.frozen
class Scoreboard:
    """The scorer's view at one moment.

    ``top`` holds ranks 1 … ``len(top)`` (the best 30, with summaries) of the
    ``tracked`` repositories (a repository is tracked while it has at least one
    event inside the window), of those with enough people to be ranked (the
    scorer ranks them first: ``top`` may be shorter than 30).  ``ranks`` gives the exact rank of each
    repository that is in the Top 30 (with the ties at its end) now or was in
    the previous scoreboard's, or that the scorer brought up to date for this
    one (after a restore: every tracked repository); ``previous_ranks`` the
    rank in the previous scoreboard of each repository now in that head that
    was ranked then.  ``untracked`` are the repositories that left since the
    previous scoreboard.  Only what changed is listed (and the Top 30), so a
    scoreboard costs the differ what changed, not what is tracked.
    """

    at: dt.datetime
    top: tuple[RepoScore, ...]
    tracked: int = 0
    ranks: Mapping[str, int] = attrs.field(factory=dict)
    previous_ranks: Mapping[str, int] = attrs.field(factory=dict)
    untracked: tuple[str, ...] = ()

    def rank(self, name: str) -> int | None:
        """``name``'s rank, if this scoreboard knows it (see ``ranks``)."""
        return self.ranks.get(name)


@attrs.frozen
class SourceHealth:
    """What a source says about its upstream: sent whenever that changes.

    ``state`` is ``ok``, ``degraded`` (working, with trouble) or ``down``.
    """

    component: str
    state: str
    message: str
    error_code: str | None = None
    retry_in_seconds: float | None = None
    affected_repos: tuple[str, ...] = ()
    simulated: bool = False


@attrs.frozen
class CursorMark:
    """A source's position (a poll target's ETag), sent after the events it covers.

    It travels the pipeline behind those events, so it is stored no earlier
    than they are: after a crash, polling resumes where the stored events end.
    """

    target: str
    etag: str


@attrs.frozen
class Backfill:
    """Events that were already old when osintd first saw them: scored, counted,
    remembered for dedupe and stored like any others, but never broadcast as
    ``new_event`` (they are not news).

    The rule: the demo's warm-up history is backfill; so is a GitHub poll target's
    first poll when osintd has no stored cursor (ETag) for that target (it never
    polled it before, or it runs without ``--state-dir``).  After that every new
    event is news, including events that happened during an outage, a rate-limit
    pause or a restart with the state kept (a stored cursor exists: the first poll
    after such a restart is news).  Webhook deliveries are always news, and a
    GH Archive replay sends no backfill (every replayed event is broadcast).

    It travels the pipeline as one item (sources → scorer → differ → hub), the
    scorer passing on only the events it accepted.
    """

    events: list[Event]


@attrs.frozen
class EventBatch:
    """Accepted events, in order: one channel item for the lot.  Each is news: the hub
    stamps its new_event when it broadcasts it (the message's ``timestamp`` is that
    moment), stores the event no later than that, and makes the message
    (``NewEvent.of``) only when the frame is first read: with no client connected, never."""

    events: list[Event]


@attrs.frozen
class AnnouncedRepo:
    """What has been announced of one repository: its rank while in the Top 10,
    its trend unless ``QUIET``, its last summary (``None``: nothing)."""

    rank: int | None = None
    trend: TrendStatus | None = None
    summary: str | None = None

    @property
    def empty(self) -> bool:
        return self.rank is None and self.trend is None and self.summary is None


@attrs.frozen
class BoardState:
    """A scoreboard's announcements (``messages``), the board itself (what a
    snapshot shows) and, for the state store, the repositories whose announced
    rank, trend or summary changed with it: sent by the differ as one item,
    published as one step."""

    board: Scoreboard
    announced: dict[str, AnnouncedRepo] = attrs.field(factory=dict)
    messages: tuple[Announcement, ...] = ()


#: What a source sends on the events channel: events (one, or a list of them in
#: order), backfill, and a poll target's cursor behind the events it covers.
SourceItem: TypeAlias = "Event | list[Event] | Backfill | CursorMark"

#: What the scorer passes on to the differ: accepted events (one, or a batch),
#: backfill, a source's cursor, and each scoreboard.
ScoredItem: TypeAlias = "Event | list[Event] | Backfill | CursorMark | Scoreboard"

#: What reaches the hub's inbox: from the differ, events, backfill, cursors and a
#: scoreboard with its announcements; from the monitors, messages to broadcast.
PipelineItem: TypeAlias = "EventBatch | Backfill | BoardState | CursorMark | Outgoing"
