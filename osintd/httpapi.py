"""The plain-HTTP side of the port: health, stats, the read-only REST API and the protocol document.

Owns: the routes and JSON bodies of every non-WebSocket request, and the
count of API queries (``total_queries``).
Must not: read or write sockets (``server`` does), or change pipeline state.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from osintd import __version__, asyncapi, wire
from osintd.hub import Hub
from osintd.messages import NewEvent, RankedRepo, RankingChange
from osintd.models import RepoScore

if TYPE_CHECKING:
    from osintd.auth import Grant  # auth builds its refusals from this module

JSON = "application/json"
DASHBOARD_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
                                "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
#: The JavaScript client is public code: any page, on any origin, may import it as a module.
CLIENT_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Access-Control-Allow-Origin", "*"),
    ("Cache-Control", "no-cache"),
)


@attrs.frozen
class Response:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return (self.body if isinstance(self.body, str) else wire.dumps(self.body)).encode()


@attrs.frozen
class Problem:
    """The body of every 4xx/5xx answer: a code to branch on and a sentence to read."""

    error: str
    message: str


def problem(status: int, error: str, message: str, *headers: tuple[str, str]) -> Response:
    return Response(status, Problem(error, message), headers)


@attrs.frozen
class Health:
    status: str
    version: str
    uptime_seconds: float


@attrs.frozen
class ComponentHealth:
    status: str
    message: str
    components: dict[str, str]
    version: str
    uptime_seconds: float
    epoch: str
    seq: int
    websocket_connections: int
    sources: dict[str, Any] | None = None


@attrs.frozen
class ClientStats:
    client_id: str
    queued: int
    frames_sent: int
    #: Seconds its oldest waiting message has waited.
    behind_seconds: float


@attrs.frozen
class WsStats:
    connections: int
    max_clients: int
    clients_connected_total: int
    messages_by_type: dict[str, int]
    frames_delivered: int
    slow_consumers_dropped: int
    shed_by_type: dict[str, int]
    #: The hub has had work waiting for two seconds: it is the bottleneck, sources are held back.
    at_capacity: bool
    #: Most clients are seconds behind at once: the server is behind them, low-value messages are shed.
    clients_behind: bool
    #: new_event messages shed because the event loop ran late (CPU-bound), and the fraction shed now.
    shed_cpu: int
    shed_fraction: float
    loop_late_ms: float
    overloaded: bool
    client_queue_capacity: int
    queue_depths: dict[str, int]
    clients: list[ClientStats]
    epoch: str
    seq: int
    replay_ring: int


class BodyCheck(Protocol):
    """A check computed over a request body as it streams in (a webhook's signature)."""

    def update(self, chunk: bytes) -> None: ...

    def matches(self) -> bool: ...


class WebhookHandler(Protocol):
    """What takes ``POST /webhooks/github`` (a ``webhooks.WebhookReceiver``)."""

    async def handle(self, headers: Mapping[str, str], body: bytes,
                     signature: BodyCheck | None = None) -> Response: ...

    def refuse_unsigned(self, headers: Mapping[str, str]) -> Response | None: ...

    def start_signature(self, headers: Mapping[str, str]) -> BodyCheck: ...


@attrs.frozen
class Request:
    """One plain-HTTP request, its body already read (within ``body_limit``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    #: What ``HttpApi.body_check`` gave for this request, fed every byte of ``body``.
    check: BodyCheck | None = None
    #: What the request's token may read (``auth``); None: no limits.
    grant: Grant | None = None


class HttpApi:
    """Routes requests to answers; ``pipeline_depths`` reports channel fill.

    ``webhooks`` (an object with ``async handle(headers, body)``) takes
    ``POST /webhooks/github`` when a webhook secret is configured;
    ``source_status`` adds the sources' own state to ``/api/v1/health``.
    """

    WEBHOOK_PATH = "/webhooks/github"

    def __init__(self, hub: Hub, *, max_clients: int, client_queue: int,
                 pipeline_depths: Callable[[], dict[str, int]], webhooks: WebhookHandler | None = None,
                 source_status: Callable[[], dict[str, Any]] | None = None,
                 metrics: Callable[[], bytes] | None = None,
                 repo_standing: Callable[[str], tuple[int, RepoScore] | None] | None = None,
                 cluster_status: Callable[[], dict[str, Any] | None] | None = None) -> None:
        """``repo_standing`` gives a repository's rank and current standing (the
        scorer's), for one outside the scoreboard's Top 30.  ``cluster_status``: a
        cluster node's place (``cluster.ClusterStatus``), added to health and stats."""
        self.cluster_status = cluster_status
        self.hub = hub
        self.repo_standing = repo_standing
        self.metrics = metrics
        self.webhooks = webhooks
        self.source_status = source_status
        self.max_clients = max_clients
        self.client_queue = client_queue
        self.pipeline_depths = pipeline_depths
        self.total_queries = 0
        self._started = time.monotonic()
        self._routes: dict[str, Callable[[], Response]] = {
            "/": self._index,
            "/client.js": lambda: _static("client.js", "text/javascript; charset=utf-8"),
            "/client.d.ts": lambda: _static("client.d.ts", "text/plain; charset=utf-8"),
            "/health": self._health,
            "/api/v1/health": self._component_health,
            "/ws/stats": self._ws_stats,
            "/metrics": self._metrics,
            "/asyncapi.json": self._asyncapi,
        }
        #: Routes whose answers a token's limits narrow (``auth.Grant``).
        self._granted_routes: dict[str, Callable[[Grant | None], Response]] = {
            "/api/v1/repos": self._repos,
            "/api/v1/events": self._events,
        }

    def body_limit(self, path: str) -> int:
        if path == self.WEBHOOK_PATH and self.webhooks is not None:
            return 25 * 1024 * 1024  # GitHub caps deliveries at 25 MB
        return 1024 * 1024

    def body_check(self, path: str, headers: Mapping[str, str]) -> BodyCheck | None:
        """A check to feed the body to as it arrives: a webhook's signature, so a 25 MB
        delivery is never hashed in one piece on the event loop."""
        if path == self.WEBHOOK_PATH and self.webhooks is not None:
            return self.webhooks.start_signature(headers)
        return None

    def refuse_before_body(self, method: str, path: str, headers: Mapping[str, str]) -> Response | None:
        """The answer to a request that no body could change, given before its body is read
        (nobody gets to make the server hold 25 MB for a request it will refuse): an
        unknown path, a wrong method, a webhook delivery without a well-formed signature."""
        if path == self.WEBHOOK_PATH:
            if self.webhooks is None:
                return problem(404, "not_found", "webhooks are off: start osintd with --webhook-secret-file")
            if method != "POST":
                return problem(405, "method_not_allowed", f"{path} takes POST", ("Allow", "POST"))
            return self.webhooks.refuse_unsigned(headers)
        if path not in self._routes and path not in self._granted_routes and not path.startswith("/api/v1/repos/"):
            return problem(404, "not_found", f"no resource at {path}; try /health, /ws/stats or /api/v1/repos")
        if method not in ("GET", "HEAD"):
            return problem(405, "method_not_allowed", f"{path} answers GET only", ("Allow", "GET, HEAD"))
        return None

    async def handle(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path == self.WEBHOOK_PATH:
            if self.webhooks is None:
                return problem(404, "not_found", "webhooks are off: start osintd with --webhook-secret-file")
            if method != "POST":
                return problem(405, "method_not_allowed", f"{path} takes POST", ("Allow", "POST"))
            return await self.webhooks.handle(request.headers, request.body, request.check)
        route = self._routes.get(path)
        granted = self._granted_routes.get(path)
        if granted is not None:
            route = functools.partial(granted, request.grant)
        if route is None and path.startswith("/api/v1/repos/"):
            route = functools.partial(self._repo, path.removeprefix("/api/v1/repos/"), request.grant)
        if route is None:
            return problem(404, "not_found", f"no resource at {path}; try /health, /ws/stats or /api/v1/repos")
        if method not in ("GET", "HEAD"):
            return problem(405, "method_not_allowed", f"{path} answers GET only", ("Allow", "GET, HEAD"))
        if path.startswith("/api/"):
            self.total_queries += 1
        return route()

    # ---------------------------------------------------------------- routes

    def _uptime(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def _index(self) -> Response:
        """The live dashboard: one page and the client module it imports from this server
        (``/client.js``), nothing loaded from elsewhere."""
        return Response(200, _static_bytes("dashboard.html"), DASHBOARD_HEADERS,
                        content_type="text/html; charset=utf-8")

    def _health(self) -> Response:
        status = self.hub.system.status
        code = 503 if status == "unhealthy" else 200
        return Response(code, Health("ok" if code == 200 else "unhealthy", __version__, self._uptime()))

    def _component_health(self) -> Response:
        system = self.hub.system
        components = dict(system.components)
        health = ComponentHealth(system.status, system.message, components, __version__,
                                 self._uptime(), self.hub.epoch, self.hub.seq,
                                 self.hub.connection_count,
                                 self.source_status() if self.source_status else None)
        return Response(200, self._with_cluster(health, role=True))

    def _with_cluster(self, body: object, role: bool = False) -> object:
        """``body`` with the cluster node's place (``role`` at the top too), when clustered."""
        cluster = self.cluster_status() if self.cluster_status is not None else None
        if cluster is None:
            return body
        fields = wire.converter.unstructure(body)
        return {**fields, **({"role": cluster["role"]} if role else {}), "cluster": cluster}

    def _ws_stats(self) -> Response:
        hub = self.hub
        now = trio.current_time()
        clients = [ClientStats(c.client_id, c.queued, c.frames_sent, round(c.lag(now), 3))
                   for c in hub.clients.values()]
        stats = hub.statistics()
        governor = stats.governor
        return Response(200, self._with_cluster(WsStats(
            connections=stats.connections,
            max_clients=self.max_clients,
            clients_connected_total=stats.clients_connected_total,
            messages_by_type=stats.broadcasts_by_type,
            frames_delivered=stats.frames_delivered,
            slow_consumers_dropped=stats.slow_consumers_dropped,
            shed_by_type=stats.shed_by_type,
            at_capacity=governor.at_capacity,
            clients_behind=governor.clients_behind,
            shed_cpu=stats.shed_cpu,
            shed_fraction=round(governor.shed_fraction, 2),
            loop_late_ms=round(governor.loop_late_ms, 1),
            overloaded=governor.overloaded,
            client_queue_capacity=self.client_queue,
            queue_depths=self.pipeline_depths(),
            clients=clients[:1000],
            epoch=hub.epoch,
            seq=hub.seq,
            replay_ring=len(hub.ring),
        )))

    def _asyncapi(self) -> Response:
        """The protocol of ``/ws/live-updates`` (docs/asyncapi.json): it changes only with the version."""
        return Response(200, asyncapi.document_bytes(), (("Cache-Control", "public, max-age=3600"),))

    def _metrics(self) -> Response:
        if self.metrics is None:
            return problem(404, "not_found", "metrics are not enabled")
        return Response(200, self.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")

    def _repos(self, grant: Grant | None) -> Response:
        top = self.hub.snapshot(grant.scope if grant is not None else None).top
        return Response(200, {"repositories": top, "seq": self.hub.seq})

    def _repo(self, name: str, grant: Grant | None) -> Response:
        if grant is not None and not grant.admits(RankingChange.TYPE, name):
            return problem(404, "not_found", f"{name} is not tracked (no events inside the window)")
        board = self.hub.board
        score = next((s for s in board.top if s.repo_full_name == name), None) if board else None
        if score is not None:
            rank = board.rank(name) if board else None
            if rank is not None:
                return Response(200, RankedRepo.of(rank, score))
        standing = self.repo_standing(name) if self.repo_standing is not None else None
        if standing is None:  # outside the Top 30 the scorer knows the rank of the last scoreboard
            return problem(404, "not_found", f"{name} is not tracked (no events inside the window)")
        return Response(200, RankedRepo.of(*standing))

    def _events(self, grant: Grant | None) -> Response:
        newest_first = (json.loads(f.payload) for f in reversed(self.hub.ring)
                        if f.type == NewEvent.TYPE and (grant is None or grant.admits(f.type, f.repo)))
        return Response(200, {"events": list(itertools.islice(newest_first, 100))})


def _static(name: str, content_type: str) -> Response:
    """The JavaScript client (``/client.js``, used by the dashboard too) and its TypeScript types."""
    return Response(200, _static_bytes(name), CLIENT_HEADERS, content_type=content_type)


@functools.cache
def _static_bytes(name: str) -> bytes:
    """A file of the package's ``static/``, read once: it changes only with the installed version."""
    return importlib.resources.files("osintd").joinpath(f"static/{name}").read_bytes()
