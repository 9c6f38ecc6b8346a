"""A pod's identity as Kubernetes defines it: UID, namespace, name, container names.

Both services check these before anything else: the API before forwarding, the sidecar
because it can be called directly. The sidecar turns these values into host paths, Docker
names and labels, so a value that is not what Kubernetes would allow is refused here, with the
field named, and never reaches the filesystem.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(rf"{_LABEL}")
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
# The API server's UIDs are RFC 4122 UUIDs in their canonical lower-case form.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LABEL_MAX, SUBDOMAIN_MAX = 63, 253
# The same rules as regular expressions, for the OpenAPI documents (interlink_common/openapi.py).
UID_PATTERN, LABEL_PATTERN, SUBDOMAIN_PATTERN = (f"^{r.pattern}$" for r in (
    _UUID, DNS1123_LABEL, DNS1123_SUBDOMAIN))


class IdentityError(ValueError):
    """A name or UID Kubernetes would not allow; the message names the field and the rule."""


def is_dns1123_label(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= LABEL_MAX and \
        DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= SUBDOMAIN_MAX and \
        DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_uid(value: Any) -> bool:
    if not isinstance(value, str) or _UUID.fullmatch(value) is None:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def check_uid(value: Any, where: str = "metadata.uid") -> str:
    if not is_uid(value):
        raise IdentityError(f"{where} {_show(value)} is not a pod UID: Kubernetes gives every "
                            "pod a UUID such as 0b6e2c1a-8a5d-4a7e-9c8e-3f1f2d4b5a6c; send the "
                            "pod's own metadata.uid")
    return value


def check_label(value: Any, where: str, what: str) -> str:
    if not is_dns1123_label(value):
        raise IdentityError(f"{where} {_show(value)} is not a valid {what}: use at most "
                            f"{LABEL_MAX} lowercase letters, digits and '-', starting and ending "
                            "with a letter or digit (a DNS-1123 label)")
    return value


def check_subdomain(value: Any, where: str, what: str) -> str:
    if not is_dns1123_subdomain(value):
        raise IdentityError(f"{where} {_show(value)} is not a valid {what}: use at most "
                            f"{SUBDOMAIN_MAX} lowercase letters, digits, '-' and '.', each part "
                            "starting and ending with a letter or digit (a DNS-1123 subdomain)")
    return value


def check_pod_identity(pod: Mapping[str, Any], *, containers: bool = True) -> None:
    """metadata.uid, namespace and name, and (``containers``) every container's name."""
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        raise IdentityError("metadata is missing; send the pod object with its metadata")
    check_uid(meta.get("uid"))
    check_label(meta.get("namespace"), "metadata.namespace", "namespace name")
    check_subdomain(meta.get("name"), "metadata.name", "pod name")
    if not containers:
        return
    spec = pod.get("spec")
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise IdentityError("spec must be an object")
    for key in ("initContainers", "containers"):
        listed = spec.get(key) or []
        if not isinstance(listed, list):
            raise IdentityError(f"spec.{key} must be a list of containers")
        for i, container in enumerate(listed):
            if not isinstance(container, Mapping):
                raise IdentityError(f"spec.{key}[{i}]: expected a container object")
            check_label(container.get("name"), f"spec.{key}[{i}].name", "container name")


def _show(value: Any) -> str:
    """The offending value, cut short: it may be long, and it is someone else's input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
