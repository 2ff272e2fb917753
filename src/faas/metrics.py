"""Prometheus metrics of one server, in a registry of its own (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "faas_invocations_total", "Invocations by function, executor and outcome",
            ["function", "executor", "outcome"], registry=self.registry,
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
