"""Prometheus metrics of the sidecar, in a registry of its own per app instance."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)


class SidecarMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.docker_latency = Histogram(
            "interlink_sidecar_docker_call_duration_seconds", "Docker API call time, by call.",
            ["call"], buckets=_BUCKETS, registry=self.registry)
        self.docker_errors = Counter(
            "interlink_sidecar_docker_call_errors_total", "Docker API calls that failed.",
            ["call"], registry=self.registry)
        self.requests = Counter(
            "interlink_sidecar_requests_total", "Requests answered, by route and status code.",
            ["route", "code"], registry=self.registry)
        self.pods = Gauge("interlink_sidecar_pods", "Pods known to the sidecar, by phase.",
                          ["phase"], registry=self.registry)

    def observe_docker(self, call: str, seconds: float, ok: bool) -> None:
        self.docker_latency.labels(call).observe(seconds)
        if not ok:
            self.docker_errors.labels(call).inc()

    def render(self, phases: Callable[[], dict[str, int]]) -> bytes:
        counts = phases()
        for phase in ("Pending", "Running", "Succeeded", "Failed"):
            self.pods.labels(phase).set(counts.get(phase, 0))
        return generate_latest(self.registry)
