"""Docker labels and names of the objects a pod becomes.

Every container and volume carries the pod's identity in labels, so the sidecar's whole view can
be rebuilt from Docker after a restart. Names embed the full pod UID: two pods whose containers
share a name never collide.
"""

from __future__ import annotations

import re

MANAGED = "io.interlink.managed"  # value: the sidecar instance that owns the object
POD_UID = "io.interlink.pod.uid"
POD_NAMESPACE = "io.interlink.pod.namespace"
POD_NAME = "io.interlink.pod.name"
CONTAINER = "io.interlink.container.name"
ROLE = "io.interlink.container.role"  # infra, init, main or tunnel
INDEX = "io.interlink.container.index"  # position among the pod's init or main containers
ATTEMPT = "io.interlink.container.attempt"  # init container re-runs (restartCount)
GPUS = "io.interlink.gpus"  # comma-separated device UUIDs held by the container
POD_JSON = "io.interlink.pod.json"  # the pod as the VK sent it (infra container only)

ROLE_INFRA, ROLE_INIT, ROLE_MAIN = "infra", "init", "main"
# The tunnel companion (interlink.eu/wstunnel-client-commands): not a Kubernetes container.
ROLE_TUNNEL = "tunnel"
# Its container name: upper case, which no Kubernetes container name can be.
TUNNEL_NAME = "TUNNEL"

_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def _part(text: str) -> str:
    return _UNSAFE.sub("-", text)[:63] or "x"


def container_name(namespace: str, pod: str, container: str, uid: str, attempt: int = 0) -> str:
    """``il_<namespace>_<pod>_<container>_<uid>``; init re-runs add ``_<attempt>``."""
    base = f"il_{_part(namespace)}_{_part(pod)}_{_part(container)}_{_part(uid)}"
    return f"{base}_{attempt}" if attempt else base


def infra_name(namespace: str, pod: str, uid: str) -> str:
    # "POD" cannot be a Kubernetes container name (upper case), so it never collides.
    return container_name(namespace, pod, "POD", uid)


def volume_prefix(uid: str) -> str:
    return f"il_{_part(uid)}_"


def pod_labels(instance: str, uid: str, namespace: str, name: str) -> dict[str, str]:
    return {MANAGED: instance, POD_UID: uid, POD_NAMESPACE: namespace, POD_NAME: name}
