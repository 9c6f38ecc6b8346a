"""What the CLI prints: aligned tables, and a pod's status read as ``kubectl get pods`` reads it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from docker_sidecar.status import phase_of
from interlink_common.wire import ContainerStatus, PodStatus

NOT_ON_NODE = "NotOnNode"
# A pending entry (its create unanswered) that the node does not know.
NOT_CREATED = "NotCreated"
# The reason our sidecar gives every container of a pod it does not know (other plugins leave
# the pod out of the answer).
NOT_FOUND_REASON = "NotFound"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, the last one left ragged."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def phase(status: PodStatus | None) -> str:
    """The phase as the current VK derives it from container states (docs/PROTOCOL.md
    section 4; the sidecar's own derivation), or that the node does not know the pod."""
    if status is None:
        return NOT_ON_NODE
    if not status.containers and not status.initContainers:
        return "Pending"  # nothing reported yet
    return phase_of(status)


def on_node(status: PodStatus | None) -> bool:
    """Whether the node knows the pod: it answered for it, and not only with NotFound."""
    if status is None:
        return False
    every = (status.containers or []) + (status.initContainers or [])
    return not every or not all(c.state.terminated is not None
                                and c.state.terminated.reason == NOT_FOUND_REASON
                                for c in every)


def container_state(c: ContainerStatus) -> str:
    """``Running``, ``Waiting(reason: message)``, ``Terminated(reason, exit N)``."""
    s = c.state
    if s.running is not None:
        return "Running"
    if s.terminated is not None:
        t = s.terminated
        return f"Terminated({t.reason or 'Terminated'}, exit {t.exitCode})"
    if s.waiting is not None:
        why = s.waiting.reason or "Waiting"
        if s.waiting.message:
            why = f"{why}: {s.waiting.message}"
        return f"Waiting({why})"
    return "Unknown"


def age(since: str | None, now: datetime | None = None) -> str:
    """``45s``, ``12m``, ``3h``, ``2d`` since an ISO timestamp, as kubectl shortens it."""
    if not since:
        return "-"
    try:
        then = datetime.fromisoformat(since)
    except ValueError:
        return "-"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_row(entry: dict[str, Any], status: PodStatus | None) -> list[str]:
    """NAMESPACE NAME PHASE READY RESTARTS AGE CONTAINERS for one remembered pod."""
    containers = (status.containers or []) if status is not None else []
    init = (status.initContainers or []) if status is not None else []
    total = len(containers) or len(entry.get("containers", []))
    ready = f"{sum(c.ready for c in containers)}/{total}"
    restarts = sum(c.restartCount for c in containers + init)
    states = [f"init:{c.name}={container_state(c)}" for c in init] + \
        [f"{c.name}={container_state(c)}" for c in containers]
    shown = NOT_CREATED if entry.get("pending") and not on_node(status) else phase(status)
    return [entry["namespace"], entry["name"], shown, ready, str(restarts),
            age(entry.get("created")), "; ".join(states) or "-"]


STATUS_HEADERS = ("NAMESPACE", "NAME", "PHASE", "READY", "RESTARTS", "AGE", "CONTAINERS")


def gpu_table(report: dict[str, Any]) -> str:
    """The sidecar's ``/gpus`` report: one row per GPU with its holder, then the queue."""
    if not report.get("enabled"):
        return f"GPUs: disabled on this node ({report.get('reason') or 'no reason given'})"
    rows = []
    for g in report.get("gpus") or []:
        used, total = g.get("memoryUsed"), g.get("memoryTotal")
        memory = f"{_mib(used)}/{_mib(total)}" if total else "-"
        util = "-" if g.get("utilization") is None else f"{g['utilization']}%"
        rows.append([g.get("index"), g.get("uuid"), g.get("name"), memory, util,
                     g.get("pod") or "-"])
    lines = [f"GPUs: {len(rows)} ({report.get('free', 0)} free), resource "
             f"{report.get('resource')}, driver {report.get('driverVersion') or '-'}",
             table(("INDEX", "UUID", "NAME", "MEMORY", "UTIL", "HOLDER"), rows)]
    queue = report.get("queue") or []
    if queue:
        lines.append(table(("WAITING POD", "GPUS"), [[w.get("pod"), w.get("count")]
                                                      for w in queue]))
    for uuid, why in (report.get("skipped") or {}).items():
        lines.append(f"skipped {uuid}: {why}")
    return "\n".join(lines)


def _mib(value: Any) -> str:
    """The sidecar reports bytes; shown in MiB, as nvidia-smi shows them."""
    return "-" if value is None else f"{int(value) // (1024 * 1024)}MiB"
