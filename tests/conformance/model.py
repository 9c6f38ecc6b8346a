"""What a conformance case is: the objects it creates and how it is judged.

Judging follows upstream's validation procedure: every check is evaluated in one pass, a pass
that meets them all ends the case, anything else is retried until the timeout. Pods are looked
up by name; a check may also name a Job, in which case it applies to every pod the Job
controller created for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
Operator = Literal["Exists", "CountAtLeast", "CountAtMost", "CountExactly", "Is"]


@dataclass(frozen=True)
class PodCheck:
    """The pod (or every pod of the Job) ``target`` is in ``phase``."""

    target: str
    phase: Phase = "Succeeded"


@dataclass(frozen=True)
class LogCheck:
    """``regex`` applied with ``re.findall`` to the log of ``container`` (the only container
    when None, as the kube-apiserver picks it), then judged by ``operator`` against ``value``."""

    target: str
    regex: str
    container: str | None = None
    operator: Operator = "Exists"
    value: str | int | None = None


@dataclass
class Job:
    """A batch/v1 Job: the runner plays its controller (one pod per attempt, a new attempt
    after each failed one, at most ``backoff_limit + 1``)."""

    name: str
    template: dict[str, Any]  # the pod template: {"metadata": {...}, "spec": {...}}
    backoff_limit: int = 6


@dataclass
class Case:
    """One upstream template, re-expressed."""

    template: str  # upstream file name, e.g. "000-hello-world.yaml"
    summary: str
    pods: list[dict[str, Any]] = field(default_factory=list)  # as a user would write them
    jobs: list[Job] = field(default_factory=list)
    config_maps: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)  # may use stringData
    pod_checks: list[PodCheck] = field(default_factory=list)
    log_checks: list[LogCheck] = field(default_factory=list)
    timeout_seconds: float = 60.0
    # Extra assertions of ours on the final statuses (name -> PodStatus), run after the
    # upstream checks passed; each one is explained where the case defines it.
    extra: Callable[[dict[str, dict[str, Any]]], None] | None = None


# --- small builders shared by the cases -----------------------------------------------------


def pod(name: str, containers: list[dict[str, Any]], *, namespace: str,
        init: list[dict[str, Any]] | None = None, volumes: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None, restart: str = "Never") -> dict[str, Any]:
    """A pod manifest the way the templates write them (no server-side defaults yet)."""
    spec: dict[str, Any] = {"restartPolicy": restart, "containers": containers}
    if init:
        spec["initContainers"] = init
    if volumes:
        spec["volumes"] = volumes
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "spec": spec}


def container(name: str, image: str, *, command: list[str] | None = None,
              args: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    c.update(fields)
    c.setdefault("imagePullPolicy", "Always")  # what every upstream template asks for
    return c


def shell(name: str, image: str, script: str, shell_path: str = "/bin/sh",
          **fields: Any) -> dict[str, Any]:
    """A container running ``script`` with ``<shell> -c``, the templates' favourite form."""
    return container(name, image, command=[shell_path, "-c"], args=[script], **fields)


def python(name: str, image: str, code: str, **fields: Any) -> dict[str, Any]:
    """A container running ``code`` with ``python -c``."""
    return container(name, image, command=["python", "-c"], args=[code], **fields)


def mount(volume: str, path: str, **fields: Any) -> dict[str, Any]:
    return {"name": volume, "mountPath": path, **fields}


def config_map(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


def secret(name: str, namespace: str, string_data: dict[str, str]) -> dict[str, Any]:
    """A Secret as written in a manifest, with ``stringData`` (the apiserver encodes it)."""
    return {"metadata": {"name": name, "namespace": namespace}, "type": "Opaque",
            "stringData": string_data}
