"""Building pods as the VK sends them, and reading statuses as the VK reads them."""

from __future__ import annotations

import base64
import uuid
from typing import Any

BUSYBOX = "interlink-test/busybox:1"


def container(name: str, script: str | None = None, *, image: str = BUSYBOX,
              **fields: Any) -> dict[str, Any]:
    """A container; ``script`` runs under ``sh -c``."""
    c: dict[str, Any] = {"name": name, "image": image}
    if script is not None:
        c["command"] = ["sh", "-c", script]
    c.update(fields)
    return c


def pod(name: str, containers: list[dict[str, Any]], *, init: list[dict[str, Any]] | None = None,
        namespace: str = "tests", restart: str = "Never", volumes: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None, grace: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                     "labels": labels or {"app": name}, "annotations": {"note": "a \"quoted\" one"},
                     "creationTimestamp": None},
        "spec": {"containers": containers, "restartPolicy": restart,
                 "terminationGracePeriodSeconds": grace, "nodeName": "interlink-node", **spec},
        "status": {"phase": "Pending"},
    }
    if init:
        body["spec"]["initContainers"] = init
    if volumes:
        body["spec"]["volumes"] = volumes
    return body


def config_map(name: str, data: dict[str, str], namespace: str = "tests") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


def secret(name: str, data: dict[str, str], namespace: str = "tests",
           type_: str = "Opaque") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "type": type_,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def create_body(p: dict[str, Any], *, config_maps: list[dict[str, Any]] = (),
                secrets: list[dict[str, Any]] = (),
                projected: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """A RetrievedPodData as the current API server sends it (every object to every container,
    which is a superset of what the API computes and keeps tests short)."""
    spec = p["spec"]
    names = [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]
    return {"pod": p, "container": [
        {"name": n, "configMaps": list(config_maps), "projectedvolumemaps": list(projected),
         "secrets": list(secrets), "emptyDirs": None} for n in names], "jobConfig": {}}


def vk_phase(status: dict[str, Any]) -> str:
    """How the current VK turns a PodStatus into a phase (docs/PROTOCOL.md section 4)."""
    for c in status.get("initContainers") or []:
        if "waiting" in c["state"] or "running" in c["state"]:
            return "Pending"
    containers = status.get("containers") or []
    if any("running" in c["state"] for c in containers):
        return "Running"
    if all("terminated" in c["state"] for c in containers):
        codes = [c["state"]["terminated"]["exitCode"] for c in containers]
        return "Failed" if any(codes) else "Succeeded"
    return "Pending"


def state_of(status: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    return next(c for c in status[key] or [] if c["name"] == name)
