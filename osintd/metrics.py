"""Prometheus metrics for ``GET /metrics``, made with prometheus-client.

Owns: the metric names, help texts and labels, and the registry.
Must not: change what it reads; every value is read at scrape time from the
object that owns it (hub, scorer, sources), except the pipeline-lag
histogram, which the differ feeds.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.lag = Histogram("osintd_pipeline_lag_seconds",
                             "Seconds from an event's creation (its GitHub timestamp) to its broadcast",
                             buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600),
                             registry=self.registry)
        self._readers: list[Callable[[], Iterable[Metric]]] = []
        self.registry.register(self)

    def add(self, reader: Callable[[], Iterable[Metric]]) -> None:
        self._readers.append(reader)

    def collect(self) -> Iterable[Metric]:  # the prometheus-client collector protocol
        for reader in self._readers:
            yield from reader()

    def describe(self) -> Iterable[Metric]:
        return []

    def render(self) -> bytes:
        return generate_latest(self.registry)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def labelled(kind, name: str, documentation: str, labels: list[str], values: dict) -> Metric:
    family = kind(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [str(key)], value)
    return family
