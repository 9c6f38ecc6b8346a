"""040 config volumes: a script from a ConfigMap volume and one from a Secret volume (both
through ``items``) run in two containers that also share two emptyDirs, mounted in an order
that differs from the pod's volume list.

Upstream's clean-up forgets the Secret (it deletes only the pod and the ConfigMap): a leak on a
real cluster, no effect on the result.
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, config_map, container, mount, pod, secret

TEMPLATE = "040-config-volumes.yaml"


def _script(greeting: str, file_name: str) -> str:
    return (f'print("{greeting}")\n'
            f'for directory in ("/shared-vol1", "/shared-vol2"):\n'
            f'    with open(directory + "/{file_name}", "w") as out:\n'
            f'        print("{greeting}", file=out)\n')


def build(s: str) -> Case:
    name = f"python-vol-{s}"
    shared = [mount("shared-vol1", "/shared-vol1"), mount("shared-vol2", "/shared-vol2")]
    return Case(
        TEMPLATE, "ConfigMap and Secret volumes with items, two shared emptyDirs",
        config_maps=[config_map(f"vol-config-{s}", NS, {
            "config-map-script.py": _script("hello configurable world", "config")})],
        secrets=[secret(f"secret-{s}", NS, {
            "secret-script.py": _script("hello secret world", "secret")})],
        pods=[pod(name, [
            container("config", "python:alpine",
                      command=["python", "/config-map/config-map-script.py"],
                      volumeMounts=[shared[0], mount("config-map", "/config-map"), shared[1]]),
            container("secret", "python:alpine", command=["python", "/secrets/secret-script.py"],
                      volumeMounts=[shared[0], mount("secret", "/secrets"), shared[1]]),
        ], namespace=NS, volumes=[
            {"name": "config-map", "configMap": {
                "name": f"vol-config-{s}",
                "items": [{"key": "config-map-script.py", "path": "config-map-script.py"}]}},
            {"name": "secret", "secret": {
                "secretName": f"secret-{s}",
                "items": [{"key": "secret-script.py", "path": "secret-script.py"}]}},
            {"name": "shared-vol1", "emptyDir": {"sizeLimit": "50Mi"}},
            {"name": "shared-vol2", "emptyDir": {"sizeLimit": "50Mi"}},
        ])],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, "hello configurable world", container="config"),
                    LogCheck(name, "hello secret world", container="secret")],
        timeout_seconds=10)
