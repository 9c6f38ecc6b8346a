"""115 lifecycle hooks: a postStart exec hook writes a marker file that the container's own
process waits for and prints; a preStop exec hook is defined and runs when the pod is deleted
(at clean-up, after the checks, as upstream). The pod must be Running with the marker's
content in its log.

Needs postStart (and, for the clean-up, preStop) hooks in the sidecar.
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, pod, shell

TEMPLATE = "115-lifecycle-hooks.yaml"

MAIN = """\
stamp() { date '+%Y-%m-%d %H:%M:%S'; }
echo "[$(stamp)] Container starting..."
echo "[$(stamp)] waiting for the postStart marker"
for attempt in $(seq 1 10); do
  [ -f /tmp/poststart-marker ] && break
  sleep 1
done
if [ ! -f /tmp/poststart-marker ]; then
  echo "[$(stamp)] ERROR: no postStart marker after 10 s"
  exit 1
fi
echo "[$(stamp)] postStart hook marker found!"
echo "[$(stamp)] marker says: $(cat /tmp/poststart-marker)"
echo "[$(stamp)] Main container process running..."
echo "[$(stamp)] Container will run until terminated (deletion runs preStop)"
while true; do sleep 30; done
"""

POST_START = """\
echo "[$(date '+%H:%M:%S')] postStart hook executed!" | tee /tmp/poststart-marker
echo "[$(date '+%H:%M:%S')] postStart marker written" >> /tmp/poststart-marker
"""

PRE_STOP = """\
echo "[$(date '+%H:%M:%S')] preStop hook executed!" >> /tmp/prestop-marker
sleep 1
echo "[$(date '+%H:%M:%S')] preStop hook completed" >> /tmp/prestop-marker
"""


def build(s: str) -> Case:
    name = f"lifecycle-hooks-test-{s}"
    return Case(
        TEMPLATE, "postStart and preStop exec hooks",
        pods=[pod(name, [shell(
            "lifecycle-test", "python:3.11-alpine", MAIN,
            lifecycle={"postStart": {"exec": {"command": ["/bin/sh", "-c", POST_START]}},
                       "preStop": {"exec": {"command": ["/bin/sh", "-c", PRE_STOP]}}},
            resources={"limits": {"memory": "128Mi", "cpu": "200m"},
                       "requests": {"memory": "64Mi", "cpu": "100m"}})], namespace=NS)],
        pod_checks=[PodCheck(name, "Running")],
        log_checks=[LogCheck(name, regex, container="lifecycle-test") for regex in (
            r"Container starting\.\.\.", "postStart hook executed!",
            "postStart hook marker found!", r"Main container process running\.\.\.",
            "Container will run until terminated")],
        timeout_seconds=30)
