"""110 failed jobs: five batch/v1 Jobs whose pods fail (exit code, Python exception, one failing
container of two, failures retried under ``backoffLimit: 2``, a failing init container); every
pod must end Failed with its error in the log.

Our version: upstream's checks name each pod by its Job's ``generateName`` prefix
(``job-exit-code-fail-<uuid>-``), but its checker reads exactly one pod of exactly that name,
which never exists (the Job controller appends five random characters), so the template cannot
pass on any cluster (its clean-up has the same problem). Our checks name the Job: the runner,
playing the Job controller, applies a check to every pod it created for that Job, and a phase
check holds once the Job is finished (for a failing Job: ``backoffLimit + 1`` failed attempts,
so the retries the template's comment asks for are counted too).
"""

from __future__ import annotations

from ..cluster import NAMESPACE as NS
from ..model import Case, Job, LogCheck, PodCheck, pod, python, shell

TEMPLATE = "110-failed-jobs.yaml"

EXIT_FAIL = """\
echo "Job started at $(date)"
echo "This job fails on purpose"
sleep 2
echo "ERROR: Application failed with exit code 1"
exit 1
"""

EXCEPTION = """\
import time
print("Job execution started")
time.sleep(1)
print("Raising now")
raise Exception("Simulated job failure: database connection failed")
"""

RETRY = """\
echo "Attempt started at $(date)"
echo "Every attempt of this job fails"
sleep 1
exit 1
"""


def _job(name: str, kind: str, backoff: int, containers: list, init=None) -> Job:
    labels = {"app": "failed-job-test", "test-type": kind}
    template = pod("", containers, namespace=NS, init=init, labels=labels)
    del template["metadata"]["name"]  # the controller names each attempt <job>-<random>
    return Job(name, template, backoff_limit=backoff)


def build(s: str) -> Case:
    exit_fail, exception, multi, retries, init_fail = (
        f"job-exit-code-fail-{s}", f"job-python-exception-{s}", f"job-multi-container-fail-{s}",
        f"job-with-retries-{s}", f"job-init-container-fail-{s}")
    jobs = [
        _job(exit_fail, "exit-code", 0, [shell("exit-failure", "busybox:1.36", EXIT_FAIL)]),
        _job(exception, "exception", 0,
             [python("python-crash", "python:3.11-alpine", EXCEPTION)]),
        _job(multi, "multi-container", 0, [
            shell("success-sidecar", "busybox:1.36",
                  'echo "Sidecar: Starting"; sleep 3; echo "Sidecar: Completed successfully"'),
            shell("main-app", "busybox:1.36",
                  'echo "Main: Starting"; sleep 1; echo "Main: Encountered critical error"; '
                  'exit 1')]),
        _job(retries, "with-retries", 2, [shell("retry-failure", "busybox:1.36", RETRY)]),
        _job(init_fail, "init-failure", 0,
             [shell("main-container", "busybox:1.36",
                    'echo "Main: must not run when the init container fails"; exit 0')],
             init=[shell("failing-init", "busybox:1.36",
                         'echo "Init: Starting initialization"; sleep 1; '
                         'echo "Init: ERROR - Initialization failed"; exit 1')]),
    ]
    return Case(
        TEMPLATE, "failing Jobs, with retries and a failing init container",
        jobs=jobs,
        pod_checks=[PodCheck(j.name, "Failed") for j in jobs],
        log_checks=[
            LogCheck(exit_fail, "ERROR: Application failed with exit code 1",
                     container="exit-failure"),
            LogCheck(exception, "Exception.*database connection failed",
                     container="python-crash"),
            LogCheck(multi, "Sidecar: Completed successfully", container="success-sidecar"),
            LogCheck(multi, "Main: Encountered critical error", container="main-app"),
            LogCheck(retries, "Attempt started", container="retry-failure"),
            LogCheck(init_fail, "Init: ERROR - Initialization failed", container="failing-init"),
        ],
        timeout_seconds=90)
