"""Prometheus metrics of the API server, in a registry of its own per app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class APIMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "interlink_api_requests_total", "Requests answered, by route, method and status code.",
            ["route", "method", "code"], registry=self.registry)
        self.latency = Histogram(
            "interlink_api_request_duration_seconds", "Time to answer a request, by route.",
            ["route"], buckets=_BUCKETS, registry=self.registry)
        self.plugin_latency = Histogram(
            "interlink_api_plugin_request_duration_seconds",
            "Time the plugin took to answer, by plugin path and outcome (status code or error).",
            ["path", "outcome"], buckets=_BUCKETS, registry=self.registry)
        self.cache_size = Gauge(
            "interlink_api_status_cache_pods", "Pod statuses held in the status cache.",
            registry=self.registry)
        self.auth_failures = Counter(
            "interlink_api_auth_failures_total", "Rejected requests, by reason.",
            ["reason"], registry=self.registry)

    def observe_plugin(self, path: str, outcome: str, seconds: float) -> None:
        self.plugin_latency.labels(path, outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
