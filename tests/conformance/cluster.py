"""The cluster side of a conformance run: what the kube-apiserver and the Job controller would do
to the manifests before a virtual kubelet ever sees them.

- Secrets written with ``stringData`` are stored base64-encoded in ``data``.
- Every namespace has the ``kube-root-ca.crt`` ConfigMap (published by the root CA publisher),
  holding a real, multi-line PEM certificate generated once per run.
- Pods get the API server's defaults, are scheduled to the virtual node, and the
  service-account admission adds the ``kube-api-access-<random>`` projected volume (token,
  ``ca.crt`` from ``kube-root-ca.crt``, namespace) mounted at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` in every container, unless
  ``automountServiceAccountToken`` is false.
- A Job becomes the pods its controller would create: ``generateName: <job>-``, the controller
  labels and owner reference, ``restartPolicy`` from the template.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import json
import random
import uuid
from typing import Any

from .model import Job

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
VIRTUAL_NODE = "virtual-kubelet"

# What upstream's default vktest_config.yaml puts into every template.
TEST_SET_VALUES: dict[str, Any] = {
    "namespace": "interlink",
    "annotations": {"slurm-job.vk.io/flags": "--job-name=test-pod-cfg -t 2800",
                    "slurm-job.vk.io/image-root": "docker://"},
    "tolerations": [{"key": "virtual-node.interlink/no-schedule", "operator": "Exists",
                     "effect": "NoSchedule"}],
}
NAMESPACE: str = TEST_SET_VALUES["namespace"]

# Kubernetes' utilrand alphabet (no vowels, no confusable digits), used by generateName and by
# the service-account admission's volume names.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_NAME_ALPHABET) for _ in range(n))


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1)
def root_ca_pem() -> str:
    """A self-signed cluster CA certificate, PEM: many lines, as a real ``ca.crt``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_token(pod: dict[str, Any]) -> str:
    """A bound service-account token as the TokenRequest API returns it (JWT-shaped; nothing
    here verifies it, the workload only reads the file)."""
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    header = {"alg": "RS256", "kid": "conformance"}
    claims = {"aud": ["https://kubernetes.default.svc.cluster.local"],
              "iss": "https://kubernetes.default.svc.cluster.local",
              "sub": f"system:serviceaccount:{meta['namespace']}:{sa}",
              "kubernetes.io": {"namespace": meta["namespace"],
                                "pod": {"name": meta["name"], "uid": meta["uid"]},
                                "serviceaccount": {"name": sa, "uid": str(uuid.uuid4())}}}
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()),
                     _b64url(random.randbytes(64))])


# --- defaults the API server applies ----------------------------------------------------------

_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                   "failureThreshold": 3}


def _default_container(c: dict[str, Any]) -> None:
    for entry in c.get("env") or []:
        if entry.get("value") == "":
            del entry["value"]  # Go's omitempty: an empty value is not written at all
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        tagged = ":" in c["image"].rsplit("/", 1)[-1]
        c["imagePullPolicy"] = "IfNotPresent" if tagged and not c["image"].endswith(
            ":latest") else "Always"
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for key in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = c.get(key)
        if probe:
            for field, value in _PROBE_DEFAULTS.items():
                probe.setdefault(field, value)
            if "httpGet" in probe:
                probe["httpGet"].setdefault("scheme", "HTTP")


def _default_volume(v: dict[str, Any]) -> None:
    for kind in ("configMap", "secret", "projected", "downwardAPI"):
        if kind in v:
            v[kind].setdefault("defaultMode", 420)


def _service_account_volume(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    if spec.get("automountServiceAccountToken") is False:
        return
    name = f"kube-api-access-{random_suffix()}"
    spec.setdefault("volumes", []).append({"name": name, "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP,
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}})
    for c in spec.get("initContainers", []) + spec["containers"]:
        mounts = c.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == SA_MOUNT_PATH for m in mounts):
            mounts.append({"name": name, "readOnly": True, "mountPath": SA_MOUNT_PATH})


class Cluster:
    """ConfigMaps and Secrets as stored, and pods as admitted."""

    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}

    def _stored_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        out = dict(meta)
        out.setdefault("uid", str(uuid.uuid4()))
        out.setdefault("resourceVersion", str(random.randint(1000, 999999)))
        out.setdefault("creationTimestamp", now())
        return out

    def _ensure_namespace(self, namespace: str) -> None:
        key = (namespace, ROOT_CA_CONFIG_MAP)
        if key not in self.config_maps:
            self.config_maps[key] = {
                "metadata": self._stored_meta({"name": ROOT_CA_CONFIG_MAP,
                                               "namespace": namespace}),
                "data": {"ca.crt": root_ca_pem()}}

    def add_config_map(self, cm: dict[str, Any]) -> None:
        cm = copy.deepcopy(cm)
        cm["metadata"] = self._stored_meta(cm["metadata"])
        self._ensure_namespace(cm["metadata"]["namespace"])
        self.config_maps[(cm["metadata"]["namespace"], cm["metadata"]["name"])] = cm

    def add_secret(self, s: dict[str, Any]) -> None:
        s = copy.deepcopy(s)
        s["metadata"] = self._stored_meta(s["metadata"])
        data = dict(s.get("data") or {})
        for key, value in (s.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        s["data"] = data
        s.setdefault("type", "Opaque")
        self._ensure_namespace(s["metadata"]["namespace"])
        self.secrets[(s["metadata"]["namespace"], s["metadata"]["name"])] = s

    def config_map(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.config_maps[(namespace, name)]
        except KeyError:
            raise LookupError(f"configmap {namespace}/{name} does not exist") from None

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.secrets[(namespace, name)]
        except KeyError:
            raise LookupError(f"secret {namespace}/{name} does not exist") from None

    def admit(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The pod as the API server stores it once created and scheduled to the virtual node."""
        pod = copy.deepcopy(manifest)
        meta, spec = pod["metadata"], pod["spec"]
        self._ensure_namespace(meta["namespace"])
        if not meta.get("name"):
            meta["name"] = meta["generateName"] + random_suffix()
        meta.setdefault("annotations", {}).update(TEST_SET_VALUES["annotations"])
        pod["metadata"] = self._stored_meta(meta)
        spec.setdefault("nodeSelector", {"kubernetes.io/hostname": VIRTUAL_NODE})
        spec.setdefault("tolerations", []).extend(copy.deepcopy(TEST_SET_VALUES["tolerations"]))
        for key in ("not-ready", "unreachable"):
            spec["tolerations"].append({"key": f"node.kubernetes.io/{key}", "operator": "Exists",
                                        "effect": "NoExecute", "tolerationSeconds": 300})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("securityContext", {})
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec["serviceAccount"] = spec["serviceAccountName"]
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        for c in spec.get("initContainers", []) + spec["containers"]:
            _default_container(c)
        for v in spec.get("volumes") or []:
            _default_volume(v)
        _service_account_volume(pod)
        spec["nodeName"] = VIRTUAL_NODE
        pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}
        return pod

    def job_pod(self, job: Job, job_uid: str) -> dict[str, Any]:
        """One attempt of ``job``, as the Job controller creates it (then admitted)."""
        template = copy.deepcopy(job.template)
        meta = template.setdefault("metadata", {})
        labels = dict(meta.get("labels") or {})
        labels.update({"batch.kubernetes.io/controller-uid": job_uid,
                       "batch.kubernetes.io/job-name": job.name,
                       "controller-uid": job_uid, "job-name": job.name})
        meta.update({
            "generateName": f"{job.name}-", "labels": labels,
            "annotations": {**(meta.get("annotations") or {}),
                            "batch.kubernetes.io/job-tracking": ""},
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job.name,
                                 "uid": job_uid, "controller": True,
                                 "blockOwnerDeletion": True}]})
        meta.pop("name", None)
        return self.admit(template)


def _qos_class(spec: dict[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec["containers"]]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k) is not None
        and (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k))
        == (r.get("limits") or {}).get(k)
        for r in resources for k in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


__all__ = [
    "NAMESPACE",
    "SA_MOUNT_PATH",
    "TEST_SET_VALUES",
    "VIRTUAL_NODE",
    "Cluster",
    "random_suffix",
    "root_ca_pem",
    "service_account_token",
]
