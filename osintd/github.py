"""The GitHub Events API poller: a source that follows GitHub's polling rules.

Owns: which URL is polled when, conditional requests (ETag), X-Poll-Interval,
the rate-limit budget (primary and secondary limits, Retry-After), backoff
after failures, first-poll pagination, the per-target seen-id window, the gap
warning, and the poller's health reports.
Must not: interpret events beyond handing items to ``normalize``; score;
log the token (it never leaves the Authorization header).

Budget arithmetic (also in the README): GitHub allows ``limit`` requests an
hour (5,000 with a token, 60 without; the real value is read from
``X-RateLimit-Limit``).  With ``n`` targets each is polled at most every
``max(X-Poll-Interval, n · 3600 / (limit · budget_share))`` seconds, so even
if no request were a free 304 the hourly budget is never exhausted.  When
``X-RateLimit-Remaining`` reaches 0, no request is made before
``X-RateLimit-Reset``; a 403/429 secondary limit waits ``Retry-After`` (or
backs off from 60 s, doubling).

Backfill: a target's first poll when osintd has no stored cursor (ETag) for
it (never polled it, or runs without ``--state-dir``) is sent as one
:class:`~osintd.models.Backfill`: scored, not broadcast.  Every later poll is
news, the first one after a restart with a stored cursor included, however
long the outage or pause before it was.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio

from osintd import __version__
from osintd.models import Backfill, CursorMark, Event, SourceHealth, SourceItem
from osintd.normalize import Unusable, from_events_api

log = logging.getLogger(__name__)

_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@attrs.frozen
class GitHubSettings:
    api_url: str = "https://api.github.com"
    token: str | None = attrs.field(default=None, repr=False)
    repos: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    per_page: int = 100
    max_pages: int = 3              # 3 × 100 = the API's 300-event cap
    min_interval: float = 60.0      # GitHub's usual X-Poll-Interval
    request_timeout: float = 10.0
    budget_share: float = 0.8       # of the hourly limit, leaving room for other clients of the token
    max_backoff: float = 900.0


@attrs.define
class Target:
    """One polled URL and what osintd knows about it."""

    label: str
    path: str
    etag: str | None = None
    poll_interval: float = 60.0
    next_poll: float = 0.0
    failures: int = 0
    #: Polled successfully, or restored with a stored cursor: its polls are news, read page 1
    #: first.  Until then its next successful poll is its first: up to 3 pages, backfill.
    primed: bool = False
    stored_etag: str | None = None
    last_status: str = "pending"
    seen: collections.OrderedDict[str, None] = attrs.field(factory=collections.OrderedDict)

    def remember(self, event_id: str, capacity: int = 3000) -> None:
        self.seen[event_id] = None
        while len(self.seen) > capacity:
            self.seen.popitem(last=False)


@attrs.define
class RateLimit:
    limit: int
    remaining: int | None = None
    reset_at: float | None = None   # epoch seconds


@attrs.define
class PollerStats:
    requests_by_status: collections.Counter[str] = attrs.field(factory=collections.Counter)
    events_fetched: int = 0
    #: Items osintd does not use (their type, or their action), by Events API type.
    skipped: collections.Counter[str] = attrs.field(factory=collections.Counter)
    unusable: int = 0
    gaps: int = 0


class GitHubPoller:
    name = "github"
    component = "github"
    live = True

    def __init__(self, settings: GitHubSettings, wall_time: Callable[[], float],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._wall_time = wall_time  # epoch seconds on the daemon's clock (X-RateLimit-Reset is epoch)
        self._transport = transport
        self.targets = [Target(repo, f"/repos/{repo}/events", poll_interval=settings.min_interval)
                        for repo in settings.repos]
        self.targets += [Target(f"org:{org}", f"/orgs/{org}/events", poll_interval=settings.min_interval)
                         for org in settings.orgs]
        self.rate = RateLimit(limit=5000 if settings.token else 60)
        self.blocked_until = 0.0        # trio time before which no request is made
        self.stats = PollerStats()
        self._health: trio.MemorySendChannel[SourceHealth] | None = None
        self._reported: tuple[str, str | None] | None = None
        self._problem: SourceHealth | None = None

    # ------------------------------------------------------------------- run

    async def run(self, events: trio.MemorySendChannel[SourceItem],
                  health: trio.MemorySendChannel[SourceHealth]) -> None:
        self._health = health
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": f"osintd/{__version__}"}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        start = trio.current_time()
        for index, target in enumerate(self.targets):  # spread the first polls a little
            target.next_poll = start + index * 0.5
        async with httpx.AsyncClient(base_url=self.settings.api_url, headers=headers,
                                     timeout=self.settings.request_timeout, transport=self._transport,
                                     follow_redirects=True) as client:
            while self.targets:
                target = min(self.targets, key=lambda t: t.next_poll)
                await trio.sleep_until(max(target.next_poll, self.blocked_until))
                await self._poll(client, target, events)

    # ------------------------------------------------------------------ poll

    async def _poll(self, client: httpx.AsyncClient, target: Target,
                    events: trio.MemorySendChannel[SourceItem]) -> None:
        url: str | None = f"{target.path}?per_page={self.settings.per_page}"
        pages = 0
        fresh: list[dict[str, Any]] = []
        # Page 1's ETag counts only once every page of this poll is read: kept after a later
        # page failed, it would make the next poll a 304 and the events of this one lost.
        etag = target.etag
        while url and pages < self.settings.max_pages:
            pages += 1
            conditional = {"If-None-Match": target.etag} if pages == 1 and target.etag else {}
            try:
                response = await client.get(url, headers=conditional)
            except httpx.HTTPError as exc:
                self.stats.requests_by_status["error"] += 1
                return await self._failed(target, "GITHUB_UNREACHABLE",
                                          f"GitHub unreachable for {target.label}: {type(exc).__name__}")
            self.stats.requests_by_status[str(response.status_code)] += 1
            self._note_rate_limit(response.headers)
            status = response.status_code
            if status == 304:
                return await self._succeeded(target, response, [], events)
            if status in (403, 429) and self._is_rate_limited(response):
                return await self._rate_limited(target, response)
            if status >= 500:
                return await self._failed(target, "GITHUB_UNAVAILABLE",
                                          f"GitHub answered {status} for {target.label}")
            if status != 200:
                return await self._failed(target, f"GITHUB_HTTP_{status}",
                                          f"GitHub answered {status} for {target.label}", floor=300.0)
            try:
                items = response.json()
                if not isinstance(items, list):
                    raise ValueError("expected a JSON array of events")
            except ValueError as exc:
                return await self._failed(target, "GITHUB_BAD_RESPONSE",
                                          f"GitHub sent an unreadable answer for {target.label}: {exc}")
            if pages == 1:
                etag = response.headers.get("etag") or target.etag
                target.poll_interval = _poll_interval(response.headers, self.settings.min_interval)
            new = [item for item in items if isinstance(item, dict) and str(item.get("id")) not in target.seen]
            fresh.extend(new)
            next_page = _next_link(response.headers.get("link"))
            # A full page (more follow) with nothing seen before: the poll came too late for some.
            whole_page_new = bool(items) and len(new) == len(items) and next_page is not None
            # Only a target that remembers ids can tell: restored from the state store (or by a
            # new cluster leader) its window is empty, and every page looks new.
            if target.primed and target.seen and whole_page_new and pages == 1:
                self.stats.gaps += 1
                log.warning("%s: a whole page of events is new; events may have been missed", target.label)
            url = next_page if (not target.primed or whole_page_new) else None
        target.etag = etag
        await self._succeeded(target, None, fresh, events)

    async def _succeeded(self, target: Target, response: httpx.Response | None, fresh: list[dict[str, Any]],
                         events: trio.MemorySendChannel[SourceItem]) -> None:
        if response is not None:
            target.poll_interval = _poll_interval(response.headers, target.poll_interval)
        backfill: list[Event] | None = None if target.primed else []  # the first poll: old news
        target.primed = True
        target.failures = 0
        target.last_status = "ok"
        target.next_poll = trio.current_time() + self.interval_for(target)
        for item in reversed(fresh):  # the API lists newest first
            target.remember(str(item.get("id")))
            try:
                event = from_events_api(item, source="poll")
            except Unusable as exc:
                self.stats.unusable += 1
                log.warning("%s: skipped an unusable event: %s", target.label, exc)
                continue
            if event is None:
                self.stats.skipped[str(item.get("type"))] += 1
                continue
            self.stats.events_fetched += 1
            if backfill is None:
                await events.send(event)
            else:
                backfill.append(event)
        if backfill:
            log.info("%s: first poll: %d events scored as backfill, not broadcast", target.label, len(backfill))
            await events.send(Backfill(backfill))
        if target.etag and target.etag != target.stored_etag:
            # Behind the events it covers, so it is never stored before them.
            target.stored_etag = target.etag
            await events.send(CursorMark(target.label, target.etag))
        if all(t.last_status in ("ok", "pending") for t in self.targets):
            await self._report(SourceHealth("github", "ok", "GitHub polling normally"))

    async def _failed(self, target: Target, code: str, message: str, floor: float = 0.0) -> None:
        target.failures += 1
        target.last_status = code
        delay = min(self.settings.max_backoff, max(floor, 2.0 ** target.failures))
        target.next_poll = trio.current_time() + delay
        log.warning("%s; retrying in %.0fs", message, delay)
        await self._report(SourceHealth("github", "degraded", message, code, round(delay, 1), (target.label,)))

    async def _rate_limited(self, target: Target, response: httpx.Response) -> None:
        wait = _retry_after(response.headers)
        if wait is None and self.rate.remaining == 0 and self.rate.reset_at is not None:
            wait = max(self.rate.reset_at - self._wall_time(), 1.0)
        if wait is None:  # a secondary limit without advice: back off from a minute, doubling
            target.failures += 1
            wait = min(self.settings.max_backoff, 60.0 * 2 ** (target.failures - 1))
        self.blocked_until = trio.current_time() + wait
        target.last_status = "GITHUB_RATE_LIMITED"
        target.next_poll = self.blocked_until
        log.warning("GitHub rate limit reached; no request for %.0fs", wait)
        await self._report(SourceHealth("github", "degraded", "GitHub API rate limit reached; polling paused",
                                        "GITHUB_RATE_LIMITED", round(wait, 1),
                                        tuple(t.label for t in self.targets)))

    async def _report(self, health: SourceHealth) -> None:
        key = (health.state, health.error_code)
        if key != self._reported and self._health is not None:
            self._reported = key
            await self._health.send(health)

    def restore(self, cursors: dict[str, str]) -> None:
        """ETags from the state store: the first poll after a restart can be a free 304.

        The seen-id window is not restored (the scorer dedupes stored ids), so a
        restored target is treated as primed only if it has an ETag; primed, its
        first poll is news, not backfill."""
        for target in self.targets:
            if target.label in cursors:
                target.etag = target.stored_etag = cursors[target.label]
                target.primed = True

    # ---------------------------------------------------------------- budget

    def interval_for(self, target: Target) -> float:
        """Seconds until ``target`` is polled again: GitHub's wish or the budget's, whichever is longer."""
        spread = len(self.targets) * 3600.0 / (self.rate.limit * self.settings.budget_share)
        interval = max(target.poll_interval, spread)
        if self.rate.remaining is not None and self.rate.reset_at is not None:
            until_reset = self.rate.reset_at - self._wall_time()
            if self.rate.remaining < len(self.targets) and until_reset > 0:
                interval = max(interval, until_reset)
        return interval

    def _note_rate_limit(self, headers: httpx.Headers) -> None:
        limit, remaining, reset = (_int(headers.get(name)) for name in
                                   ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"))
        if limit:
            self.rate.limit = limit
        if remaining is not None:
            self.rate.remaining = remaining
        if reset is not None:
            self.rate.reset_at = float(reset)
        if remaining == 0 and reset is not None:
            self.blocked_until = max(self.blocked_until,
                                     trio.current_time() + max(reset - self._wall_time(), 0.0))

    def _is_rate_limited(self, response: httpx.Response) -> bool:
        headers = response.headers
        return (response.status_code == 429 or "retry-after" in headers
                or headers.get("x-ratelimit-remaining") == "0"
                or "rate limit" in response.text.lower())

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """What /api/v1/health shows about polling."""
        now = trio.current_time()
        return {
            "budget": {"limit": self.rate.limit, "remaining": self.rate.remaining,
                       "reset_at": self.rate.reset_at},
            "paused_for_seconds": round(max(self.blocked_until - now, 0.0), 1),
            "targets": [{"target": t.label, "next_poll_in_seconds": round(max(t.next_poll - now, 0.0), 1),
                         "interval_seconds": round(self.interval_for(t), 1), "last_status": t.last_status}
                        for t in self.targets],
            "requests_by_status": dict(self.stats.requests_by_status),
            "events_fetched": self.stats.events_fetched,
            "gaps": self.stats.gaps,
        }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _poll_interval(headers: httpx.Headers, default: float) -> float:
    value = _int(headers.get("x-poll-interval"))
    return float(value) if value and value > 0 else default


def _retry_after(headers: httpx.Headers) -> float | None:
    value = _int(headers.get("retry-after"))
    return float(value) if value is not None and value >= 0 else None


def _next_link(link: str | None) -> str | None:
    if not link:
        return None
    match = _LINK_NEXT.search(link)
    return match.group(1) if match else None


__all__ = ["GitHubPoller", "GitHubSettings"]
