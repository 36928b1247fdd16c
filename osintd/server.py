"""The listening port: one port, HTTP and WebSocket.

Owns: accepting connections, reading each request head with h11, the
handshake checks (Host, Origin, client limit, query string), answering
accepted upgrades (through ``wsio``) and running their sessions,
answering plain HTTP through ``httpapi``, and the access log (logger
``osintd.access``: one line per HTTP answer and per WebSocket session end,
its fields also passed as ``extra=`` for the JSON format; paths are logged
without their query string, which may carry a token).
Must not: let one connection's failure reach another, or the nursery that
runs them all; parse WebSocket frames (``wsio`` does).

The request head is read here once, with h11, for HTTP and WebSocket alike;
an accepted upgrade keeps nothing of it but the wsproto connection and the
client's address.  Behind a trusted proxy (``--forwarded-allow-ips``) the
client's address, scheme and host come from its X-Forwarded-* headers
(``proxy.Forwarded``): the log names that client, and the Host and Origin
checks judge the request the client made, not the proxy's.
"""

from __future__ import annotations

import datetime as dt
import errno
import http
import ipaddress
import logging
import os
import socket
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import h11
import trio

from osintd import globs, proxy, wsio
from osintd.auth import UNLIMITED, AccessSettings, Authenticator, Grant
from osintd.broadcaster import Filter
from osintd.hub import Hub
from osintd.outbox import Outbox
from osintd.httpapi import BodyCheck, HttpApi, Request, Response, problem
from osintd.messages import SUBSCRIBABLE_TYPES
from osintd.proxy import Forwarded, Origin, TrustedProxies
from osintd.session import Session, SessionSettings

if TYPE_CHECKING:
    from wsproto.connection import Connection

log = logging.getLogger(__name__)
access = logging.getLogger("osintd.access")

WS_PATH = "/ws/live-updates"
MAX_HEAD_BYTES = 16 * 1024

#: Connections accepted per turn of the event loop (see ``Server._accept``).
ACCEPT_BURST = 64
#: accept() errors that say the process or the machine is out of something: wait, then try again.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY = 0.1
#: The longest wait between accept() retries while out of descriptors (it doubles from ACCEPT_RETRY).
ACCEPT_RETRY_MAX = 5.0
#: Request bodies being received at once; the next request with a body gets 503 (each holds
#: a descriptor and up to its body limit in memory).
MAX_UNFINISHED_BODIES = 64
#: Seconds a request body may take to arrive whole, after its head.
BODY_TIMEOUT = 30.0
#: Bytes held at once by all the request bodies still arriving: four of GitHub's largest
#: deliveries.  The request whose next chunk would pass it gets 503 and is closed.
MAX_BUFFERED_BODY_BYTES = 100 * 1024 * 1024
#: accept() errors about the one connection it was taking (Linux reports pending network errors there).
ACCEPT_IGNORED_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPERM, errno.EPROTO, errno.ENETDOWN, errno.ENOPROTOOPT,
                                   errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP,
                                   errno.ENETUNREACH})


@attrs.frozen
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_clients: int = 10_000
    handshake_timeout: float = 10.0
    allowed_origins: tuple[str, ...] = ()
    session: SessionSettings = SessionSettings()
    #: The addresses people use (``--public-url``): their hosts pass the Host check, and
    #: pages served from them pass the Origin check.
    public_urls: tuple[str, ...] = ()
    #: Peers whose X-Forwarded-* headers are believed (``--forwarded-allow-ips``).
    forwarded_allow_ips: tuple[str, ...] = ()


class BadQuery(ValueError):
    pass


@attrs.frozen
class Upgrade:
    """What the query string of a WebSocket upgrade asks for."""

    filter: Filter
    snapshot: bool
    since: int | None
    epoch: str | None
    #: What the client's token may read (its filter is already within it).
    grant: Grant = UNLIMITED

    @classmethod
    def parse(cls, query: str, grant: Grant = UNLIMITED) -> Upgrade:
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        one = {key: values[-1] for key, values in params.items()}
        types = _csv(one.get("types"))
        if types is not None and (unknown := sorted(set(types) - SUBSCRIBABLE_TYPES)):
            raise BadQuery(f"unknown types {unknown}; choose from {sorted(SUBSCRIBABLE_TYPES)}")
        since = one.get("since")
        if since is not None:
            if not (since.isascii() and since.isdigit() and len(since) <= 18):
                raise BadQuery("since must be a whole number (the last seq you received)")
            if "epoch" not in one:
                raise BadQuery("since needs epoch too (both come from the connection message)")
        epoch = one.get("epoch")
        if epoch is not None and not (epoch.isascii() and epoch.isalnum() and len(epoch) <= 64):
            raise BadQuery("epoch must be the epoch of a connection message (letters and digits)")
        snapshot = one.get("snapshot", "1")
        if snapshot not in ("0", "1", "true", "false"):
            raise BadQuery("snapshot must be 0 or 1")
        repos = _csv(one.get("repos"))
        try:
            globs.check(repos or ())
        except globs.GlobError as exc:
            raise BadQuery(str(exc)) from None
        return cls(grant.narrow(types, repos), snapshot in ("1", "true"),
                   int(since) if since is not None else None, one.get("epoch"), grant)


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@attrs.define
class Accepted:
    """An upgrade that passed every check: its 101 answer, the wsproto
    connection, and what its query string asks for."""

    response: bytes | None
    connection: Connection
    upgrade: Upgrade
    #: The client's address (a trusted proxy's X-Forwarded-For, else the socket's peer).
    peer: str
    #: When its request head had arrived (trio's clock): the session's duration counts from here.
    started: float


@attrs.define
class Peer:
    """Who is on the other end of one connection: the socket's address until a request
    head says more (through a trusted proxy, each request may speak for another client)."""

    address: str


class Server:
    def __init__(self, settings: ServerSettings, hub: Hub, api: HttpApi, now: Callable[[], dt.datetime],
                 auth: Authenticator | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.api = api
        self._now = now
        self.auth = auth or Authenticator(AccessSettings(), lambda: now().timestamp())
        self.sessions = 0
        self.connections_failed = 0
        self.connections_accepted = 0
        self._unfinished_bodies = 0  # request bodies being received (see MAX_UNFINISHED_BODIES)
        self._buffered_body_bytes = 0  # what they hold so far (see MAX_BUFFERED_BODY_BYTES)
        self._accepting: trio.CancelScope | None = None
        self._public = tuple(proxy.public_url(url) for url in settings.public_urls)
        listed = (Origin.parse(text) for text in settings.allowed_origins)
        self._listed = tuple(origin for origin in listed if origin is not None)
        self._trusted = TrustedProxies.parse(settings.forwarded_allow_ips)
        # What the Host and Origin checks admit, from where the listening sockets are bound
        # (set again by serve: under socket activation they are systemd's, not --host).
        self._hosts: frozenset[str] = frozenset()
        self._origins: frozenset[Origin] = frozenset()
        self._wildcard = False
        self._bind(settings.port, [settings.host.strip("[]")])
        self._idle = trio.Event()
        self._idle.set()

    # -------------------------------------------------------------- lifecycle

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED) -> None:
        # The port actually bound (settings may say 0): own origins are on this one.
        self._bind(listeners[0].socket.getsockname()[1],
                   [proxy.display_peer(listener.socket.getsockname()) for listener in listeners])
        async with trio.open_nursery() as handlers:
            with trio.CancelScope() as self._accepting:
                async with trio.open_nursery() as accepting:
                    for listener in listeners:
                        accepting.start_soon(self._accept, listener, handlers)
                    task_status.started(listeners)
            # Accepting has stopped; open connections finish their own close
            # handshakes (the app cancels what is left after its grace period).

    async def _accept(self, listener: trio.SocketListener, handlers: trio.Nursery) -> None:
        """Take connections off ``listener``'s backlog, up to ``ACCEPT_BURST`` per turn.

        trio's ``serve_listeners`` takes one connection per turn of the event loop,
        and at saturation a turn is long: 5,000 clients took 106 s to connect (the
        reference server: 7 s).  This loop waits until the backlog is readable,
        then accepts without yielding until it is empty.  It uses a duplicate of
        the listening descriptor, so closing it never closes the listener."""
        retry = 0.0  # while out of descriptors: the wait before the next accept(), doubling
        with socket.socket(fileno=os.dup(listener.socket.fileno())) as backlog:
            backlog.setblocking(False)
            while True:
                await trio.lowlevel.wait_readable(backlog)
                for _ in range(ACCEPT_BURST):
                    try:
                        sock, _address = backlog.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in ACCEPT_CAPACITY_ERRNOS:  # out of descriptors or memory: not ours to fix
                            if not retry:  # one line an episode, not one a retry
                                log.error("accept failed (%s); retrying, waiting up to %.0f s between tries",
                                          exc, ACCEPT_RETRY_MAX)
                            retry = min(max(retry * 2, ACCEPT_RETRY), ACCEPT_RETRY_MAX)
                            await trio.sleep(retry)
                            break
                        if exc.errno in ACCEPT_IGNORED_ERRNOS:  # that connection failed before it was taken
                            continue
                        raise
                    if retry:
                        log.info("accepting connections again")
                        retry = 0.0
                    self.connections_accepted += 1
                    handlers.start_soon(self._handle_safely, trio.SocketStream(trio.socket.from_stdlib_socket(sock)))

    def stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()

    async def wait_sessions_closed(self) -> None:
        await self._idle.wait()

    # ------------------------------------------------------------ connection

    async def _handle_safely(self, stream: trio.SocketStream) -> None:
        peer = Peer(_peer_of(stream))
        try:
            accepted = await self._handle(stream, peer)
            if accepted is not None:
                # Run the session outside _handle, so the request's parsing state
                # (h11 connection, head bytes, headers) is freed, not kept per client.
                await self._serve_upgrade(stream, accepted)
        except* Exception as group:
            # One connection's failure, whatever raised it (a library bug such as
            # trio-websocket's #184 used to be), ends that connection only.
            self.connections_failed += 1
            log.warning("connection from %s failed: %s", peer.address, _describe(group),
                        exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, stream: trio.SocketStream, peer: Peer) -> Accepted | None:
        """Answer plain HTTP requests; return what an accepted upgrade needs, or None."""
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        socket_peer = peer.address
        first = True
        while True:
            with trio.move_on_after(self.settings.handshake_timeout) as timer:
                request = await self._read_head(stream, connection)
            if timer.cancelled_caught or request is None:
                return None
            started = trio.current_time()
            if isinstance(request, Response):
                sent = await self._respond(stream, connection, request)
                _log_request(peer.address, "-", "-", request.status, started, sent)
                return None
            target = request.target.decode("latin-1")
            path, _, query = target.partition("?")
            method = request.method.decode("latin-1")
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
            forwarded = Forwarded.read(socket_peer, request.headers, self._trusted)
            peer.address = forwarded.peer
            refusal = _check_head(request, headers) or self._check_host(forwarded.host)
            grant = self.auth.admit(path, query, headers) if refusal is None else UNLIMITED
            if isinstance(grant, Response):
                refusal, grant = grant, UNLIMITED
            if refusal is None and _is_upgrade(headers):
                if path != WS_PATH:
                    refusal = problem(404, "not_found", f"WebSocket connections go to {WS_PATH}")
                elif not first:
                    refusal = problem(400, "bad_request", "open a new connection for the WebSocket upgrade")
                else:
                    return await self._upgrade(stream, connection, request, headers, query, forwarded, started,
                                               grant)
            if refusal is None and path == WS_PATH:
                refusal = problem(426, "upgrade_required", f"{WS_PATH} speaks WebSocket; connect with a "
                                  "WebSocket client", ("Upgrade", "websocket"))
            answer = refusal or await self._plain(stream, connection, request, path, headers, grant)
            sent = await self._respond(stream, connection, answer, head_only=request.method == b"HEAD",
                                       close=_is_upgrade(headers))
            _log_request(peer.address, method, path, answer.status, started, sent)
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return None
            connection.start_next_cycle()
            first = False

    async def _read_head(self, stream: trio.SocketStream, connection: h11.Connection) -> h11.Request | Response | None:
        """The next request head, a Response for a malformed one, or None at EOF."""
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                return problem(exc.error_status_hint, "bad_request", f"malformed HTTP request: {exc}")
            if isinstance(event, h11.Request):
                return event
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return None
                connection.receive_data(data)
                if not data:
                    continue  # h11 turns EOF into ConnectionClosed or an error
            else:
                return None  # ConnectionClosed or PAUSED

    async def _plain(self, stream: trio.SocketStream, connection: h11.Connection, request: h11.Request, path: str,
                     headers: dict[str, str], grant: Grant = UNLIMITED) -> Response:
        """Read the body (bounded in size, in time, in how many arrive at once and in the
        bytes they hold together; a webhook's signature is computed as it streams), then route."""
        method = request.method.decode("latin-1")
        limit = self.api.body_limit(path)
        if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
            body = await self._read_body(stream, connection, limit, None)  # h11's EndOfMessage, at once
            if isinstance(body, Response):
                return body
            return await self.api.handle(Request(method, path, headers, body, grant=grant))
        early = self.api.refuse_before_body(method, path, headers)
        if early is not None:
            return early  # the body is never read: the connection closes after the answer
        if self._unfinished_bodies >= MAX_UNFINISHED_BODIES:
            return problem(503, "busy", f"{MAX_UNFINISHED_BODIES} request bodies are arriving already; retry later",
                           ("Retry-After", "5"))
        check = self.api.body_check(path, headers)
        self._unfinished_bodies += 1
        try:
            with trio.move_on_after(BODY_TIMEOUT) as timer:
                body = await self._read_body(stream, connection, limit, check)
        finally:
            self._unfinished_bodies -= 1
        if timer.cancelled_caught:
            return problem(408, "request_timeout", f"the request body did not arrive within {BODY_TIMEOUT:g} s")
        if isinstance(body, Response):
            return body
        return await self.api.handle(Request(method, path, headers, body, check, grant))

    async def _read_body(self, stream: trio.SocketStream, connection: h11.Connection, limit: int,
                         check: BodyCheck | None) -> bytes | Response:
        """The body whole, each chunk fed to ``check`` as it arrives; its bytes count
        against MAX_BUFFERED_BODY_BYTES until it is returned or refused."""
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    connection.receive_data(data)
                    if not data:
                        return problem(400, "bad_request", "connection closed before the body ended")
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limit:
                        return problem(413, "payload_too_large", f"request bodies here are limited to {limit} bytes")
                    if self._buffered_body_bytes + len(event.data) > MAX_BUFFERED_BODY_BYTES:
                        return problem(503, "busy", "too many request bodies are arriving at once; retry later",
                                       ("Retry-After", "5"))
                    self._buffered_body_bytes += len(event.data)
                    chunks.append(event.data)
                    if check is not None:
                        check.update(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks)
                else:
                    return problem(400, "bad_request", "unexpected end of request")
        finally:
            self._buffered_body_bytes -= sum(len(chunk) for chunk in chunks)

    async def _respond(self, stream: trio.SocketStream, connection: h11.Connection, answer: Response,
                       head_only: bool = False, close: bool = False) -> int:
        """Send ``answer``; errors (but a plain 404) and refused upgrades close the connection.
        The bytes sent (0 when the peer had gone)."""
        body = answer.encoded()
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store"), *answer.headers]
        if close or (answer.status >= 400 and answer.status != 404):
            headers.append(("Connection", "close"))
        try:
            data = connection.send(h11.Response(status_code=answer.status, headers=headers,
                                                reason=http.HTTPStatus(answer.status).phrase.encode()))
            if not head_only:
                data += connection.send(h11.Data(data=body))
            data += connection.send(h11.EndOfMessage())
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            return 0
        return len(data)

    # -------------------------------------------------------------- websocket

    async def _upgrade(self, stream: trio.SocketStream, connection: h11.Connection, request: h11.Request,
                       headers: dict[str, str], query: str, forwarded: Forwarded,
                       started: float, grant: Grant = UNLIMITED) -> Accepted | None:
        refusal = self._check_origin(headers.get("origin"), forwarded)
        if refusal is None and self.sessions >= self.settings.max_clients:
            refusal = problem(503, "too_many_clients",
                              f"this server takes at most {self.settings.max_clients} clients; retry later",
                              ("Retry-After", "5"))
        accepted = None
        if refusal is None:
            try:
                upgrade = Upgrade.parse(query, grant)
                # Whatever the client sent after the head (h11 holds it) belongs to the WebSocket.
                response, ws_connection = wsio.accept(request, connection.trailing_data[0])
                accepted = Accepted(response, ws_connection, upgrade, forwarded.peer, started)
            except BadQuery as exc:
                refusal = problem(400, "bad_request", str(exc))
            except wsio.HandshakeRefused as exc:
                refusal = problem(exc.status, "bad_request", f"not a valid WebSocket handshake: {exc}",
                                  *exc.headers)
        if refusal is not None:
            sent = await self._respond(stream, connection, refusal, close=True)
            _log_request(forwarded.peer, request.method.decode("latin-1"), WS_PATH, refusal.status, started, sent)
        return accepted

    async def _serve_upgrade(self, stream: trio.SocketStream, accepted: Accepted) -> None:
        """Send the 101 and run the session (one coroutine, not two: each idle client keeps it)."""
        # Counted before the first await, so --max-clients holds however many upgrade at once.
        self.sessions += 1
        self._idle = trio.Event() if self.sessions == 1 else self._idle
        try:
            session_settings = self.settings.session
            response, accepted.response = accepted.response, None  # sent once, not kept per client
            assert response is not None  # only here is it taken, once per connection
            with trio.move_on_after(self.settings.handshake_timeout) as timer:
                try:
                    await stream.send_all(response)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            handshake_bytes = len(response)
            del response
            if timer.cancelled_caught:
                return
            ws = wsio.ServerWebSocket(stream, accepted.connection, session_settings.max_message_bytes)
            upgrade = accepted.upgrade
            client = Outbox(upgrade.filter, session_settings.client_queue, session_settings.slow_client_timeout,
                            session_settings.max_behind, ws.try_write_now)
            self.hub.attach(client, snapshot=upgrade.snapshot, since=upgrade.since, epoch=upgrade.epoch)
            log.info("client %s connected from %s (%d connected)", client.client_id, accepted.peer,
                     self.hub.connection_count, extra={"client_id": client.client_id, "peer": accepted.peer})
            try:
                await Session(ws, self.hub, session_settings, client, self._now, upgrade.grant).run()
            finally:
                log.info("client %s disconnected: %s", client.client_id,
                         client.close_reason or ws.close_code or "gone",
                         extra={"client_id": client.client_id, "peer": accepted.peer})
                _log_session(accepted, client, ws, handshake_bytes)
        finally:
            self.sessions -= 1
            if self.sessions == 0:
                self._idle.set()

    # ----------------------------------------------------------------- checks

    def _check_host(self, host: str | None) -> Response | None:
        """Refuse requests for other host names (DNS rebinding) with 421.

        ``host`` is the Host the client asked for (a trusted proxy's X-Forwarded-Host
        if it sent one).  It passes when it names this server: a loopback name, an
        address a listening socket is bound to, the host of a ``--public-url`` or of an
        ``--allowed-origin``; with a wildcard bind, any IP address."""
        if host is None:
            return problem(400, "bad_request", "the Host header is required")
        name = _split_host(host)[0]
        if name in self._hosts or (self._wildcard and _is_ip(name)):
            return None
        return problem(421, "misdirected_request",
                       f"this server does not answer for host {name!r}; use localhost, or start osintd "
                       f"with --public-url naming the address people use (e.g. --public-url https://{name})")

    def _check_origin(self, origin: str | None, forwarded: Forwarded) -> Response | None:
        """Browsers send Origin; refuse pages from elsewhere with 403. No Origin passes.

        Same origin passes: a page always connects back to where it came from, so an
        Origin equal to this request's own scheme://Host (the scheme a trusted proxy
        names, else http) passes; ``_check_host`` has already admitted that Host, which
        is what keeps a rebinding page out.  So do this server on loopback, the
        ``--public-url``s and the ``--allowed-origin``s (the way to admit other sites)."""
        if origin is None or "*" in self.settings.allowed_origins:
            return None
        page = Origin.parse(origin)
        if page is not None and (page in self._origins
                                 or page == Origin.of_request(forwarded.scheme, forwarded.host)):
            return None
        log.warning("refused WebSocket from %s: origin %s", forwarded.peer, origin[:200])
        return problem(403, "forbidden_origin",
                       f"origin {origin} is not allowed; start osintd with --public-url {origin} if that "
                       f"is where people open it, or --allowed-origin {origin} to let that site's pages connect")

    def _bind(self, port: int, addresses: list[str]) -> None:
        """Where this server listens: the hosts it answers for and its own origins follow."""
        self.port = port
        bound = {address.lower() for address in addresses}
        self._wildcard = bool(bound & {"0.0.0.0", "::", ""})
        loopback = ("localhost", "127.0.0.1", "::1")
        self._hosts = frozenset({*loopback, *bound, *(origin.host for origin in (*self._public, *self._listed))})
        self._origins = frozenset({Origin(scheme, host, port) for scheme in ("http", "https") for host in loopback}
                                  | {*self._public, *self._listed})

def _peer_of(stream: trio.SocketStream) -> str:
    try:
        return proxy.display_peer(stream.socket.getpeername())
    except OSError:  # gone already (reset between accept and here)
        return "unknown"


def _log_request(peer: str, method: str, path: str, status: int, started: float, sent: int) -> None:
    """The access line of one HTTP answer.  ``path`` is without its query string: a
    query may carry a token, and nothing secret is logged."""
    duration_ms = round((trio.current_time() - started) * 1000, 1)
    access.info("%s %s %s %d %.1f ms %d B", peer, method, path, status, duration_ms, sent,
                extra={"peer": peer, "method": method, "path": path, "status": status,
                       "duration_ms": duration_ms, "bytes_sent": sent})


def _log_session(accepted: Accepted, client: Outbox, ws: wsio.ServerWebSocket, handshake_bytes: int) -> None:
    """The access line of one WebSocket session, at its end: the close code is ours when
    the server ended it, else the peer's (1006: it vanished without a Close)."""
    if client.close_reason is not None:
        code, closed_by = client.close_reason[0], "server"
    else:
        code, closed_by = ws.close_code or 1000, "client"
    duration_s = round(trio.current_time() - accepted.started, 3)
    sent = ws.bytes_sent + handshake_bytes
    access.info("%s GET %s 101 closed %d by %s after %.1f s, %d B sent, %d B received (client %s)",
                accepted.peer, WS_PATH, code, closed_by, duration_s, sent, ws.bytes_received, client.client_id,
                extra={"peer": accepted.peer, "method": "GET", "path": WS_PATH, "status": 101,
                       "client_id": client.client_id, "close_code": code, "closed_by": closed_by,
                       "duration_ms": round(duration_s * 1000, 1), "bytes_sent": sent,
                       "bytes_received": ws.bytes_received})


def _describe(group: BaseExceptionGroup) -> str:
    leaves = []
    for exc in group.exceptions:
        leaves.extend(_describe(exc).split("; ") if isinstance(exc, BaseExceptionGroup)
                      else [f"{type(exc).__name__}: {exc}"])
    return "; ".join(leaves)


def _check_head(request: h11.Request, headers: dict[str, str]) -> Response | None:
    """What h11 lets through but this server refuses (each answer closes the connection):
    an HTTP version other than 1.0/1.1, a head over MAX_HEAD_BYTES that arrived in one
    piece (h11 bounds only incomplete ones), a Host with a port that is not one, and a
    body framed twice (Content-Length and Transfer-Encoding: request smuggling)."""
    if request.http_version not in (b"1.1", b"1.0"):
        return problem(505, "http_version_not_supported", "this server speaks HTTP/1.1")
    size = len(request.method) + len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers) + 14
    if size > MAX_HEAD_BYTES:
        return problem(431, "request_header_fields_too_large",
                       f"request heads are limited to {MAX_HEAD_BYTES} bytes; this one has about {size}")
    host = headers.get("host", "")
    after = _split_host(host)[1]
    port = after[1:]
    if after and not (after.startswith(":") and port.isascii() and port.isdigit() and len(port) <= 5
                      and 0 < int(port) < 65536):
        return problem(400, "bad_request", f"the Host header's port is not a port number: {host.strip()[:100]!r}")
    if "content-length" in headers and "transfer-encoding" in headers:
        return problem(400, "bad_request", "a request may not have both Content-Length and Transfer-Encoding")
    return None


def _is_upgrade(headers: dict[str, str]) -> bool:
    return (headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in headers.get("connection", "").lower())


def _split_host(host: str) -> tuple[str, str]:
    """A Host header's name (lower case; an IPv6 address without its brackets) and what
    follows the name: "" or ":port" (or whatever the client put there)."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return (host[1:end], host[end + 1:]) if end >= 0 else (host, "?")
    if host.count(":") == 1:  # name:port (a bare v6 address has more colons, and no port)
        name, _, port = host.partition(":")
        return name, ":" + port
    return host, ""


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
