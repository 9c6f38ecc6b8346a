"""050 limits: a container limited to 100Mi of memory tries to use about 2 GiB; the test passes
when the pod is killed (Failed), not when the work completes.

Our version: upstream pip-installs numpy at run time and allocates with
``numpy.random.uniform(0, 1, 1 << 28)`` (2 GiB of float64). Without network egress pip fails,
the script then dies with ImportError and the pod is Failed for the wrong reason, so upstream's
test passes on an offline node without ever testing the limit. Ours allocates the same 2 GiB in
pure Python (16 MiB blocks, each written to, so the pages are really used) and, beyond
upstream, checks that the container was OOM-killed (reason OOMKilled, exit code 137), so a pod
that fails for any other reason does not count.
"""

from __future__ import annotations

from typing import Any

from kube import state_of

from ..cluster import NAMESPACE as NS
from ..model import Case, PodCheck, pod, shell

TEMPLATE = "050-limits.yaml"

SCRIPT = """\
cat > /tmp/hog.py <<'PY'
import time
blocks = []
for _ in range((2 << 30) // (16 << 20)):   # 2 GiB in 16 MiB blocks
    blocks.append(bytearray(b"x" * (16 << 20)))
print(sum(len(b) for b in blocks))
time.sleep(10)
PY
python3 /tmp/hog.py
"""


def build(s: str) -> Case:
    name = f"limits-{s}"

    def oom_killed(statuses: dict[str, dict[str, Any]]) -> None:
        term = state_of(statuses[name], "allocate-big")["state"].get("terminated") or {}
        assert term.get("reason") == "OOMKilled" and term.get("exitCode") == 137, (
            f"expected the memory limit to kill allocate-big (OOMKilled, 137), got {term}")

    return Case(
        TEMPLATE, "memory limit enforced (OOM kill)",
        pods=[pod(name, [shell("allocate-big", "python:alpine", SCRIPT,
                               resources={"limits": {"memory": "100Mi"}})], namespace=NS)],
        pod_checks=[PodCheck(name, "Failed")],
        timeout_seconds=100, extra=oom_killed)
