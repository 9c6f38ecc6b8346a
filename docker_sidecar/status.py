"""Pure mapping from Docker's container state to Kubernetes container statuses, and the
assembly of a pod's status from what the sidecar knows of it (no Docker call, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import labels as L
from .containers import Container, latest_attempts

if TYPE_CHECKING:
    from .lifecycle import Health
    from .pod_worker import PodRecord

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
EVICTED_EXIT_CODE = 137  # killed, as the kubelet's eviction leaves a container


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
    docker: Container | dict[str, Any] | None = None  # its latest Docker container, if any
    restart_count: int = 0
    waiting: Waiting | None = None  # why it has no Docker container (yet)
    ready: bool | None = None  # probe verdict; None: ready while running
    started: bool | None = None  # startup probe verdict; None: started while running
    terminated_override: ContainerStateTerminated | None = None
    backoff: str = ""  # set while a container that could not start waits for its retry
    message: str = ""  # termination message (file, logs, or why the sidecar killed it)


def terminated_from_docker(info: Container | dict[str, Any]) -> ContainerStateTerminated:
    c = Container.of(info)
    assert c is not None
    state = c.state
    code = state.exit_code or 0
    if state.oom_killed:
        reason = "OOMKilled"
    elif state.error and not docker_time(state.started_at):
        reason = "StartError"
    else:
        reason = "Completed" if code == 0 else "Error"
    return ContainerStateTerminated(
        exitCode=code if code or reason == "Completed" else 128,
        reason=reason, message=state.error,
        startedAt=docker_time(state.started_at),
        finishedAt=docker_time(state.finished_at),
        containerID=f"docker://{c.id}")


def container_status(facts: ContainerFacts) -> ContainerStatus:
    info = Container.of(facts.docker)
    base = {"name": facts.name, "image": facts.image, "restartCount": facts.restart_count}
    if facts.terminated_override is not None:
        return ContainerStatus(**base, state=ContainerState(terminated=facts.terminated_override))
    if info is None:
        waiting = facts.waiting or Waiting("ContainerCreating")
        return ContainerStatus(**base, state=ContainerState(
            waiting=ContainerStateWaiting(reason=waiting.reason, message=waiting.message)))

    state = info.state
    ids = {"imageID": f"docker://{info.image}", "containerID": f"docker://{info.id}"}
    if facts.backoff:
        return ContainerStatus(
            **base, **ids,
            state=ContainerState(waiting=ContainerStateWaiting(reason="CrashLoopBackOff",
                                                               message=facts.backoff)),
            lastState=ContainerState(terminated=terminated_from_docker(info)))
    if state.restarting:
        return ContainerStatus(
            **base, **ids,
            state=ContainerState(waiting=ContainerStateWaiting(
                reason="CrashLoopBackOff",
                message=f"back-off restarting failed container {facts.name}")),
            lastState=ContainerState(terminated=terminated_from_docker(info)))
    if state.running:
        ready = True if facts.ready is None else facts.ready
        started = True if facts.started is None else facts.started
        return ContainerStatus(
            **base, **ids, ready=ready, started=started,
            state=ContainerState(running=ContainerStateRunning(
                startedAt=docker_time(state.started_at))))
    if state.created_only:
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


def evicted_state(info: Container | dict[str, Any] | None, message: str
                  ) -> ContainerStateTerminated | None:
    """What status reports for a container of an evicted pod: ``Evicted`` once it is down,
    except for a container that completed by itself before (it keeps ``Completed``); None
    leaves the status as Docker says (still running while it is being killed)."""
    c = Container.of(info)
    finished = not str(c.state.raw.get("FinishedAt", "0001")).startswith("0001") if c else False
    if c is not None and (c.state.running or (c.state.exit_code == 0 and not c.state.error
                                              and finished)):
        return None
    base = terminated_from_docker(c) if c is not None else ContainerStateTerminated(
        exitCode=EVICTED_EXIT_CODE)
    return base.model_copy(update={"reason": "Evicted", "message": message,
                                   "exitCode": base.exitCode or EVICTED_EXIT_CODE})


def pod_status(record: PodRecord, containers: list[Container], *,
               health: Callable[[str], Health | None],
               message: Callable[[Container | None, Health | None], str]) -> PodStatus:
    """A known pod's status from its record and its Docker containers; ``health`` gives a
    main container's probe verdicts, ``message`` a container's termination message."""
    latest = latest_attempts(containers)
    specs = container_specs(record)
    mains = [c for c in (record.pod.get("spec") or {}).get("containers") or []
             if isinstance(c, dict)]
    probed = {c.get("name") for c in mains if c.get("readinessProbe")}
    gated = {c.get("name") for c in mains if c.get("startupProbe")}

    def facts(role: str, name: str, image: str) -> ContainerFacts:
        found = latest.get((role, name))
        waiting = record.waiting.get(name)
        override = None
        if found is None and record.init_failed is not None:
            # Never run: mains and the init containers after the failed one. Reported
            # terminated, as waiting would keep the pod Pending for the VK.
            override = ContainerStateTerminated(
                exitCode=record.init_failed.exitCode or 1, reason="InitContainerFailed",
                message=f"init container {record.init_failed_name!r} failed "
                        f"(exit code {record.init_failed.exitCode}) and restartPolicy is "
                        "Never")
        elif role == L.ROLE_MAIN and found is None and waiting is None and \
                init_pending(latest, specs):
            waiting = Waiting("PodInitializing")
        if record.evicted:
            override = evicted_state(found, record.evicted) or override
        verdicts = health(name) if role == L.ROLE_MAIN else None
        restarts = found.attempt if found else 0
        if role == L.ROLE_MAIN:
            restarts += (found.restart_count if found else 0) + (
                verdicts.extra_restarts if verdicts else 0)
        return ContainerFacts(
            name=name, image=image, docker=found, restart_count=restarts, waiting=waiting,
            ready=ready(verdicts, name in probed, name in gated),
            started=verdicts.started if verdicts else (False if name in gated else None),
            terminated_override=override, backoff=verdicts.backoff if verdicts else "",
            message=message(found, verdicts))

    return PodStatus(
        name=record.name, UID=record.uid, namespace=record.namespace, JID=record.job_id,
        containers=[container_status(facts(L.ROLE_MAIN, n, i)) for n, i in specs["main"]],
        initContainers=[container_status(facts(L.ROLE_INIT, n, i))
                        for n, i in specs["init"]])


def ready(health: Health | None, probed: bool, gated: bool) -> bool | None:
    """None lets status say "ready while running"; a probed container is ready only once its
    probe said so, and never before its startup probe passed (``gated``)."""
    if health is None:  # its supervisor has not started yet
        return False if probed or gated else None
    if probed or not health.started:
        return health.ready and health.started
    return None


def container_specs(record: PodRecord) -> dict[str, list[tuple[str, str]]]:
    """(name, image) of the pod's init and main containers, from its plan, else as sent."""
    if record.plan is not None:
        return {"init": [(c.name, c.image) for c in record.plan.init],
                "main": [(c.name, c.image) for c in record.plan.main]}
    spec = record.pod.get("spec") or {}
    return {"init": [(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []],
            "main": [(c["name"], c.get("image", "")) for c in spec.get("containers") or []]}


def init_pending(latest: Mapping[tuple[str, str], Container],
                 specs: dict[str, list[tuple[str, str]]]) -> bool:
    """Some init container has not completed yet."""
    for name, _ in specs["init"]:
        found = latest.get((L.ROLE_INIT, name))
        if found is None or not found.has_stopped or found.state.exit_code:
            return True
    return False
