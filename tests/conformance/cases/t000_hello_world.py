"""000 hello world: one container echoes a greeting; the pod succeeds and its log has it.

The template's image, ghcr.io/grycap/cowsay, is only used for its ``/bin/bash``; the local
Debian image stands in (see ``images.py``).
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, container, pod

TEMPLATE = "000-hello-world.yaml"


def build(s: str) -> Case:
    name = f"hello-world-{s}"
    return Case(
        TEMPLATE, "a single echo through /bin/bash",
        pods=[pod(name, [container("hello-world", "ghcr.io/grycap/cowsay",
                                   command=["/bin/bash", "-c"], args=["echo hello world"])],
                  namespace=NS)],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, "hello world", container="hello-world")],
        timeout_seconds=10)
