"""100 failing containers: five pods that must all end Failed, with their error output in the
log: an exit code of 42, a command that does not exist, an uncaught Python exception, one
failing container among three, and a Python process over its 50Mi memory limit.

Our version: upstream's memory-limit pod prints "Attempting to allocate memory beyond limit"
and then allocates 200 MB with ``python3 -c``; the log check on that line can never pass where
the limit is enforced, because Python block-buffers stdout when it is not a terminal and the
OOM killer's SIGKILL discards the buffer (on a cluster as here; without the limit the pod
succeeds and the phase check fails instead). We run that one Python unbuffered (``-u``).
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, LogCheck, PodCheck, container, pod, python, shell

TEMPLATE = "100-failing-containers.yaml"

EXIT_42 = """\
echo "Starting; this container exits with code 42"
echo "ERROR: Simulated application failure"
echo "Exit code: 42"
exit 42
"""

EXCEPTION = """\
print("Starting Python application...")
print("Doing some work first")
raise RuntimeError("Simulated application error: database connection failed")
"""

MEMORY_HOG = """\
python3 -u -c '
print("Attempting to allocate memory beyond limit...")
try:
    block = bytearray(200 * 1024 * 1024)
    print("Allocated 200MB, which the 50Mi limit should have prevented")
except MemoryError as exc:
    print("MemoryError:", exc)
    raise SystemExit(137)
'
"""


def _labels(kind: str, s: str) -> dict[str, str]:
    return {"app": "failing-container-test", "test-type": kind, "test-id": s}


def build(s: str) -> Case:
    exit_code, missing, runtime, partial, oom = (
        f"exit-code-failure-{s}", f"command-not-found-{s}", f"runtime-error-{s}",
        f"multi-container-partial-fail-{s}", f"oom-simulation-{s}")
    return Case(
        TEMPLATE, "containers that fail in five different ways",
        pods=[
            pod(exit_code, [shell("exit-failure", "busybox:1.36", EXIT_42)], namespace=NS,
                labels=_labels("exit-code", s)),
            pod(missing, [container("missing-command", "busybox:1.36",
                                    command=["nonexistent-command"], args=["--flag", "value"])],
                namespace=NS, labels=_labels("command-not-found", s)),
            pod(runtime, [python("python-exception", "python:3.11-alpine", EXCEPTION)],
                namespace=NS, labels=_labels("runtime-error", s)),
            pod(partial, [
                shell("success-container", "busybox:1.36",
                      'echo "Container 1: starting"; sleep 2; '
                      'echo "Container 1: Completed successfully"'),
                shell("failure-container", "busybox:1.36",
                      'echo "Container 2: starting"; sleep 1; '
                      'echo "Container 2: ERROR - Simulating failure"; exit 1'),
                shell("another-success", "alpine:3.19",
                      'echo "Container 3: starting"; sleep 3; '
                      'echo "Container 3: Completed successfully"'),
            ], namespace=NS, labels=_labels("partial-failure", s)),
            pod(oom, [shell("memory-hog", "python:3.11-alpine", MEMORY_HOG, resources={
                "limits": {"memory": "50Mi", "cpu": "100m"},
                "requests": {"memory": "20Mi", "cpu": "50m"}})],
                namespace=NS, labels=_labels("resource-limit", s)),
        ],
        pod_checks=[PodCheck(p, "Failed") for p in (exit_code, missing, runtime, partial, oom)],
        log_checks=[
            LogCheck(exit_code, "Simulated application failure", container="exit-failure"),
            LogCheck(exit_code, "Exit code: 42", container="exit-failure"),
            LogCheck(runtime, "RuntimeError.*database connection failed",
                     container="python-exception"),
            LogCheck(partial, "Container 1: Completed successfully",
                     container="success-container"),
            LogCheck(partial, "Container 2: ERROR - Simulating failure",
                     container="failure-container"),
            LogCheck(partial, "Container 3: Completed successfully", container="another-success"),
            LogCheck(oom, "Attempting to allocate memory beyond limit", container="memory-hog"),
        ],
        timeout_seconds=45)
