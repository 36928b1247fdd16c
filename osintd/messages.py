"""Every message osintd sends or accepts on ``/ws/live-updates``, as attrs classes.

Owns: the fields of each message type (the guide's ten plus design.md's
``snapshot``, ``subscribed`` and ``resumed``) and of the client requests.
Must not: serialise anything (``wire`` does) or decide when a message is sent.

Each outgoing class names its wire ``type`` in the class variable ``TYPE``;
``seq`` is not a field, because the hub stamps it at broadcast time.
Optional fields default to ``None``; ``wire`` leaves them out of the JSON when unset.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, cast

import attrs

from osintd.models import Event, Momentum, RankChange, RepoScore, TrendStatus


@attrs.frozen
class Connection:
    TYPE: ClassVar[str] = "connection"
    timestamp: dt.datetime
    client_id: str
    epoch: str
    seq: int
    status: str = "connected"
    message: str = "Connected to live updates"


@attrs.frozen
class Heartbeat:
    TYPE: ClassVar[str] = "heartbeat"
    timestamp: dt.datetime


@attrs.frozen
class NewEvent:
    TYPE: ClassVar[str] = "new_event"
    timestamp: dt.datetime
    event_id: str
    repo_full_name: str
    event_type: str
    title: str
    author: str
    url: str
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
    TYPE: ClassVar[str] = "summary_update"
    timestamp: dt.datetime
    repo_full_name: str
    summary: str
    activity_score: float
    trend_status: TrendStatus
    momentum: Momentum
    events_in_window: int
    people: int | None = None
    people_recent: int | None = None
    drivers: list[str] | None = None


@attrs.frozen
class RankingChange:
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
    TYPE: ClassVar[str] = "metrics_update"
    timestamp: dt.datetime
    total_events: int
    active_repositories: int
    total_queries: int
    websocket_connections: int
    changes: dict[str, str]


@attrs.frozen
class SystemStatus:
    TYPE: ClassVar[str] = "system_status"
    timestamp: dt.datetime
    status: str
    components: dict[str, str]
    message: str
    severity: str


@attrs.frozen
class Error:
    TYPE: ClassVar[str] = "error"
    timestamp: dt.datetime
    error_code: str
    message: str
    severity: str
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Pong:
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
    top: list[RankedRepo]
    metrics: MetricsUpdate | None
    system: SystemStatus


@attrs.frozen
class Subscribed:
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
    seq: int
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
    TYPE: ClassVar[str] = "ping"


@attrs.frozen
class SubscribeRequest:
    """``types``/``repos`` of ``None`` mean "everything"; an empty list means nothing."""

    TYPE: ClassVar[str] = "subscribe"
    types: list[str] | None = None
    repos: list[str] | None = None


@attrs.frozen
class ResumeRequest:
    TYPE: ClassVar[str] = "resume"
    since: int
    epoch: str


Incoming = PingRequest | SubscribeRequest | ResumeRequest
INCOMING_TYPES: dict[str, type[Incoming]] = {cls.TYPE: cls for cls in (PingRequest, SubscribeRequest, ResumeRequest)}
