"""The listening port: one port, HTTP and WebSocket.

Owns: accepting connections, reading each request head with h11, the
handshake checks (Host, Origin, client limit, query string), answering
accepted upgrades (through ``wsio``) and running their sessions, and
answering plain HTTP through ``httpapi``.
Must not: let one connection's failure reach another, or the nursery that
runs them all; parse WebSocket frames (``wsio`` does).

The request head is read here once, with h11, for HTTP and WebSocket alike;
an accepted upgrade keeps nothing of it but the wsproto connection.
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

from osintd import globs, wsio
from osintd.auth import UNLIMITED, Authenticator, AccessSettings, Grant
from osintd.broadcaster import Filter
from osintd.hub import Hub
from osintd.outbox import Outbox
from osintd.httpapi import BodyCheck, HttpApi, Request, Response, problem
from osintd.messages import SUBSCRIBABLE_TYPES
from osintd.session import Session, SessionSettings

if TYPE_CHECKING:
    from wsproto.connection import Connection

log = logging.getLogger(__name__)

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


class Server:
    def __init__(self, settings: ServerSettings, hub: Hub, api: HttpApi, now: Callable[[], dt.datetime],
                 auth: Authenticator | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.api = api
        self._now = now
        self.auth = auth or Authenticator(AccessSettings(), lambda: now().timestamp())
        self.sessions = 0
        self.port = settings.port
        self.connections_failed = 0
        self.connections_accepted = 0
        self._unfinished_bodies = 0  # request bodies being received (see MAX_UNFINISHED_BODIES)
        self._buffered_body_bytes = 0  # what they hold so far (see MAX_BUFFERED_BODY_BYTES)
        self._accepting: trio.CancelScope | None = None
        self._idle = trio.Event()
        self._idle.set()

    # -------------------------------------------------------------- lifecycle

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED) -> None:
        # The port actually bound (settings may say 0): own origins are on this one.
        self.port = listeners[0].socket.getsockname()[1]
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
        try:
            accepted = await self._handle(stream)
            if accepted is not None:
                # Run the session outside _handle, so the request's parsing state
                # (h11 connection, head bytes, headers) is freed, not kept per client.
                await self._serve_upgrade(stream, accepted)
        except* Exception as group:
            # One connection's failure, whatever raised it (a library bug such as
            # trio-websocket's #184 used to be), ends that connection only.
            self.connections_failed += 1
            log.warning("connection failed: %s", _describe(group), exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, stream: trio.SocketStream) -> Accepted | None:
        """Answer plain HTTP requests; return what an accepted upgrade needs, or None."""
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        first = True
        while True:
            with trio.move_on_after(self.settings.handshake_timeout) as timer:
                request = await self._read_head(stream, connection)
            if timer.cancelled_caught or request is None:
                return None
            if isinstance(request, Response):
                await self._respond(stream, connection, request)
                return None
            target = request.target.decode("latin-1")
            path, _, query = target.partition("?")
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
            refusal = _check_head(request, headers) or self._check_host(headers.get("host"))
            grant = self.auth.admit(path, query, headers) if refusal is None else UNLIMITED
            if isinstance(grant, Response):
                refusal, grant = grant, UNLIMITED
            if refusal is None and _is_upgrade(headers):
                if path != WS_PATH:
                    refusal = problem(404, "not_found", f"WebSocket connections go to {WS_PATH}")
                elif not first:
                    refusal = problem(400, "bad_request", "open a new connection for the WebSocket upgrade")
                else:
                    return await self._upgrade(stream, connection, request, headers, query, grant)
            if refusal is None and path == WS_PATH:
                refusal = problem(426, "upgrade_required", f"{WS_PATH} speaks WebSocket; connect with a "
                                  "WebSocket client", ("Upgrade", "websocket"))
            answer = refusal or await self._plain(stream, connection, request, path, headers, grant)
            await self._respond(stream, connection, answer, head_only=request.method == b"HEAD",
                                close=_is_upgrade(headers))
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
                       head_only: bool = False, close: bool = False) -> None:
        """Send ``answer``; errors (but a plain 404) and refused upgrades close the connection."""
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
            pass

    # -------------------------------------------------------------- websocket

    async def _upgrade(self, stream: trio.SocketStream, connection: h11.Connection, request: h11.Request,
                       headers: dict[str, str], query: str, grant: Grant = UNLIMITED) -> Accepted | None:
        refusal = self._check_origin(headers.get("origin"))
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
                accepted = Accepted(response, ws_connection, upgrade)
            except BadQuery as exc:
                refusal = problem(400, "bad_request", str(exc))
            except wsio.HandshakeRefused as exc:
                refusal = problem(exc.status, "bad_request", f"not a valid WebSocket handshake: {exc}",
                                  *exc.headers)
        if refusal is not None:
            await self._respond(stream, connection, refusal, close=True)
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
            del response
            if timer.cancelled_caught:
                return
            ws = wsio.ServerWebSocket(stream, accepted.connection, session_settings.max_message_bytes)
            upgrade = accepted.upgrade
            client = Outbox(upgrade.filter, session_settings.client_queue, session_settings.slow_client_timeout,
                            session_settings.max_behind, ws.try_write_now)
            self.hub.attach(client, snapshot=upgrade.snapshot, since=upgrade.since, epoch=upgrade.epoch)
            log.info("client %s connected (%d connected)", client.client_id, self.hub.connection_count)
            try:
                await Session(ws, self.hub, session_settings, client, self._now, upgrade.grant).run()
            finally:
                log.info("client %s disconnected: %s", client.client_id,
                         client.close_reason or ws.close_code or "gone")
        finally:
            self.sessions -= 1
            if self.sessions == 0:
                self._idle.set()

    # ----------------------------------------------------------------- checks

    def _check_host(self, host: str | None) -> Response | None:
        """Refuse requests for other host names (DNS rebinding) with 421."""
        if host is None:
            return problem(400, "bad_request", "the Host header is required")
        name = _split_host(host)[0]
        if name in self._allowed_hosts() or (self._wildcard_bind() and _is_ip(name)):
            return None
        return problem(421, "misdirected_request",
                       f"this server does not answer for host {name!r}; use localhost or add "
                       f"the page's origin with --allowed-origin")

    def _check_origin(self, origin: str | None) -> Response | None:
        """Browsers send Origin; refuse pages from elsewhere with 403. No Origin passes."""
        if origin is None or "*" in self.settings.allowed_origins:
            return None
        if origin.rstrip("/").lower() in self._allowed_origins():
            return None
        log.warning("refused WebSocket from origin %s", origin)
        return problem(403, "forbidden_origin",
                       f"origin {origin} is not allowed; start osintd with --allowed-origin {origin}")

    def _allowed_origins(self) -> set[str]:
        port = self.port
        own = {f"{scheme}://{host}:{port}" for scheme in ("http", "https")
               for host in ("localhost", "127.0.0.1", "[::1]")}
        if port in (80, 443):
            own |= {f"{scheme}://{host}" for scheme in ("http", "https")
                    for host in ("localhost", "127.0.0.1", "[::1]")}
        return own | {o.rstrip("/").lower() for o in self.settings.allowed_origins}

    def _allowed_hosts(self) -> set[str]:
        hosts = {"localhost", "127.0.0.1", "::1", self.settings.host.strip("[]").lower()}
        for origin in self.settings.allowed_origins:
            hostname = urllib.parse.urlsplit(origin).hostname
            if hostname:
                hosts.add(hostname.lower())
        return hosts

    def _wildcard_bind(self) -> bool:
        return self.settings.host in ("0.0.0.0", "::", "")


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
