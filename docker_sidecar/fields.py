"""Downward API values: ``fieldRef`` and ``resourceFieldRef``, as the kubelet resolves them.

Shared by env resolution and downwardAPI volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .quantity import QuantityError, parse_quantity


class FieldError(ValueError):
    """A reference that cannot be resolved; the message names what is wrong."""


@dataclass(frozen=True)
class PodFacts:
    """What the downward API may expose about a pod, gathered once per pod."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_name: str = ""
    service_account: str = ""
    pod_ip: str = ""
    host_ip: str = ""

    @classmethod
    def from_pod(cls, pod: dict[str, Any], *, node_name: str = "", pod_ip: str = "",
                 host_ip: str = "") -> "PodFacts":
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        return cls(
            name=meta.get("name", ""), namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""), labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            node_name=spec.get("nodeName") or node_name,
            service_account=spec.get("serviceAccountName") or spec.get("serviceAccount") or "",
            pod_ip=pod_ip, host_ip=host_ip)


def _format_map(items: dict[str, str]) -> str:
    # The kubelet writes one key="value" per line, sorted, values quoted Go-style.
    import json

    return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(items.items()))


def resolve_field_ref(facts: PodFacts, field_path: Any) -> str:
    """Value of ``fieldRef.fieldPath`` (metadata.name, metadata.labels['x'], status.podIP, ...)."""
    if not isinstance(field_path, str) or not field_path:
        # null or absent is allowed by the pod's JSON shape, not by Kubernetes.
        raise FieldError(f"fieldPath {field_path!r} is not a field path; set it, e.g. "
                         "metadata.name or status.podIP")
    simple = {
        "metadata.name": facts.name,
        "metadata.namespace": facts.namespace,
        "metadata.uid": facts.uid,
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": facts.service_account,
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if field_path in simple:
        return simple[field_path]
    if field_path == "metadata.labels":
        return _format_map(facts.labels)
    if field_path == "metadata.annotations":
        return _format_map(facts.annotations)
    for prefix, items in (("metadata.labels", facts.labels),
                          ("metadata.annotations", facts.annotations)):
        if field_path.startswith(prefix + "[") and field_path.endswith("]"):
            key = field_path[len(prefix) + 1:-1].strip("'\"")
            return items.get(key, "")
    raise FieldError(f"fieldPath {field_path!r} is not supported; use metadata.name, "
                     "metadata.namespace, metadata.uid, metadata.labels['k'], "
                     "metadata.annotations['k'], spec.nodeName, spec.serviceAccountName, "
                     "status.podIP or status.hostIP")


def resolve_resource_field_ref(container: dict[str, Any], resource: str, divisor: Any = None,
                               *, node_cpu: int = 1, node_memory: int = 0) -> str:
    """Value of ``resourceFieldRef``: the container's limit or request, divided by ``divisor``,
    rounded up; an unset limit falls back to the node's capacity, as on a kubelet."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise FieldError(f"resourceFieldRef.resource {resource!r} is not supported; use "
                         "limits.cpu, limits.memory, requests.cpu or requests.memory")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    try:
        if raw is None:
            value = Decimal(node_cpu) if name == "cpu" else Decimal(node_memory)
            if kind == "requests":
                value = Decimal(0)
        else:
            value = parse_quantity(raw)
        div = parse_quantity(divisor) if divisor not in (None, "", 0, "0") else Decimal(1)
    except QuantityError as exc:
        raise FieldError(f"resourceFieldRef {resource}: {exc}") from None
    if div == 0:
        raise FieldError(f"resourceFieldRef {resource}: divisor must not be zero")
    return str(math.ceil(value / div))
