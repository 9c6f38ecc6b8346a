"""020 python env: a plain ``value`` env var reaches a Python process.

Upstream also creates a ConfigMap and a Secret for ``configMapKeyRef``/``secretKeyRef``
variables but leaves those variables and their checks commented out (not supported by
interLink 0.2.3 at the time); we create the same objects and check the same thing. The
references themselves are covered by 080, 085 and 086.
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, config_map, pod, python, secret

TEMPLATE = "020-python-env.yaml"

PROGRAM = """\
import os
for variable in ("SIMPLE",):
    print(variable, os.environ.get(variable))
"""


def build(s: str) -> Case:
    name = f"python-env-{s}"
    return Case(
        TEMPLATE, "env var by value",
        config_maps=[config_map(f"env-config-{s}", NS,
                                {"fromConfigMap": "hello configurable world"})],
        secrets=[secret(f"env-secret-{s}", NS, {"fromSecret": "hello secret world"})],
        pods=[pod(name, [python("python", "python:alpine", PROGRAM,
                                env=[{"name": "SIMPLE", "value": "simple"}])],
                  namespace=NS)],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, "SIMPLE simple")],
        timeout_seconds=10)
