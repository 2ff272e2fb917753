"""Prometheus metrics of one server, in a registry of its own (tests run several).

Every label takes its values from a small fixed set (executor names this
server knows, outcomes, start kinds, pool classes): never a raw value from a
request, which would let one client grow ``/metrics`` without bound.
Requests naming an executor the server does not know are counted under
``UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

UNKNOWN = "unknown"
ADHOC = "adhoc"
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "faas_invocations_total", "Invocations by executor and outcome",
            ["executor", "outcome"], registry=self.registry,
        )
        self.duration = Histogram(
            "faas_invocation_duration_seconds", "Time from admission to result, by executor",
            ["executor"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_wait = Histogram(
            "faas_queue_wait_seconds", "Time an invocation waited for an admission slot",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "faas_in_flight", "Invocations running now", registry=self.registry,
        )
        self.starts = Counter(
            "faas_sandbox_starts_total", "Sandboxes handed to invocations, by start kind",
            ["executor", "kind"], registry=self.registry,
        )
        self.start_time = Histogram(
            "faas_sandbox_start_seconds", "Time spent starting the sandbox of an invocation",
            ["executor", "kind"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.pool_ready = Gauge(
            "faas_pool_ready", "Pre-started sandboxes waiting, per class",
            ["executor", "pool"], registry=self.registry,
        )
        self.pool_starting = Gauge(
            "faas_pool_starting", "Pre-started sandboxes being started, per class",
            ["executor", "pool"], registry=self.registry,
        )
        self.queued = Gauge(
            "faas_queued", "Invocations waiting for a slot now", registry=self.registry,
        )
        # ``function``: a deployed function's id, or ``ADHOC`` for every ad hoc
        # call; never an id a caller chose without deploying it.
        self.function_invocations = Counter(
            "faas_function_invocations_total", "Invocations by deployed function and outcome",
            ["function", "outcome"], registry=self.registry,
        )

        self.body_budget_used = Gauge(
            "faas_body_memory_bytes", "Bytes of the request-body memory budget in use",
            registry=self.registry,
        )

    def watch_connections(self, stats: ConnectionStats) -> None:
        """Export the HTTP connection guard's counters (``faas.gateway.guard``)."""
        self.registry.register(_ConnectionCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ConnectionStats(Protocol):
    open: int
    header_timeouts: int
    header_too_large: int
    evicted: int
    refused: int


class _ConnectionCollector(Collector):
    def __init__(self, stats: ConnectionStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("faas_http_connections", "Open HTTP connections",
                                value=self.stats.open)
        closed = CounterMetricFamily(
            "faas_http_connections_closed", "Connections the gateway closed to protect itself",
            labels=["reason"])
        for reason, value in (("header_timeout", self.stats.header_timeouts),
                              ("header_too_large", self.stats.header_too_large),
                              ("evicted", self.stats.evicted),
                              ("refused", self.stats.refused)):
            closed.add_metric([reason], value)
        yield closed
