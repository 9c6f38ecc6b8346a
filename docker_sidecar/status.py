"""Pure mapping from Docker's container state to Kubernetes container statuses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from interlink_common.wire import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodStatus,
)

_FRACTION = re.compile(r"\.(\d+)")

# What the kubelet reports for a container it cannot find; never exit 0 ("Succeeded").
NOT_FOUND_EXIT_CODE = 137


def docker_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 timestamps carry nanoseconds; Go's zero time means never."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6], value.replace("Z", "+00:00"))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class ContainerFacts:
    """Everything status needs about one Kubernetes container."""

    name: str
    image: str
    docker: dict[str, Any] | None = None  # latest inspect of its Docker container, if any
    restart_count: int = 0
    waiting: Waiting | None = None  # why it has no Docker container (yet)
    ready: bool | None = None  # probe verdict; None: ready while running
    started: bool | None = None  # startup probe verdict; None: started while running
    terminated_override: ContainerStateTerminated | None = None
    backoff: str = ""  # set while a container that could not start waits for its retry
    message: str = ""  # termination message (file, logs, or why the sidecar killed it)


def terminated_from_docker(info: dict[str, Any]) -> ContainerStateTerminated:
    state = info["State"]
    code = int(state.get("ExitCode") or 0)
    if state.get("OOMKilled"):
        reason = "OOMKilled"
    elif state.get("Error") and not docker_time(state.get("StartedAt")):
        reason = "StartError"
    else:
        reason = "Completed" if code == 0 else "Error"
    return ContainerStateTerminated(
        exitCode=code if code or reason == "Completed" else 128,
        reason=reason, message=state.get("Error") or "",
        startedAt=docker_time(state.get("StartedAt")),
        finishedAt=docker_time(state.get("FinishedAt")),
        containerID=f"docker://{info['Id']}")


def container_status(facts: ContainerFacts) -> ContainerStatus:
    info = facts.docker
    base = {"name": facts.name, "image": facts.image, "restartCount": facts.restart_count}
    if facts.terminated_override is not None:
        return ContainerStatus(**base, state=ContainerState(terminated=facts.terminated_override))
    if info is None:
        waiting = facts.waiting or Waiting("ContainerCreating")
        return ContainerStatus(**base, state=ContainerState(
            waiting=ContainerStateWaiting(reason=waiting.reason, message=waiting.message)))

    state = info["State"]
    ids = {"imageID": f"docker://{info.get('Image', '')}", "containerID": f"docker://{info['Id']}"}
    if facts.backoff:
        return ContainerStatus(
            **base, **ids,
            state=ContainerState(waiting=ContainerStateWaiting(reason="CrashLoopBackOff",
                                                               message=facts.backoff)),
            lastState=ContainerState(terminated=terminated_from_docker(info)))
    if state.get("Restarting"):
        return ContainerStatus(
            **base, **ids,
            state=ContainerState(waiting=ContainerStateWaiting(
                reason="CrashLoopBackOff",
                message=f"back-off restarting failed container {facts.name}")),
            lastState=ContainerState(terminated=terminated_from_docker(info)))
    if state.get("Running"):
        ready = True if facts.ready is None else facts.ready
        started = True if facts.started is None else facts.started
        return ContainerStatus(
            **base, **ids, ready=ready, started=started,
            state=ContainerState(running=ContainerStateRunning(
                startedAt=docker_time(state.get("StartedAt")))))
    if state.get("Status") == "created" and not state.get("Error"):
        return ContainerStatus(**base, **ids, state=ContainerState(
            waiting=ContainerStateWaiting(reason="ContainerCreating")))
    terminated = terminated_from_docker(info)
    if facts.message and not terminated.message:
        terminated = terminated.model_copy(update={"message": facts.message})
    return ContainerStatus(**base, **ids, state=ContainerState(terminated=terminated))


def not_found_status(pod: dict[str, Any], why: str) -> PodStatus:
    """A pod this sidecar does not know: every container terminated with reason NotFound (an
    empty list would read as Succeeded to the VK). Only the UID of a status request is checked,
    so the rest is echoed where it has the expected type and left out where not."""
    meta, spec = _mapping(pod.get("metadata")), _mapping(pod.get("spec"))

    def gone(c: dict[str, Any]) -> ContainerStatus:
        return ContainerStatus(
            name=_text(c.get("name")), image=_text(c.get("image")),
            state=ContainerState(terminated=ContainerStateTerminated(
                exitCode=NOT_FOUND_EXIT_CODE, reason="NotFound", message=why)))

    def listed(key: str) -> list[ContainerStatus]:
        items = spec.get(key)
        return [gone(c) for c in items if isinstance(c, dict)] if isinstance(items, list) else []

    return PodStatus(name=_text(meta.get("name")), UID=_text(meta.get("uid")),
                     namespace=_text(meta.get("namespace")), JID="",
                     containers=listed("containers") or [gone({"name": "unknown"})],
                     initContainers=listed("initContainers"))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def phase_of(status: PodStatus) -> str:
    """The phase the current VK derives from a status (docs/PROTOCOL.md section 4)."""
    for c in status.initContainers or []:
        if c.state.waiting is not None or c.state.running is not None:
            return "Pending"
    containers = status.containers or []
    if any(c.state.running is not None for c in containers):
        return "Running"
    if all(c.state.terminated is not None for c in containers):
        failed = any(c.state.terminated and c.state.terminated.exitCode for c in containers)
        return "Failed" if failed else "Succeeded"
    return "Pending"
