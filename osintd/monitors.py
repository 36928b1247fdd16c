"""Periodic messages: heartbeat, metrics and system health.

Owns: when ``heartbeat``, ``metrics_update``, ``system_status`` and source
``error`` messages are produced, and what they say.
Must not: send to clients directly (everything goes to the hub's inbox) or
change the state it reads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import attrs
import trio

from osintd.messages import Error, Heartbeat, MetricsUpdate, SystemStatus
from osintd.models import PipelineItem, SourceHealth

log = logging.getLogger(__name__)


async def heartbeat(inbox: trio.MemorySendChannel[PipelineItem], interval: float,
                    now: Callable[[], dt.datetime]) -> None:
    """A heartbeat every ``interval`` seconds, on trio's clock."""
    deadline = trio.current_time()
    while True:
        deadline += interval
        await trio.sleep_until(deadline)
        await inbox.send(Heartbeat(now()))


@attrs.frozen
class Counts:
    total_events: int
    active_repositories: int
    total_queries: int
    websocket_connections: int


async def metrics(inbox: trio.MemorySendChannel[PipelineItem], interval: float, now: Callable[[], dt.datetime],
                  read: Callable[[], Counts]) -> None:
    """One ``metrics_update`` at start (so snapshots have metrics at once), then
    every ``interval`` seconds one if any count changed."""
    last: Counts | None = None
    deadline = trio.current_time()
    while True:
        current = read()
        if current != last:
            await inbox.send(_metrics_update(current, last or Counts(0, 0, 0, 0), now()))
            last = current
        deadline += interval
        await trio.sleep_until(deadline)


def _metrics_update(current: Counts, last: Counts, moment: dt.datetime) -> MetricsUpdate:
    changes: dict[str, str] = {}
    for field in attrs.fields(Counts):
        delta = getattr(current, field.name) - getattr(last, field.name)
        if delta:
            changes[field.name] = f"{delta:+d}"
    return MetricsUpdate(moment, **attrs.asdict(current), changes=changes)


@attrs.frozen
class PipelineCondition:
    """What the health monitor reads about the pipeline each second."""

    running: bool
    overloaded: bool
    finished: bool = False  # every source has ended (a replay is done): idle, not broken


class HealthMonitor:
    """Turns source reports and pipeline conditions into ``system_status`` and ``error``.

    A ``system_status`` is broadcast only when status, components or message change.
    """

    def __init__(self, inbox: trio.MemorySendChannel[PipelineItem], now: Callable[[], dt.datetime],
                 pipeline: Callable[[], PipelineCondition], components: tuple[str, ...]) -> None:
        self._inbox = inbox
        self._now = now
        self._pipeline = pipeline
        self._sources: dict[str, SourceHealth] = {name: SourceHealth(name, "ok", "") for name in components}
        self._last: tuple[str, tuple[tuple[str, str], ...], str] | None = None

    async def run(self, reports: trio.MemoryReceiveChannel[SourceHealth], check_every: float = 1.0) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_pipeline, check_every)
            async for report in reports:
                await self._on_report(report)

    async def _watch_pipeline(self, check_every: float) -> None:
        while True:
            await self._publish_if_changed()
            await trio.sleep(check_every)

    async def _on_report(self, report: SourceHealth) -> None:
        previous = self._sources.get(report.component)
        self._sources[report.component] = report
        if report.state != "ok" and (previous is None or previous.state != report.state
                                     or previous.error_code != report.error_code):
            log.warning("%s %s: %s", report.component, report.state, report.message)
            details: dict[str, object] = {"component": report.component}
            if report.affected_repos:
                details["affected_repos"] = list(report.affected_repos)
            if report.retry_in_seconds is not None:
                details["retry_in_seconds"] = report.retry_in_seconds
            if report.simulated:
                details["simulated"] = True
            await self._inbox.send(Error(self._now(), report.error_code or "SOURCE_ERROR", report.message,
                                         "error" if report.state == "down" else "warning", details))
        elif report.state == "ok" and previous is not None and previous.state != "ok":
            log.info("%s recovered: %s", report.component, report.message)
        await self._publish_if_changed()

    async def _publish_if_changed(self) -> None:
        status = self.current()
        key = (status.status, tuple(sorted(status.components.items())), status.message)
        if key != self._last:
            self._last = key
            await self._inbox.send(status)

    def current(self) -> SystemStatus:
        pipeline = self._pipeline()
        if pipeline.finished:
            state = "finished"
        elif not pipeline.running:
            state = "stalled"
        else:
            state = "shedding" if pipeline.overloaded else "running"
        components = {"api": "operational", "pipeline": state}
        problems = []
        for name, report in sorted(self._sources.items()):
            components[name] = {"ok": "operational"}.get(report.state, report.state)
            if report.state != "ok":
                problems.append(report)
        if not pipeline.running and not pipeline.finished:
            return SystemStatus(self._now(), "unhealthy", components, "The pipeline has stopped", "critical")
        if any(p.state == "down" for p in problems):
            down = next(p for p in problems if p.state == "down")
            return SystemStatus(self._now(), "degraded", components, down.message, "error")
        if problems:
            return SystemStatus(self._now(), "degraded", components, problems[0].message, "warning")
        if pipeline.overloaded:
            return SystemStatus(self._now(), "degraded", components,
                                "The server is behind; low-value messages are being shed", "warning")
        if pipeline.finished:
            return SystemStatus(self._now(), "healthy", components,
                                "The source has finished; serving the final state", "info")
        return SystemStatus(self._now(), "healthy", components, "All systems operational", "info")
