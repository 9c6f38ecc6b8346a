"""086 secretKeyRef env: regression test for interLink issue 438 (pods stuck Pending with
"secret not found" when an env var came from a Secret): one variable, named differently from
the Secret's key, read by a shell."""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, pod, secret, shell

TEMPLATE = "086-secretkeyref-env.yaml"

SCRIPT = """\
echo "MY_SECRET_VAR=${MY_SECRET_VAR}"
if [ "${MY_SECRET_VAR}" = "hello-from-secret" ]; then
  echo "secretKeyRef env test passed"
else
  echo "secretKeyRef env test failed: got '${MY_SECRET_VAR}'"
  exit 1
fi
"""


def build(s: str) -> Case:
    name, sec = f"secretkeyref-env-{s}", f"secretkeyref-test-{s}"
    return Case(
        TEMPLATE, "env from secretKeyRef (issue 438)",
        secrets=[secret(sec, NS, {"testfile": "hello-from-secret"})],
        pods=[pod(name, [shell("secretkeyref-container", "alpine:3", SCRIPT, env=[
            {"name": "MY_SECRET_VAR",
             "valueFrom": {"secretKeyRef": {"name": sec, "key": "testfile"}}}])],
                  namespace=NS, labels={"app": "secretkeyref-env-test", "test-id": s})],
        pod_checks=[PodCheck(name)],
        log_checks=[LogCheck(name, "secretKeyRef env test passed")],
        timeout_seconds=15)
