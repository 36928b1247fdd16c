"""Prometheus metrics for ``GET /metrics``, made with prometheus-client.

Owns: the metric names, help texts and labels, and the registry.
Must not: change what it reads; every value is read at scrape time from the
object that owns it (hub, scorer, sources), except the pipeline-lag
histogram, which the differ feeds.

Besides osintd's own families: prometheus-client's process collector
(``process_resident_memory_bytes``, ``process_open_fds``, CPU, start time: what
matters at 10,000 clients) and platform collector (``python_info``), and
``osintd_build_info{version,python}``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import trio
from prometheus_client import CollectorRegistry, Histogram, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:  # for annotations only: like the poller below, what metrics reads is no hard import
    from osintd.cluster import ClusterStatus
    from osintd.hub import Hub
    from osintd.scorer import Scorer
    from osintd.server import Server
    from osintd.sources import Source
    from osintd.webhooks import WebhookReceiver

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: A labelled family's key: one label value, or a tuple of them.
LabelKey = TypeVar("LabelKey", bound=str | tuple[object, ...])


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.lag = Histogram("osintd_pipeline_lag_seconds",
                             "Seconds from an event's creation (its GitHub timestamp) to its broadcast",
                             buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600),
                             registry=self.registry)
        self._readers: list[Callable[[], Iterable[Metric]]] = [_build_info]
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def add(self, reader: Callable[[], Iterable[Metric]]) -> None:
        self._readers.append(reader)

    def collect(self) -> Iterable[Metric]:  # the prometheus-client collector protocol
        for reader in self._readers:
            yield from reader()

    def describe(self) -> Iterable[Metric]:
        return []

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _build_info() -> Iterable[Metric]:
    from osintd import __version__

    yield labelled(GaugeMetricFamily, "osintd_build_info", "osintd's version and the Python running it (always 1)",
                   ["version", "python"], {(__version__, platform.python_version()): 1})


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def labelled(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, documentation: str,
             labels: list[str], values: Mapping[LabelKey, float]) -> Metric:
    family = kind(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric([str(part) for part in key] if isinstance(key, tuple) else [str(key)], value)
    return family


def daemon_families(hub: Hub, scorer: Scorer, server: Server, sources: Sequence[Source],
                    webhooks: WebhookReceiver | None, depths: dict[str, int]) -> Iterable[Metric]:
    """Every osintd metric, read from the objects that own the numbers."""
    from osintd.github import GitHubPoller  # here: metrics must not make the poller a hard import
    from osintd.replay import ReplaySource

    stats = hub.statistics()
    yield gauge("osintd_websocket_connections", "WebSocket clients connected", stats.connections)
    yield labelled(CounterMetricFamily, "osintd_messages_broadcast", "Messages broadcast, by type",
                   ["type"], stats.broadcasts_by_type)
    yield counter("osintd_frames_delivered", "Frames written to client sockets", stats.frames_delivered)
    yield counter("osintd_slow_clients_dropped", "Clients closed with 1013 for falling behind",
                  stats.slow_consumers_dropped)
    yield labelled(CounterMetricFamily, "osintd_messages_shed", "Low-value messages shed while overloaded",
                   ["type"], stats.shed_by_type)
    now = trio.current_time()
    queued = [client.queued for client in hub.clients.values()]
    yield gauge("osintd_client_queue_depth_max", "Longest client queue", max(queued, default=0))
    yield gauge("osintd_client_queue_depth", "Messages queued for all clients", sum(queued))
    yield gauge("osintd_client_lag_seconds_max", "Seconds the most behind client's oldest waiting message waited",
                max((client.lag(now) for client in hub.clients.values()), default=0.0))
    yield labelled(GaugeMetricFamily, "osintd_pipeline_queue_depth", "Items waiting between pipeline stages",
                   ["channel"], depths)
    yield labelled(CounterMetricFamily, "osintd_events_ingested", "Events accepted, by source and type",
                   ["source", "type"], scorer.ingested)
    yield counter("osintd_events_duplicate", "Events dropped as already seen (the same event id)", scorer.duplicates)
    yield counter("osintd_events_merged", "Events not scored again: the same activity already came through the "
                  "other kind of source (webhook or Events API)", scorer.merged)
    yield labelled(CounterMetricFamily, "osintd_events_skipped",
                   "GitHub events osintd does not use (their type or their action), by source and GitHub type",
                   ["source", "type"], _skipped(sources, webhooks))
    yield counter("osintd_events_backfilled", "Events accepted as backfill (already old when first seen): "
                  "scored and stored, not broadcast", scorer.backfilled)
    yield counter("osintd_events_future_clamped", "Live events dated more than 5 minutes (the demo: 3 s) after "
                  "the wall clock: scored as of then, not later", scorer.future_clamped)
    yield counter("osintd_replay_events_out_of_span", "Replayed events dated far from the file's other events: "
                  "dropped, so one bad timestamp cannot move the replay's clock",
                  sum(source.out_of_span for source in sources if isinstance(source, ReplaySource)))
    yield gauge("osintd_seq", "Last seq delivered to clients", hub.delivered)
    yield counter("osintd_overload_episodes", "Times the server fell behind and began shedding",
                  stats.overload_episodes)
    yield counter("osintd_state_commit_failures", "State store commits that failed and were retried",
                  hub.store_failures)
    yield counter("osintd_connections_accepted", "TCP connections accepted (HTTP and WebSocket)",
                  server.connections_accepted)
    yield counter("osintd_connections_failed", "Connections ended by an unexpected error (contained)",
                  server.connections_failed)
    for source in sources:
        if isinstance(source, GitHubPoller):
            yield labelled(CounterMetricFamily, "osintd_github_requests", "GitHub API requests, by status",
                           ["status"], source.stats.requests_by_status)
            if source.rate.remaining is not None:
                yield gauge("osintd_github_rate_limit_remaining", "X-RateLimit-Remaining as last seen",
                            source.rate.remaining)
            yield counter("osintd_github_gaps", "Polls that found a whole page new", source.stats.gaps)
    if webhooks is not None:
        yield labelled(CounterMetricFamily, "osintd_webhook_deliveries", "Webhook deliveries, by outcome",
                       ["outcome"], webhooks.stats.deliveries)


def _skipped(sources: Sequence[Source], webhooks: WebhookReceiver | None) -> dict[tuple[str, str], int]:
    """(source, GitHub type) → events skipped: the Events API type for polls and replays,
    ``X-GitHub-Event`` for webhooks."""
    from osintd.github import GitHubPoller  # here, as in daemon_families: no hard imports
    from osintd.replay import ReplaySource

    counts: list[tuple[str, Mapping[str, int]]] = []
    for source in sources:
        if isinstance(source, GitHubPoller):
            counts.append(("poll", source.stats.skipped))
        elif isinstance(source, ReplaySource):
            counts.append(("replay", source.stats.skipped))
    if webhooks is not None:
        counts.append(("webhook", webhooks.stats.skipped))
    skipped: dict[tuple[str, str], int] = {}
    for name, by_type in counts:
        for kind, count in by_type.items():
            skipped[(name, kind)] = skipped.get((name, kind), 0) + count
    return skipped


def cluster_families(status: ClusterStatus) -> Iterable[Metric]:
    """A cluster node's place: role, term, the stream's end and how far behind it this node is."""
    yield labelled(GaugeMetricFamily, "osintd_cluster_leader", "1 while this node leads its cluster",
                   ["cluster", "node"], {(status.cluster, status.node): int(status.role == "leader")})
    yield gauge("osintd_cluster_stream_seq", "The last seq in the cluster's stream, as this node knows it",
                status.stream_seq)
    yield gauge("osintd_cluster_stream_lag", "Frames in the cluster's stream not yet delivered by this node",
                status.stream_lag)
    yield gauge("osintd_cluster_redis_up", "1 while this node reaches Redis", int(status.redis == "operational"))
