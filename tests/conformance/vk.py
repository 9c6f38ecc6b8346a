"""The virtual kubelet's side of the wire, in its two generations (docs/PROTOCOL.md,
"Two VK generations").

``current`` (interLink 0.5+): every call carries ``InterLink-Http-Session: <Op>#<n>``; the
create request carries the ConfigMaps and Secrets that volumes name, one
``projectedvolumesmaps`` entry per projected or downwardAPI volume (the VK mints the
service-account token and reads ``kube-root-ca.crt`` itself; a downwardAPI volume is rewritten
into a projected one), and the containers' ``envFrom`` and ``valueFrom`` ConfigMap/Secret
references resolved into plain values. ``/status`` is asked one pod at a time, for pods not yet
Succeeded or Failed.

``legacy`` (interLink 0.2.x): no session header, always a bearer token; the create request is
``pod``, ``configmaps``, ``secrets`` only, with env references left as written and the objects
they name sent alongside. ``/status`` is asked for every known pod in one batch.

Requests are written byte for byte as Go's net/http writes them (``raw_http.go_request``).
"""

from __future__ import annotations

import base64
import copy
import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from raw_http import go_request, send

from .cluster import Cluster, now, service_account_token

Profile = Literal["current", "legacy"]

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class Reply:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _null_if_empty(items: list[Any]) -> list[Any] | None:
    # Go's encoding/json writes a nil slice as null; the VKs start from nil and append.
    return items or None


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _downward_value(pod: dict[str, Any], field_path: str) -> str | None:
    meta = pod["metadata"]
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": pod["spec"].get("nodeName"),
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
              "status.podIP": (pod.get("status") or {}).get("podIP", "")}
    if field_path in simple:
        return simple[field_path] or ""
    if field_path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(field_path.split(".")[1]) or {}
        return "".join(f"{k}={json.dumps(values[k])}\n" for k in sorted(values))
    return None


class VirtualKubelet:
    """One VK talking to one ``interlink-api``."""

    def __init__(self, api_base: str, cluster: Cluster, profile: Profile,
                 token: str = "vk-token") -> None:
        self.base = api_base
        self.host = api_base.split("://", 1)[1]
        self.cluster = cluster
        self.profile = profile
        self.token = token

    # --- what goes on the wire --------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any, op: str,
              timeout: float = 60.0) -> Reply:
        raw = json.dumps(body).encode()
        if self.profile == "current":
            session = f"{op}#{random.randint(0, 99999)}"
            request = go_request(method, path, self.host, raw, token=None, session=session)
        else:
            request = go_request(method, path, self.host, raw, token=self.token)
        response = send(self.base, request, timeout=timeout)
        return Reply(response.status, response.body)

    def create_request(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The ``PodCreateRequests`` body this profile sends for an admitted pod."""
        if self.profile == "current":
            return self._current_create(pod)
        return self._legacy_create(pod)

    def _current_create(self, admitted: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(admitted)
        ns = pod["metadata"]["namespace"]
        config_maps: list[dict[str, Any]] = []
        secrets: list[dict[str, Any]] = []
        projected: list[dict[str, Any]] = []
        for volume in pod["spec"].get("volumes") or []:
            if "configMap" in volume:
                config_maps.append(self.cluster.config_map(ns, volume["configMap"]["name"]))
            elif "secret" in volume:
                secrets.append(self.cluster.secret(ns, volume["secret"]["secretName"]))
            elif "projected" in volume:
                data: dict[str, str] = {}
                for source in volume["projected"].get("sources") or []:
                    self._project(pod, source, data)
                projected.append({"metadata": {"name": volume["name"],
                                               "creationTimestamp": None}, "data": data})
            elif "downwardAPI" in volume:
                data = {}
                self._project(pod, {"downwardAPI": volume["downwardAPI"]}, data)
                projected.append({"metadata": {"name": volume["name"],
                                               "creationTimestamp": None}, "data": data})
                downward = volume.pop("downwardAPI")
                volume["projected"] = {"defaultMode": downward.get("defaultMode"), "sources": [
                    {"downwardAPI": {"items": downward.get("items") or []}}]}
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            self._resolve_env(ns, c)
        return {"pod": pod, "configmaps": _null_if_empty(config_maps),
                "secrets": _null_if_empty(secrets),
                "projectedvolumesmaps": _null_if_empty(projected), "jobscriptURL": ""}

    def _project(self, pod: dict[str, Any], source: dict[str, Any], data: dict[str, str]) -> None:
        ns = pod["metadata"]["namespace"]
        if "serviceAccountToken" in source:
            data[source["serviceAccountToken"]["path"]] = service_account_token(pod)
        elif "configMap" in source:
            cm = self.cluster.config_map(ns, source["configMap"]["name"])["data"]
            items = source["configMap"].get("items")
            if items:
                for item in items:
                    data[item["path"]] = cm[item["key"]]
            else:
                data.update(cm)
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                value = _downward_value(pod, (item.get("fieldRef") or {}).get("fieldPath", ""))
                if value is not None:
                    data[item["path"]] = value
        # The current VK ignores secret sources in projected volumes: nothing to send.

    def _resolve_env(self, ns: str, c: dict[str, Any]) -> None:
        env = c.get("env") or []
        for entry in env:
            source = entry.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                entry["value"] = self.cluster.config_map(ns, ref["name"])["data"][ref["key"]]
                del entry["valueFrom"]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                entry["value"] = _decoded(self.cluster.secret(ns, ref["name"]))[ref["key"]]
                del entry["valueFrom"]
        explicit = {e["name"] for e in env}
        for env_from in c.pop("envFrom", None) or []:
            prefix = env_from.get("prefix") or ""
            if "configMapRef" in env_from:
                values = self.cluster.config_map(ns, env_from["configMapRef"]["name"])["data"]
            else:
                values = _decoded(self.cluster.secret(ns, env_from["secretRef"]["name"]))
            for key in sorted(values):  # Go ranges over a map: any order
                if prefix + key not in explicit:
                    env.append({"name": prefix + key, "value": values[key]})
                    explicit.add(prefix + key)
        if env:
            c["env"] = env

    def _legacy_create(self, pod: dict[str, Any]) -> dict[str, Any]:
        ns = pod["metadata"]["namespace"]
        cm_names: list[str] = []
        secret_names: list[str] = []

        def add(names: list[str], name: str | None) -> None:
            if name and name not in names:
                names.append(name)

        for volume in pod["spec"].get("volumes") or []:
            add(cm_names, (volume.get("configMap") or {}).get("name"))
            add(secret_names, (volume.get("secret") or {}).get("secretName"))
            for source in (volume.get("projected") or {}).get("sources") or []:
                add(cm_names, (source.get("configMap") or {}).get("name"))
                add(secret_names, (source.get("secret") or {}).get("name"))
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            for entry in c.get("env") or []:
                source = entry.get("valueFrom") or {}
                add(cm_names, (source.get("configMapKeyRef") or {}).get("name"))
                add(secret_names, (source.get("secretKeyRef") or {}).get("name"))
            for env_from in c.get("envFrom") or []:
                add(cm_names, (env_from.get("configMapRef") or {}).get("name"))
                add(secret_names, (env_from.get("secretRef") or {}).get("name"))
        return {"pod": pod,
                "configmaps": _null_if_empty([self.cluster.config_map(ns, n) for n in cm_names]),
                "secrets": _null_if_empty([self.cluster.secret(ns, n) for n in secret_names])}

    # --- the calls ----------------------------------------------------------------------------

    def create(self, pod: dict[str, Any]) -> Reply:
        return self._call("POST", "/create", self.create_request(pod), "CreatePod")

    def status(self, pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """PodStatus by pod UID. Current: one request per pod; legacy: one batch."""
        batches = [[p] for p in pods] if self.profile == "current" else [pods]
        out: dict[str, dict[str, Any]] = {}
        for batch in batches:
            if not batch:
                continue
            reply = self._call("GET", "/status", batch, "GetStatus")
            if reply.status != 200:
                raise RuntimeError(f"/status answered {reply.status}: {reply.text}")
            for status in json.loads(reply.body) or []:
                out[status["UID"]] = status
        return out

    def logs(self, pod: dict[str, Any], container: str) -> Reply:
        meta = pod["metadata"]
        return self._call("GET", "/getLogs", {
            "Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"],
            "ContainerName": container,
            "Opts": {"Tail": 0, "Bytes": 0, "Timestamps": False, "Follow": False,
                     "Previous": False, "SinceSeconds": 0, "SinceTime": GO_ZERO_TIME}},
            "GetLogs")

    def delete(self, pod: dict[str, Any], grace_seconds: int) -> Reply:
        """What the VK sends once the API server marked the pod for deletion."""
        pod = copy.deepcopy(pod)
        pod["metadata"]["deletionTimestamp"] = now()
        pod["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
        return self._call("DELETE", "/delete", pod, "DeletePod",
                          timeout=grace_seconds + 60.0)
