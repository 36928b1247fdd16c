"""Wiring: builds the pipeline and runs every task in one nursery.

Owns: choosing the sources from the settings, the channels between stages,
their sizes, start-up order and graceful shutdown.
Must not: contain pipeline logic; each stage lives in its own module.

    sources ─▶ [events] ─▶ scorer ─▶ [scored] ─▶ differ ─▶ [inbox] ─▶ hub ─▶ client queues ─▶ senders
    webhook POSTs ─▶ [events]            (a cluster's node: ─▶ Redis ─▶ the leader's [events])
    heartbeat, metrics, health monitor ───────────────────────────▶ [inbox]
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from osintd.auth import AccessSettings, Authenticator
from osintd.clock import WallClock
from osintd.config import Settings
from osintd.demo import DemoSettings, DemoSource
from osintd.differ import Differ, DifferSettings, run_differ
from osintd.github import GitHubPoller, GitHubSettings
from osintd.httpapi import HttpApi
from osintd.hub import GOING_AWAY, Hub
from osintd.models import Event, PipelineItem, ScoredItem, SourceHealth, SourceItem
from osintd.monitors import Counts, HealthMonitor, PipelineCondition, heartbeat, metrics
from osintd.replay import ReplaySource
from osintd.scorer import Scorer, ScoringModel, run_scorer
from osintd.server import Server, ServerSettings
from osintd.session import SessionSettings
from osintd.sources import Source
from osintd.store import Announced, SavedState, StateError, StateStore, Store
from osintd.metrics import Metrics, cluster_families, daemon_families
from osintd.systemd import Notifier, listeners_from_environment
from osintd.webhooks import WebhookReceiver

if TYPE_CHECKING:
    from osintd.cluster import ClusterNode, RedisStore

log = logging.getLogger(__name__)

#: Capacity, in items, of the channels from the scorer to the differ and from the differ to the hub.
PIPELINE_QUEUE = 4


@attrs.frozen
class Channels:
    """The channels between the stages of one pipeline (a cluster leader's: one per term)."""

    events_in: trio.MemorySendChannel[SourceItem]
    events_out: trio.MemoryReceiveChannel[SourceItem]
    scored_in: trio.MemorySendChannel[ScoredItem]
    scored_out: trio.MemoryReceiveChannel[ScoredItem]
    inbox_in: trio.MemorySendChannel[PipelineItem]
    inbox_out: trio.MemoryReceiveChannel[PipelineItem]
    health_in: trio.MemorySendChannel[SourceHealth]
    health_out: trio.MemoryReceiveChannel[SourceHealth]

    @classmethod
    def open(cls, event_queue: int) -> Channels:
        # Items are events or batches of up to 64, so 8 + 4 + 4 items hold at most 1,024 events
        # between a source and the hub: enough to keep every stage busy (a replay ingests as fast
        # as with dozens), few enough that at capacity the sources wait instead of the events
        # going stale in a queue, and that the garbage collector has little to walk through.
        events: tuple[trio.MemorySendChannel[SourceItem], trio.MemoryReceiveChannel[SourceItem]] = \
            trio.open_memory_channel(event_queue)
        scored: tuple[trio.MemorySendChannel[ScoredItem], trio.MemoryReceiveChannel[ScoredItem]] = \
            trio.open_memory_channel(PIPELINE_QUEUE)
        inbox: tuple[trio.MemorySendChannel[PipelineItem], trio.MemoryReceiveChannel[PipelineItem]] = \
            trio.open_memory_channel(PIPELINE_QUEUE)
        health: tuple[trio.MemorySendChannel[SourceHealth], trio.MemoryReceiveChannel[SourceHealth]] = \
            trio.open_memory_channel(64)
        return cls(*events, *scored, *inbox, *health)

    def depths_of(self) -> dict[str, Any]:
        """The channels whose fill /api/v1/stats and /metrics show, by name."""
        return {"events": self.events_in, "scored": self.scored_in, "hub_inbox": self.inbox_in}


class App:
    """One running daemon.  ``run`` serves until cancelled; ``shutdown`` ends it gracefully.

    ``sources`` replaces the sources the settings would choose (tests use that);
    a GitHub poller may be given an httpx ``transport``.
    """

    def __init__(self, settings: Settings, source: Source | None = None,
                 model: ScoringModel | None = None, listeners: list[trio.SocketListener] | None = None) -> None:
        self.settings = settings
        self._source = source
        self._model = model
        self._listeners = listeners
        self.port: int | None = None
        self.hub: Hub
        self.scorer: Scorer
        self.server: Server
        self.sources: list[Source] = []
        self.webhooks: WebhookReceiver | None = None
        self._sources_running = 0
        self._nursery: trio.Nursery | None = None
        self.store: Store | None = None
        self.cluster: ClusterNode | None = None
        #: The channels whose fill /api/v1/stats and /metrics show (a cluster node's change with its role).
        self._channels: dict[str, Any] = {}

    def _choose_sources(self, clock: WallClock) -> list[Source]:
        settings = self.settings
        if self._source is not None:
            return [self._source]
        if settings.replay is not None:
            return [ReplaySource(settings.replay, settings.replay_speed)]
        sources: list[Source] = []
        if settings.repos or settings.orgs:
            sources.append(GitHubPoller(GitHubSettings(api_url=settings.github_api_url, token=settings.github_token,
                                                       repos=settings.repos, orgs=settings.orgs),
                                        lambda: clock.now().timestamp()))
        if settings.runs_demo:
            sources.append(DemoSource(DemoSettings(rate=settings.demo_rate, seed=settings.demo_seed,
                                                   ramp=settings.demo_ramp), clock.now))
        return sources

    async def run(self, *, task_status: trio.TaskStatus[App] = trio.TASK_STATUS_IGNORED) -> None:
        if self.settings.redis_url is not None:
            from osintd.cluster import connect

            async with connect(self.settings.redis_url) as client:
                await self._run_clustered(client, task_status)
            return
        settings = self.settings
        self.clock = clock = WallClock()
        self.sources = sources = self._choose_sources(clock)
        live = all(source.live for source in sources)
        model = self._scoring_model(sources)
        self.scorer = scorer = Scorer(model, clock.now if live else None)
        self.store, saved = await self._open_store(model)
        self.metrics = metrics_registry = Metrics()
        self.hub = hub = Hub(clock.now, replay_capacity=settings.replay_capacity, store=self.store, saved=saved,
                             epoch=saved.epoch if saved else None,
                             # a replay may lag (it is not live): no overload to speak of
                             live=live,
                             # a replay's events are as old as its file: their "lag" says nothing
                             observe_lag=metrics_registry.lag.observe if live else None,
                             # most clients behind for half of what drops one: shed before dropping everyone
                             clients_behind=settings.max_behind / 2)
        if self.store is not None and (saved is None or saved.epoch is None):
            await self.store.set_epoch(hub.epoch)
        differ = Differ(DifferSettings(summary_interval=settings.summary_interval),
                        saved.announced if saved else None)
        if saved is not None:
            scorer.restore(saved.events, saved.seen, saved.announced.trends)
            for source in sources:
                if hasattr(source, "restore"):
                    source.restore(saved.cursors)
            log.info("state restored: epoch %s, seq %d, %d events in the window, %d announced trends",
                     hub.epoch, hub.seq, len(saved.events), len(saved.announced.trends))

        channels = Channels.open(settings.event_queue)
        if settings.webhook_secret:
            self.webhooks = WebhookReceiver(settings.webhook_secret, channels.events_in.clone(), clock.now,
                                            keep=self.store.keep_delivery if self.store is not None else None)
        self._channels = channels.depths_of()
        api = self._build_front()
        listeners = await self._listen()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if saved is not None and saved.deliveries:
                nursery.start_soon(_take_up, saved.deliveries, channels.events_in.clone())
            progressing = self._start_pipeline(nursery, channels, differ, api, live=live,
                                               finished=lambda: self._sources_running == 0 and self.webhooks is None)
            await self._serve(nursery, listeners, progressing, task_status,
                              "sources: " + ", ".join([s.name for s in sources]
                                                      + (["webhooks"] if self.webhooks else [])))

    async def _run_clustered(self, client: Any, task_status: trio.TaskStatus[App]) -> None:
        """One node of a cluster (``cluster.py``): it serves clients at once and follows the
        stream; the pipeline (sources, scorer, differ, monitors) runs only while it leads,
        each term afresh from the state in Redis.  Serving and the pipeline are wired as
        in :meth:`run` (the same helpers)."""
        from osintd.cluster import REDIS_DOWN, ClusterNode, Keys, RedisStore, display_url, node_identity

        settings = self.settings
        self.clock = clock = WallClock()
        self.sources = self._choose_sources(clock)
        model = self._scoring_model(self.sources)
        self.scorer = Scorer(model, clock.now)  # empty until this node leads
        store = RedisStore(client, Keys(settings.cluster), settings.replay_capacity, model.window)
        try:
            epoch = await store.epoch(secrets.token_hex(8))
            seq, ring = await store.tail()
        except REDIS_DOWN as exc:
            raise StateError(f"cannot reach Redis at {display_url(settings.redis_url or '')}: {exc}") from None
        self.store = store
        self.metrics = metrics_registry = Metrics()
        self.hub = hub = Hub(clock.now, replay_capacity=settings.replay_capacity, store=store,
                             saved=SavedState(epoch, seq, ring, [], [], Announced(), {}), epoch=epoch, live=True,
                             observe_lag=metrics_registry.lag.observe, clients_behind=settings.max_behind / 2,
                             clustered=True)
        # Any node takes deliveries: verified here, stored in the cluster's stream, fed by the leader.
        if settings.webhook_secret:
            self.webhooks = WebhookReceiver(settings.webhook_secret, None, clock.now, keep=store.keep_delivery)
        node_box: list[ClusterNode] = []
        api = self._build_front(cluster_status=lambda: attrs.asdict(node_box[0].status()) if node_box else None)
        metrics_registry.add(lambda: cluster_families(node_box[0].status()) if node_box else ())
        listeners = await self._listen()
        assert self.port is not None

        def follow(nursery: trio.Nursery) -> None:
            inbox_in: trio.MemorySendChannel[PipelineItem]
            inbox_out: trio.MemoryReceiveChannel[PipelineItem]
            inbox_in, inbox_out = trio.open_memory_channel(PIPELINE_QUEUE)
            self._channels = {"hub_inbox": inbox_in}
            nursery.start_soon(hub.run, inbox_out)
            nursery.start_soon(heartbeat, inbox_in, settings.heartbeat_interval, clock.now)

        async def lead(nursery: trio.Nursery, saved: SavedState) -> None:
            self._start_term(nursery, model, saved, api, store)

        self.cluster = node = ClusterNode(client, store, hub, node_identity(self.port), follow, lead)
        node_box.append(node)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(node.run)
                await self._serve(nursery, listeners, lambda: True, task_status,
                                  f"cluster {settings.cluster} through {display_url(settings.redis_url or '')}, "
                                  f"node {node.node}, epoch {hub.epoch}, seq {hub.delivered}")
        finally:  # while the Redis client is still open (shutdown's own flush would find it closed)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await hub.flush()  # a leader's last batch (fenced if it no longer leads)
                await node.release()

    def _start_term(self, nursery: trio.Nursery, model: ScoringModel, saved: SavedState, api: HttpApi,
                    store: RedisStore) -> None:
        """A cluster leader's pipeline, fresh for this term, restored from the cluster's state;
        webhook deliveries any node stored come from the cluster's stream (whether or not
        this node takes webhooks itself)."""
        settings, clock = self.settings, self.clock
        self.sources = sources = self._choose_sources(clock)
        self.scorer = scorer = Scorer(model, clock.now)
        scorer.restore(saved.events, saved.seen, saved.announced.trends)
        for source in sources:
            if hasattr(source, "restore"):
                source.restore(saved.cursors)
        differ = Differ(DifferSettings(summary_interval=settings.summary_interval), saved.announced)
        channels = Channels.open(settings.event_queue)
        self._channels = channels.depths_of()
        assert self.cluster is not None
        nursery.start_soon(store.feed_deliveries, self.cluster.node, channels.events_in.clone())
        self._start_pipeline(nursery, channels, differ, api, live=True, finished=lambda: False)

    # ------------------------------------------------------------ wiring shared by a lone daemon and a node

    def _scoring_model(self, sources: list[Source]) -> ScoringModel:
        demo = any(source.name == "demo" for source in sources)
        return self._model or attrs.evolve(ScoringModel.for_demo(self.settings.demo_rate) if demo
                                           else ScoringModel(), trend_people=self.settings.min_people)

    def _depths(self) -> dict[str, int]:
        return {name: channel.statistics().current_buffer_used for name, channel in self._channels.items()}

    def _source_status(self) -> dict[str, Any]:
        status = {source.name: source.status() for source in self.sources if hasattr(source, "status")}
        if self.webhooks is not None:
            status["webhooks"] = dict(self.webhooks.stats.deliveries)
        return status

    def _build_front(self, cluster_status: Callable[[], dict[str, Any] | None] | None = None) -> HttpApi:
        """The HTTP API, access control and the server, over ``self.hub``; the daemon's metrics.
        Sources, scorer and webhooks are read through ``self`` (a cluster leader's change per term)."""
        settings, hub = self.settings, self.hub
        self.metrics.add(lambda: daemon_families(hub, self.scorer, self.server, self.sources, self.webhooks,
                                                 self._depths()))
        api = HttpApi(hub, max_clients=settings.max_clients, client_queue=settings.client_queue,
                      pipeline_depths=self._depths, webhooks=self.webhooks, source_status=self._source_status,
                      metrics=self.metrics.render, repo_standing=lambda name: self.scorer.standing(name),
                      cluster_status=cluster_status)
        session = SessionSettings(client_queue=settings.client_queue, slow_client_timeout=settings.slow_client_timeout,
                                  max_behind=settings.max_behind,
                                  send_timeout=settings.send_timeout,
                                  ping_interval=settings.ping_interval, ping_timeout=settings.ping_timeout)
        self.auth = Authenticator(AccessSettings(settings.client_tokens, settings.jwt_secret, settings.metrics_token),
                                  lambda: self.clock.now().timestamp())
        self.server = Server(ServerSettings(settings.host, settings.port, settings.max_clients,
                                            settings.handshake_timeout, settings.allowed_origins, session,
                                            settings.public_urls, settings.forwarded_allow_ips),
                             hub, api, self.clock.now, self.auth)
        return api

    async def _listen(self) -> list[trio.SocketListener]:
        """systemd's sockets, the ones given, or new ones on --host/--port; ``self.port`` the first's."""
        settings = self.settings
        listeners = (self._listeners or listeners_from_environment()
                     or await trio.open_tcp_listeners(settings.port, host=settings.host))
        self.port = listeners[0].socket.getsockname()[1]
        return listeners

    async def _serve(self, nursery: trio.Nursery, listeners: list[trio.SocketListener],
                     progressing: Callable[[], bool], task_status: trio.TaskStatus[App], what: str) -> None:
        """Accept clients, say so (the serving line, systemd's READY), then keep systemd informed."""
        self._notifier = notifier = Notifier()
        await nursery.start(self.server.serve, listeners)
        log.info("serving ws://%s:%d/ws/live-updates (%s)", _bound_host(listeners[0], self.settings.host),
                 self.port, what)
        self.auth.report(listener.socket.getsockname() for listener in listeners)
        notifier.ready(self._status_line())  # only now: the port accepts
        nursery.start_soon(notifier.keep_watchdog_fed, progressing)
        nursery.start_soon(self._report_status, notifier)
        task_status.started(self)

    def _start_pipeline(self, nursery: trio.Nursery, channels: Channels, differ: Differ, api: HttpApi, *,
                        live: bool, finished: Callable[[], bool]) -> Callable[[], bool]:
        """Sources → scorer → differ → hub, with the monitors, in ``nursery``; ``self.sources``
        and ``self.scorer`` as chosen.  ``channels.events_in`` is closed here: each source (and
        any other feed, cloned before) holds its own clone.  Returns the watchdog's test."""
        settings, clock, hub, scorer = self.settings, self.clock, self.hub, self.scorer
        c = channels
        self._last_tick = trio.current_time()

        def tick() -> None:
            self._last_tick = trio.current_time()

        def progressing() -> bool:
            # Idle (nothing queued) is fine; queued work with no scoreboard for a while is a stall.
            recent = trio.current_time() - self._last_tick < 3 * settings.announce_interval + 1
            return recent or c.events_in.statistics().current_buffer_used == 0

        def counts() -> Counts:
            return Counts(scorer.total_events, scorer.active_repositories, api.total_queries, hub.connection_count)

        components = tuple(dict.fromkeys(getattr(source, "component", source.name) for source in self.sources))
        health = HealthMonitor(c.inbox_in.clone(), clock.now, lambda: PipelineCondition(
            running=progressing(), overloaded=hub.overloaded, finished=finished()), components)
        nursery.start_soon(hub.run, c.inbox_out)
        nursery.start_soon(health.run, c.health_out)
        nursery.start_soon(heartbeat, c.inbox_in.clone(), settings.heartbeat_interval, clock.now)
        nursery.start_soon(metrics, c.inbox_in.clone(), settings.metrics_interval, clock.now, counts)
        nursery.start_soon(run_differ, differ, c.scored_out, c.inbox_in, clock.now)
        nursery.start_soon(run_scorer, scorer, c.events_out, c.scored_in, settings.announce_interval, tick, live)
        for source in self.sources:
            self._sources_running += 1
            nursery.start_soon(self._run_source, source, c.events_in.clone(), c.health_in)
        c.events_in.close()  # the stream of events ends when every clone is closed
        return progressing

    async def _open_store(self, model: ScoringModel) -> tuple[StateStore | None, SavedState | None]:
        if self.settings.state_dir is None:
            return None, None
        store = await StateStore.open(self.settings.state_dir, ring_capacity=self.settings.replay_capacity,
                                      window=model.window, reset=self.settings.reset_state)
        return store, await store.load()

    async def _run_source(self, source: Source, events: trio.MemorySendChannel[SourceItem],
                          health: trio.MemorySendChannel[SourceHealth]) -> None:
        try:
            async with events:
                await source.run(events, health)
            log.info("source %s finished", source.name)
        finally:
            self._sources_running -= 1

    def _status_line(self) -> str:
        return (f"{self.hub.connection_count} clients, {self.scorer.total_events} events, "
                f"{self.scorer.active_repositories} repositories, seq {self.hub.delivered}: {self.hub.system.status}")

    async def _report_status(self, notifier: Notifier) -> None:
        while notifier.enabled:
            await trio.sleep(5)
            notifier.status(self._status_line())

    async def shutdown(self) -> None:
        """Stop accepting, close every client with 1001, wait a little, then stop all tasks.
        A cluster's leader commits what it has, then gives its lease up."""
        self._notifier.stopping()
        log.info("shutting down: closing %d clients", self.hub.connection_count)
        self.server.stop_accepting()
        self.hub.close_all(GOING_AWAY)
        with trio.move_on_after(self.settings.shutdown_grace):
            await self.server.wait_sessions_closed()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            if self.cluster is None:  # a cluster node does this in _run_clustered, before its client closes
                await self.hub.flush()  # what was accepted but not yet stored
                if self.store is not None:
                    await self.store.close()


def _bound_host(listener: trio.SocketListener, configured: str) -> str:
    """The address the first listener is bound to (systemd's, under socket activation)."""
    name = listener.socket.getsockname()
    host = str(name[0]) if isinstance(name, tuple) else configured
    return f"[{host}]" if ":" in host else host


async def _take_up(deliveries: list[Event], events: trio.MemorySendChannel[SourceItem]) -> None:
    """Webhook deliveries acknowledged before the last stop and never stored: news again
    (identity drops any that did get through)."""
    log.info("taking up %d webhook deliveries acknowledged before the last stop", len(deliveries))
    async with events:
        for start in range(0, len(deliveries), 64):
            await events.send(deliveries[start:start + 64])
