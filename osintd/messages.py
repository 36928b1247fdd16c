"""Every message osintd sends or accepts on ``/ws/live-updates``, as attrs classes.

Owns: the fields of each message type (the guide's ten plus design.md's
``snapshot``, ``subscribed`` and ``resumed``) and of the client requests.
Must not: serialise anything (``wire`` does) or decide when a message is sent.

Each outgoing class names its wire ``type`` in the class variable ``TYPE``;
``seq`` is not a field, because the hub stamps it at broadcast time.
Optional fields default to ``None``; ``wire`` leaves them out of the JSON when unset.

The class docstrings and the ``#:`` comments above fields are the descriptions of
the published protocol (``osintd.asyncapi`` makes ``docs/asyncapi.json`` of them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal, cast

import attrs

from osintd.models import Event, Momentum, RankChange, RepoScore, TrendStatus

#: How bad it is, in the guide's four words.
Severity = Literal["info", "warning", "error", "critical"]
#: The server's health as a whole.
HealthStatus = Literal["healthy", "degraded", "unhealthy"]

@attrs.frozen
class Connection:
    """First message of every connection, sent once: who you are and where the numbering stands."""

    TYPE: ClassVar[str] = "connection"
    timestamp: dt.datetime
    client_id: str
    #: Names this run of the server's numbering; a resume works only within one epoch.
    epoch: str
    #: The last broadcast already delivered: remember it (and every later ``seq``) to resume.
    seq: int
    status: str = "connected"
    message: str = "Connected to live updates"


@attrs.frozen
class Heartbeat:
    """Every ``--heartbeat-interval`` seconds (30), whatever the filter: nothing for 60 s means a dead
    connection.  Its ``seq`` is the current one, not a new one."""

    TYPE: ClassVar[str] = "heartbeat"
    timestamp: dt.datetime


@attrs.frozen
class NewEvent:
    """A new piece of GitHub activity (never backfill: events already old when osintd first saw them)."""

    TYPE: ClassVar[str] = "new_event"
    timestamp: dt.datetime
    #: GitHub's own id: the Events API ``id`` or the webhook's ``X-GitHub-Delivery``.
    event_id: str
    repo_full_name: str
    #: One word per kind of activity (typed ``str`` here so that it is written as it is).
    event_type: str
    title: str
    author: str
    url: str
    #: Details of the activity; ``action`` refines ``event_type`` (``opened``, ``merged``, ``tag`` ...).
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event, now: dt.datetime) -> NewEvent:
        """The ``new_event`` of ``event``: its data, with its ``action`` added (last) when
        the data does not say one.  The data is shared, not copied, when nothing is added:
        neither the event nor the message ever changes it."""
        # Event.data is typed read-only, but every source builds a dict, and the wire hands
        # this one to orjson as it is (wire._payload_function), which writes only a dict.
        data = cast(dict[str, Any], event.data)
        if event.action is not None and "action" not in data:
            data = {**data, "action": event.action}
        return cls(now, event.event_id, event.repo_full_name, event.event_type.value,
                   event.title, event.author, event.url, data)


@attrs.frozen
class SummaryUpdate:
    """A repository's one-line summary changed."""

    TYPE: ClassVar[str] = "summary_update"
    timestamp: dt.datetime
    repo_full_name: str
    summary: str
    activity_score: float
    trend_status: TrendStatus
    momentum: Momentum
    events_in_window: int
    #: Distinct people (not bots) active in the scoring window.
    people: int | None = None
    #: Distinct people active in the recent span.
    people_recent: int | None = None
    #: The kinds of event with the most weight in the recent span, heaviest first.
    drivers: list[str] | None = None


@attrs.frozen
class RankingChange:
    """A move in or out of the Top 10 (of repositories with ``--min-people`` people)."""

    TYPE: ClassVar[str] = "ranking_change"
    timestamp: dt.datetime
    repo_full_name: str
    old_rank: int
    new_rank: int
    activity_score: float
    change: RankChange
    #: Why, for a repository the scoreboard still shows (left out for one gone from its Top 30).
    people: int | None = None
    people_recent: int | None = None
    drivers: list[str] | None = None


@attrs.frozen
class TrendChange:
    """A Top 30 repository's trend status changed."""

    TYPE: ClassVar[str] = "trend_change"
    timestamp: dt.datetime
    repo_full_name: str
    old_status: TrendStatus
    new_status: TrendStatus
    momentum: Momentum
    velocity: float
    activity_score: float
    people: int | None = None
    people_recent: int | None = None
    drivers: list[str] | None = None


@attrs.frozen
class MetricsUpdate:
    """Global counters, every ``--metrics-interval`` seconds (5) when one of them changed."""

    TYPE: ClassVar[str] = "metrics_update"
    timestamp: dt.datetime
    total_events: int
    active_repositories: int
    #: REST API queries answered.
    total_queries: int
    websocket_connections: int
    #: What changed since the last one, e.g. ``{"total_events": "+5"}``.
    changes: dict[str, str]


@attrs.frozen
class SystemStatus:
    """The server's health changed."""

    TYPE: ClassVar[str] = "system_status"
    timestamp: dt.datetime
    status: HealthStatus
    #: Each part's own state, e.g. ``{"api": "operational", "pipeline": "running"}``.
    components: dict[str, str]
    message: str
    severity: Severity


@attrs.frozen
class Error:
    """A source failed or the server sheds load (broadcast, with ``seq``), or your message was
    wrong (to you alone, without ``seq``)."""

    TYPE: ClassVar[str] = "error"
    timestamp: dt.datetime
    #: What to branch on: ``GITHUB_RATE_LIMITED``, ``SERVER_OVERLOADED``, ``INVALID_JSON`` ...
    error_code: str
    message: str
    severity: Severity
    #: More about it: ``retry_in_seconds``, ``affected_repos``, ``received`` (the start of your message) ...
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Pong:
    """The answer to ``ping``."""

    TYPE: ClassVar[str] = "pong"
    timestamp: dt.datetime


@attrs.frozen
class RankedRepo:
    """One row of a snapshot's Top 10 (and the answer of ``/api/v1/repos/{name}``)."""

    rank: int
    repo_full_name: str
    activity_score: float
    trend_status: TrendStatus
    momentum: Momentum
    velocity: float
    events_in_window: int
    summary: str
    people: int | None = None
    people_recent: int | None = None
    drivers: list[str] | None = None

    @classmethod
    def of(cls, rank: int, score: RepoScore) -> RankedRepo:
        return cls(rank, score.repo_full_name, score.activity_score, score.trend_status, score.momentum,
                   score.velocity, score.events_in_window, score.summary, score.people, score.people_recent,
                   list(score.drivers))


@attrs.frozen
class Snapshot:
    """The current state, sent right after ``connection`` so a dashboard is full at once.

    ``seq`` is the last broadcast this state already includes.
    """

    TYPE: ClassVar[str] = "snapshot"
    timestamp: dt.datetime
    epoch: str
    seq: int
    #: The Top 10, first place first.
    top: list[RankedRepo]
    #: The last ``metrics_update`` (without ``type`` and ``seq``); left out before the first one.
    metrics: MetricsUpdate | None
    #: The current ``system_status`` (without ``type`` and ``seq``).
    system: SystemStatus


@attrs.frozen
class Subscribed:
    """The answer to ``subscribe``: the filter now in force (a key left out means "all")."""

    TYPE: ClassVar[str] = "subscribed"
    timestamp: dt.datetime
    types: list[str] | None
    repos: list[str] | None


@attrs.frozen
class Resumed:
    """The answer to a resume: either the missed messages follow (``recovered``)
    or they cannot, ``reason`` says why, and a ``snapshot`` follows instead."""

    TYPE: ClassVar[str] = "resumed"
    timestamp: dt.datetime
    recovered: bool
    since: int
    epoch: str
    #: The last broadcast delivered when the answer was made.
    seq: int
    #: How many missed messages follow.
    replayed: int
    reason: str | None = None


Outgoing = (
    Connection | Heartbeat | NewEvent | SummaryUpdate | RankingChange | TrendChange
    | MetricsUpdate | SystemStatus | Error | Pong | Snapshot | Subscribed | Resumed
)

#: What the differ makes of a scoreboard.
Announcement = RankingChange | TrendChange | SummaryUpdate

#: The types a client may name in a subscription filter.
SUBSCRIBABLE_TYPES: frozenset[str] = frozenset(
    cls.TYPE for cls in (Heartbeat, NewEvent, SummaryUpdate, RankingChange, TrendChange,
                         MetricsUpdate, SystemStatus, Error)
)


# ---------------------------------------------------------------- client requests

@attrs.frozen
class PingRequest:
    """Are you there?  Answered with ``pong``."""

    TYPE: ClassVar[str] = "ping"


@attrs.frozen
class SubscribeRequest:
    """Choose what to receive; answered with ``subscribed``.

    ``types``/``repos`` of ``None`` (left out) mean "everything"; an empty list means nothing.
    """

    TYPE: ClassVar[str] = "subscribe"
    #: Message types to receive (heartbeats always come).
    types: list[str] | None = None
    #: Globs on ``repo_full_name`` (``*`` any run of characters, ``?`` one); at most 100 of 200 characters.
    repos: list[str] | None = None


@attrs.frozen
class ResumeRequest:
    """Replay what was missed since ``seq`` ``since`` of ``epoch``; answered with ``resumed``
    (while this connection has delivered nothing newer than ``since``)."""

    TYPE: ClassVar[str] = "resume"
    #: The last ``seq`` received.
    since: int
    #: The ``epoch`` of the ``connection`` message that numbered it.
    epoch: str


Incoming = PingRequest | SubscribeRequest | ResumeRequest
INCOMING_TYPES: dict[str, type[Incoming]] = {cls.TYPE: cls for cls in (PingRequest, SubscribeRequest, ResumeRequest)}
