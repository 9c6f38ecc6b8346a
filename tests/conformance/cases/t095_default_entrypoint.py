"""095 default entrypoint: containers without ``command`` run the image's ENTRYPOINT/CMD;
``args`` alone replace only the CMD; ``command`` replaces the ENTRYPOINT. Three pods: one with
three containers (no override, args only, no override on another image), one whose ``args``
run Python in place of the image's CMD, one running ``nginx -v``."""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, container, pod

TEMPLATE = "095-default-entrypoint.yaml"


def build(s: str) -> Case:
    defaults, python, nginx = (f"default-entrypoint-{s}", f"default-cmd-workload-{s}",
                               f"entrypoint-only-{s}")
    return Case(
        TEMPLATE, "image ENTRYPOINT/CMD versus command/args",
        pods=[
            pod(defaults, [
                container("busybox-default", "busybox:1.36"),  # CMD sh, no stdin: exits 0
                container("echo-with-args", "busybox:1.36",
                          args=["sh", "-c", "echo 'Args only test passed'; sleep 5"]),
                container("custom-app", "alpine:3.19"),
            ], namespace=NS, labels={"app": "default-entrypoint-test", "test-id": s}),
            pod(python, [container("python-version", "python:3.11-alpine", args=[
                "python3", "-c",
                "import sys; print('Python', sys.version); print('Default command test completed')"
            ])], namespace=NS, labels={"app": "default-cmd-test", "test-id": s}),
            pod(nginx, [container("nginx-version", "nginx:alpine", command=["nginx"],
                                  args=["-v"])],
                namespace=NS, labels={"app": "entrypoint-only-test", "test-id": s}),
        ],
        pod_checks=[PodCheck(defaults), PodCheck(python), PodCheck(nginx)],
        log_checks=[LogCheck(python, "Python 3.11", container="python-version"),
                    LogCheck(python, "Default command test completed", container="python-version"),
                    LogCheck(nginx, "nginx version", container="nginx-version"),
                    LogCheck(defaults, "Args only test passed", container="echo-with-args")],
        timeout_seconds=30)
