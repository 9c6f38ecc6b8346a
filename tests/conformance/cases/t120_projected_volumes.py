"""120 projected volumes: regression test for interlink-slurm-plugin issue 144 (newlines
stripped from projected volume files): a projected ConfigMap with multi-line text and a
PEM-shaped file, and the service account's ``ca.crt``, must keep every newline."""

from __future__ import annotations

import base64

from ..cluster import NAMESPACE as NS
from ..cluster import SA_MOUNT_PATH
from ..model import Case, LogCheck, PodCheck, config_map, container, mount, pod

TEMPLATE = "120-projected-volumes.yaml"


def _pem_like() -> str:
    body = base64.b64encode(bytes((7 * i + 3) % 256 for i in range(600))).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


PROGRAM = f"""\
with open("/projected/multiline.txt") as f:
    text = f.read()
lines = text.splitlines()
assert lines[:3] == ["line one", "line two", "line three"], repr(text)
print("projected ConfigMap multiline.txt: newlines preserved correctly")

with open("/projected/cert-like.pem") as f:
    pem = f.read().splitlines()
assert len(pem) > 2, pem
assert pem[0] == "-----BEGIN CERTIFICATE-----" and pem[-1] == "-----END CERTIFICATE-----", pem
print("projected ConfigMap cert-like.pem: PEM format preserved correctly")

with open("{SA_MOUNT_PATH}/ca.crt") as f:
    ca = f.read()
assert "-----BEGIN CERTIFICATE-----\\n" in ca, repr(ca[:200])
print(f"service account ca.crt: newlines preserved ({{len(ca.splitlines())}} lines)")
print("All projected volume newline tests passed")
"""


def build(s: str) -> Case:
    name, cm = f"projected-vol-{s}", f"projected-config-{s}"
    return Case(
        TEMPLATE, "newlines kept in projected ConfigMap files and the service account ca.crt",
        config_maps=[config_map(cm, NS, {"multiline.txt": "line one\nline two\nline three\n",
                                         "cert-like.pem": _pem_like()})],
        pods=[pod(name, [container("check-newlines", "python:alpine",
                                   command=["python", "-c"], args=[PROGRAM],
                                   volumeMounts=[mount("projected-config", "/projected")])],
                  namespace=NS,
                  volumes=[{"name": "projected-config",
                            "projected": {"sources": [{"configMap": {"name": cm}}]}}])],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, regex) for regex in (
            r"projected ConfigMap multiline\.txt: newlines preserved correctly",
            r"projected ConfigMap cert-like\.pem: PEM format preserved correctly",
            r"service account ca\.crt: newlines preserved",
            "All projected volume newline tests passed")],
        timeout_seconds=30)
