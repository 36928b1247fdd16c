"""A loopback HTTP server standing in for api.github.com's Events endpoints.

Real sockets, real HTTP (h11): ETag and 304, X-Poll-Interval, Link pagination,
X-RateLimit-* headers that count down on every answer but a 304, and a queue
of scripted failures per path (500, 403 rate limit, broken JSON …).
Every request is recorded with the trio time it arrived.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Callable

import attrs
import h11
import trio


@attrs.define
class Recorded:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@attrs.define
class Scripted:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = attrs.field(factory=list)


class FakeGitHub:
    def __init__(self, wall_time: Callable[[], float], poll_interval: int = 60, limit: int = 5000,
                 per_page_max: int = 100) -> None:
        self.wall_time = wall_time
        self.poll_interval = poll_interval
        self.limit = limit
        self.remaining = limit
        self.reset_at = int(wall_time()) + 3600
        self.per_page_max = per_page_max
        self.events: dict[str, list[dict]] = {}   # path → items, newest first
        self.script: dict[str, list[Scripted]] = {}
        self.page_failures: dict[tuple[str, int], list[int]] = {}  # (path, page) → statuses to answer
        self.requests: list[Recorded] = []
        self.port = 0

    # --------------------------------------------------------------- control

    def add_events(self, path: str, *items: dict) -> None:
        """Publish items (newest last in the arguments, as they happen)."""
        self.events.setdefault(path, [])[:0] = list(reversed(items))

    def then(self, path: str, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.script.setdefault(path, []).append(Scripted(status, body, headers or []))

    def fail_page(self, path: str, page: int, status: int) -> None:
        """The next request for ``page`` of ``path`` gets ``status`` (other pages answer as usual)."""
        self.page_failures.setdefault((path, page), []).append(status)

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- serving

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                while event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    event = conn.next_event()
                if not isinstance(event, h11.Request):
                    return
                while not isinstance(conn.next_event(), h11.EndOfMessage):
                    conn.receive_data(await stream.receive_some(65536))
                status, headers, body = self._answer(event)
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers))
                                      + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                if conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    def _answer(self, request: h11.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        target = request.target.decode()
        path, _, query_text = target.partition("?")
        query = dict(urllib.parse.parse_qsl(query_text))
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        record = Recorded(trio.current_time(), request.method.decode(), path, query, headers)
        self.requests.append(record)
        status, extra, body = self._respond(path, query, headers)
        record.status = status
        if status != 304:
            self.remaining = max(self.remaining - 1, 0)
        rate = [("X-RateLimit-Limit", str(self.limit)), ("X-RateLimit-Remaining", str(self.remaining)),
                ("X-RateLimit-Reset", str(self.reset_at)), ("X-RateLimit-Used", str(self.limit - self.remaining)),
                ("X-RateLimit-Resource", "core")]
        names = {name.lower() for name, _ in extra}
        rate = [(n, v) for n, v in rate if n.lower() not in names]
        return status, [("Content-Type", "application/json; charset=utf-8"),
                        ("Content-Length", str(len(body))), *rate, *extra], body

    def _respond(self, path: str, query: dict, headers: dict) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.script.get(path):
            scripted = self.script[path].pop(0)
            return scripted.status, scripted.headers, scripted.body
        if self.page_failures.get((path, int(query.get("page", "1")))):
            return self.page_failures[(path, int(query.get("page", "1")))].pop(0), [], b'{"message": "boom"}'
        if path not in self.events:
            return 404, [], b'{"message": "Not Found"}'
        items = self.events[path]
        etag = '"' + hashlib.sha256(json.dumps(items).encode()).hexdigest() + '"'
        polling = [("X-Poll-Interval", str(self.poll_interval)), ("ETag", etag)]
        page = int(query.get("page", "1"))
        if page == 1 and headers.get("if-none-match") == etag:
            return 304, polling, b""
        per_page = min(int(query.get("per_page", "30")), self.per_page_max)
        items = items[:300]  # the API's cap
        chunk = items[(page - 1) * per_page: page * per_page]
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = []
        if page < last:
            links.append(f'<{self.url}{path}?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{self.url}{path}?per_page={per_page}&page={last}>; rel="last"')
        extra = polling + ([("Link", ", ".join(links))] if links else [])
        return 200, extra, json.dumps(chunk).encode()


def events_api_item(n: int, repo: str, kind: str = "WatchEvent", at: str = "2026-01-15T10:00:00Z",
                    login: str = "octocat") -> dict:
    """An Events API item in the shape of the samples (WatchEvent or PushEvent)."""
    payload = {"action": "started"} if kind == "WatchEvent" else {
        "repository_id": 1, "push_id": n, "ref": "refs/heads/main", "head": f"{n:040x}", "before": f"{n + 1:040x}"}
    return {"id": str(10_000_000 + n), "type": kind,
            "actor": {"id": n, "login": f"{login}{n}" if kind == "WatchEvent" else login,
                      "display_login": login, "gravatar_id": "",
                      "url": f"https://api.github.com/users/{login}", "avatar_url": ""},
            "repo": {"id": 1, "name": repo, "url": f"https://api.github.com/repos/{repo}"},
            "payload": payload, "public": True, "created_at": at}
