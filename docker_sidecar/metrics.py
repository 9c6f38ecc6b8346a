"""Prometheus metrics of the sidecar, in a registry of its own per app instance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
        self.gpu_memory = Gauge("interlink_sidecar_gpu_memory_used_bytes",
                                "GPU memory in use, per allocatable GPU.", ["uuid", "name"],
                                registry=self.registry)
        self.gpu_total = Gauge("interlink_sidecar_gpu_memory_total_bytes",
                               "GPU memory, per allocatable GPU.", ["uuid", "name"],
                               registry=self.registry)
        self.gpu_util = Gauge("interlink_sidecar_gpu_utilization_percent",
                              "GPU utilization, per allocatable GPU.", ["uuid", "name"],
                              registry=self.registry)
        self.gpu_allocated = Gauge("interlink_sidecar_gpu_allocated",
                                   "1 when a pod holds the GPU, with that pod.",
                                   ["uuid", "name", "pod"], registry=self.registry)
        self.gpus_free = Gauge("interlink_sidecar_gpus_free", "Allocatable GPUs not held.",
                               registry=self.registry)

    def observe_docker(self, call: str, seconds: float, ok: bool) -> None:
        self.docker_latency.labels(call).observe(seconds)
        if not ok:
            self.docker_errors.labels(call).inc()

    def render(self, phases: Callable[[], dict[str, int]],
               gpus: Callable[[], dict[str, Any]]) -> bytes:
        counts = phases()
        for phase in ("Pending", "Running", "Succeeded", "Failed"):
            self.pods.labels(phase).set(counts.get(phase, 0))
        report = gpus()
        self.gpu_allocated.clear()
        self.gpus_free.set(report["free"])
        for g in report["gpus"]:
            labels = (g["uuid"], g["name"])
            self.gpu_total.labels(*labels).set(g["memoryTotal"])
            if g["memoryUsed"] is not None:
                self.gpu_memory.labels(*labels).set(g["memoryUsed"])
            if g["utilization"] is not None:
                self.gpu_util.labels(*labels).set(g["utilization"])
            self.gpu_allocated.labels(*labels, g["pod"] or "").set(1 if g["pod"] else 0)
        return generate_latest(self.registry)
