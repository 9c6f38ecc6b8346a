"""Reading the files ``interlink create`` is given: a Pod and the ConfigMaps and Secrets it uses.

A file is YAML or JSON (JSON is read as YAML) and may hold several documents, or a ``kind: List``
of items; ``kind`` tells them apart. What the kube-apiserver would fill in before a kubelet saw
the pod is filled in here: a fresh ``metadata.uid``, the ``default`` namespace, and a Secret's
``stringData`` folded into base64 ``data``.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import USAGE, CLIFailure

DEFAULT_NAMESPACE = "default"
KINDS = ("Pod", "ConfigMap", "Secret")


@dataclass
class CreateRequest:
    """One pod and the objects sent along with it."""

    pod: dict[str, Any]
    configmaps: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.pod["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]

    def container_names(self) -> list[str]:
        return [c.get("name", "") for c in self.pod.get("spec", {}).get("containers") or []]


def read_documents(path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(where, document)`` for every non-empty document in the file, Lists flattened;
    ``where`` names the file and the document's place for messages."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIFailure(f"cannot read {path}: {exc}", USAGE) from None
    try:
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise CLIFailure(f"{path}: not valid YAML or JSON: {exc}", USAGE) from None
    out: list[tuple[str, dict[str, Any]]] = []
    for i, doc in enumerate(loaded):
        where = f"{path} (document {i + 1})" if len(loaded) > 1 else path
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" \
            else [doc]
        for j, item in enumerate(items or []):
            at = f"{where} item {j}" if doc is not item else where
            if not isinstance(item, dict):
                raise CLIFailure(f"{at}: expected a Kubernetes object (a mapping), got "
                                 f"{type(item).__name__}", USAGE)
            out.append((at, item))
    return out


def load_create_request(pod_files: list[str], configmap_files: list[str] = (),
                        secret_files: list[str] = ()) -> CreateRequest:
    """Exactly one Pod from ``pod_files`` with every ConfigMap and Secret found in all files;
    in the ``--configmap``/``--secret`` files ``kind`` may be left out."""
    pods: list[tuple[str, dict[str, Any]]] = []
    configmaps: list[dict[str, Any]] = []
    secrets: list[dict[str, Any]] = []
    sources = [(f, None) for f in pod_files] + [(f, "ConfigMap") for f in configmap_files] \
        + [(f, "Secret") for f in secret_files]
    for path, implied in sources:
        for where, doc in read_documents(path):
            kind = doc.get("kind") or implied
            if kind not in KINDS or (implied and kind != implied):
                wanted = implied or " or ".join(KINDS)
                raise CLIFailure(f"{where}: kind {doc.get('kind')!r} is not {wanted}; "
                                 "set kind: on every document", USAGE)
            if kind == "Pod":
                pods.append((where, doc))
            elif kind == "ConfigMap":
                configmaps.append(doc)
            else:
                secrets.append(doc)
    if len(pods) != 1:
        found = ", ".join(w for w, _ in pods) or "none"
        raise CLIFailure(f"expected exactly one Pod in {', '.join(pod_files)}, found "
                         f"{len(pods)} ({found}); create one pod per call", USAGE)
    where, pod = pods[0]
    pod = _complete_pod(pod, where)
    ns = pod["metadata"]["namespace"]
    return CreateRequest(pod=pod, configmaps=[_in_namespace(c, ns) for c in configmaps],
                         secrets=[_fold_string_data(_in_namespace(s, ns)) for s in secrets])


def _complete_pod(pod: dict[str, Any], where: str) -> dict[str, Any]:
    meta = dict(pod.get("metadata") or {})
    if not meta.get("name"):
        raise CLIFailure(f"{where}: the Pod has no metadata.name", USAGE)
    if not (pod.get("spec") or {}).get("containers"):
        raise CLIFailure(f"{where}: pod {meta['name']} has no spec.containers", USAGE)
    meta.setdefault("uid", str(uuid.uuid4()))
    meta["uid"] = meta["uid"] or str(uuid.uuid4())
    meta["namespace"] = meta.get("namespace") or DEFAULT_NAMESPACE
    return {**pod, "metadata": meta}


def _in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta["namespace"] = meta.get("namespace") or namespace
    return {**obj, "metadata": meta}


def _fold_string_data(secret: dict[str, Any]) -> dict[str, Any]:
    """The kube-apiserver merges ``stringData`` into ``data`` on write, so a plugin only ever
    sees ``data``; do the same, ``stringData`` winning as it does there."""
    string_data = secret.get("stringData")
    if not string_data:
        return secret
    data = dict(secret.get("data") or {})
    data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
    return {k: v for k, v in {**secret, "data": data}.items() if k != "stringData"}
