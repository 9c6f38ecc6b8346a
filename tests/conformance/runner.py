"""Run one conformance case through a virtual kubelet and judge it as upstream's suite does.

Upstream's validation loop: evaluate the pod checks, then the log checks, in one pass; a check
that is not met yet makes the pass start over after a pause; a pod that is Failed when it
should not be ends the test at once, as does a log with more matches than ``CountAtMost``
allows; the whole thing gives up after ``timeout_seconds`` times a multiplier. Ours adds one
early end: a pod with ``restartPolicy: Never`` that reached Succeeded or Failed cannot change
phase any more, so a wrong final phase fails at once instead of at the timeout.

Pods are created at once and run side by side; the runner also plays the Job controller
(a new attempt right after each failed one, up to ``backoffLimit + 1`` attempts; the real
controller waits 10 s, 20 s, ... between attempts, which changes nothing that is checked).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kube import vk_phase

from .cluster import Cluster
from .images import localize
from .model import Case, Job, LogCheck, PodCheck
from .vk import Reply, VirtualKubelet

TIMEOUT_MULTIPLIER = float(os.environ.get("CONFORMANCE_TIMEOUT_MULTIPLIER", "1.5"))
POLL_SECONDS = 0.5
# Clean-up deletes the pods like ``kubectl delete --grace-period=5``: preStop hooks still run,
# and a shell that ignores SIGTERM as PID 1 does not hold the suite for 30 s.
CLEANUP_GRACE_SECONDS = 5
TERMINAL = ("Succeeded", "Failed")


class NotYet(Exception):
    """A check that time may still satisfy."""


class CaseFailed(AssertionError):
    """A check that can no longer be satisfied, or the timeout."""


@dataclass
class Tracked:
    """A pod as the VK knows it."""

    pod: dict[str, Any]
    job: str | None = None
    create: Reply | None = None
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def phase(self) -> str:
        return self.pod["status"]["phase"]

    def set_phase(self, phase: str, reason: str = "", message: str = "") -> None:
        self.pod["status"]["phase"] = phase
        if reason:
            self.pod["status"].update(reason=reason, message=message)


@dataclass
class JobState:
    job: Job
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: list[Tracked] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(1 for t in self.attempts if t.phase == "Failed")

    @property
    def finished(self) -> bool:
        if not self.attempts:
            return False
        last = self.attempts[-1].phase
        return last == "Succeeded" or (last == "Failed"
                                       and self.failures > self.job.backoff_limit)


class Run:
    def __init__(self, case: Case, vk: VirtualKubelet, cluster: Cluster,
                 diagnostics: Callable[[], str] | None = None) -> None:
        self.case = case
        self.vk = vk
        self.cluster = cluster
        self.diagnostics = diagnostics
        self.pods: list[Tracked] = []
        self.jobs: dict[str, JobState] = {}
        self.last_logs: dict[tuple[str, str], str] = {}

    # --- creating --------------------------------------------------------------------------

    def _admit(self, manifest: dict[str, Any], job: JobState | None = None) -> Tracked:
        pod = self.cluster.job_pod(job.job, job.uid) if job else self.cluster.admit(manifest)
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            localize(c)
        return Tracked(pod, job=job.job.name if job else None)

    def _create(self, tracked: Tracked) -> None:
        tracked.create = self.vk.create(tracked.pod)
        if tracked.create.status != 200:
            # What the current VK does with a refused /create.
            tracked.set_phase("Failed", "ProviderFailed", tracked.create.text)

    def start(self) -> None:
        for cm in self.case.config_maps:
            self.cluster.add_config_map(cm)
        for s in self.case.secrets:
            self.cluster.add_secret(s)
        fresh = [self._admit(p) for p in self.case.pods]
        for job in self.case.jobs:
            state = self.jobs[job.name] = JobState(job)
            attempt = self._admit(job.template, state)
            state.attempts.append(attempt)
            fresh.append(attempt)
        self._create_all(fresh)

    def _create_all(self, fresh: list[Tracked]) -> None:
        self.pods.extend(fresh)
        with ThreadPoolExecutor(max_workers=max(1, len(fresh))) as pool:
            list(pool.map(self._create, fresh))

    # --- observing -------------------------------------------------------------------------

    def poll(self) -> None:
        if self.vk.profile == "current":  # it stops asking about finished pods
            asked = [t for t in self.pods if t.phase not in TERMINAL]
        else:  # it asks about every pod it knows, finished or not
            asked = [t for t in self.pods if t.create and t.create.status == 200]
        statuses = self.vk.status([t.pod for t in asked]) if asked else {}
        for t in asked:
            status = statuses.get(t.pod["metadata"]["uid"])
            if status is None:
                continue
            t.status = status
            if t.phase not in TERMINAL:
                t.set_phase(vk_phase(status))
        retries = []
        for state in self.jobs.values():
            if state.attempts[-1].phase == "Failed" and not state.finished:
                attempt = self._admit(state.job.template, state)
                state.attempts.append(attempt)
                retries.append(attempt)
        if retries:
            self._create_all(retries)

    def targets(self, name: str) -> list[Tracked]:
        if name in self.jobs:
            return self.jobs[name].attempts
        found = [t for t in self.pods if t.name == name and t.job is None]
        if not found:
            raise CaseFailed(f"case definition: no pod or job named {name!r}")
        return found

    # --- judging ---------------------------------------------------------------------------

    def _check_pod(self, check: PodCheck) -> None:
        if check.target in self.jobs:
            state = self.jobs[check.target]
            if not state.finished:
                raise NotYet(f"job {check.target} has not finished")
            last = state.attempts[-1]
            if last.phase != check.phase:
                raise CaseFailed(f"job {check.target} finished with its last pod {last.name} "
                                 f"{last.phase}, expected {check.phase}")
            return
        for t in self.targets(check.target):
            if t.phase == check.phase:
                continue
            if t.phase == "Failed":
                raise CaseFailed(f"pod {t.name} failed (expected {check.phase})")
            if t.phase in TERMINAL and t.pod["spec"].get("restartPolicy") == "Never":
                raise CaseFailed(f"pod {t.name} ended {t.phase} (expected {check.phase})")
            raise NotYet(f"pod {t.name} is {t.phase}, expected {check.phase}")

    def _container_of(self, t: Tracked, check: LogCheck) -> str:
        if check.container:
            return check.container
        containers = t.pod["spec"]["containers"]
        if len(containers) != 1:
            raise CaseFailed(f"case definition: pod {t.name} has {len(containers)} containers; "
                             "a log check must name one")
        return containers[0]["name"]

    def _check_logs(self, check: LogCheck) -> None:
        for t in self.targets(check.target):
            container = self._container_of(t, check)
            reply = self.vk.logs(t.pod, container)
            log = reply.text if reply.status == 200 else ""
            self.last_logs[(t.name, container)] = (
                log if reply.status == 200 else f"<HTTP {reply.status}: {reply.text}>")
            matches = re.findall(check.regex, log)
            where = f"log of {t.name}/{container}"
            op, value = check.operator, check.value
            if op == "Exists" and not matches:
                raise NotYet(f"{where}: no match for {check.regex!r}")
            if op in ("CountAtLeast", "CountExactly") and len(matches) < int(value or 0):
                raise NotYet(f"{where}: {len(matches)} matches for {check.regex!r}, "
                             f"want {value}")
            if op in ("CountAtMost", "CountExactly") and len(matches) > int(value or 0):
                raise CaseFailed(f"{where}: {len(matches)} matches for {check.regex!r}, "
                                 f"at most {value} allowed")
            if op == "Is" and str(value) not in matches:
                raise NotYet(f"{where}: {check.regex!r} gave {matches}, want {value!r}")

    def judge(self) -> None:
        """One validation pass: returns when every check holds, raises NotYet or CaseFailed."""
        for check in self.case.pod_checks:
            self._check_pod(check)
        for log_check in self.case.log_checks:
            self._check_logs(log_check)

    def run(self) -> float:
        """Start, then judge until success; returns the seconds it took."""
        started = time.monotonic()
        timeout = self.case.timeout_seconds * TIMEOUT_MULTIPLIER
        self.start()
        waiting = ""
        while True:
            self.poll()
            try:
                self.judge()
                break
            except NotYet as exc:
                waiting = str(exc)
            except CaseFailed as exc:
                raise CaseFailed(f"{exc}\n{self.report()}") from None
            if time.monotonic() - started > timeout:
                raise CaseFailed(f"timed out after {timeout:.0f}s; still waiting: {waiting}\n"
                                 f"{self.report()}")
            time.sleep(POLL_SECONDS)
        if self.case.extra is not None:
            try:
                self.case.extra({t.name: t.status or {} for t in self.pods})
            except AssertionError as exc:
                raise CaseFailed(f"{exc}\n{self.report()}") from None
        return time.monotonic() - started

    # --- clean-up and diagnostics ----------------------------------------------------------

    def cleanup(self, executor: Executor) -> list[Future]:
        """Delete every pod created (in the background, as the cluster would)."""
        return [executor.submit(self.vk.delete, t.pod, CLEANUP_GRACE_SECONDS)
                for t in self.pods if t.create is not None]

    def report(self) -> str:
        lines = [f"--- {self.case.template} via the {self.vk.profile} VK"]
        for t in self.pods:
            lines.append(f"pod {t.name} (uid {t.pod['metadata']['uid']}): {t.phase}"
                         + (f" [job {t.job}]" if t.job else ""))
            if t.create is not None and t.create.status != 200:
                lines.append(f"  /create -> {t.create.status}: {t.create.text[:2000]}")
            if t.status is not None:
                lines.append("  status: " + json.dumps(
                    {k: t.status.get(k) for k in ("initContainers", "containers")})[:4000])
            for c in t.pod["spec"].get("initContainers", []) + t.pod["spec"]["containers"]:
                key = (t.name, c["name"])
                if key not in self.last_logs and t.create is not None and \
                        t.create.status == 200:
                    try:
                        reply = self.vk.logs(t.pod, c["name"])
                        self.last_logs[key] = reply.text if reply.status == 200 else \
                            f"<HTTP {reply.status}: {reply.text}>"
                    except OSError as exc:
                        self.last_logs[key] = f"<{exc}>"
                lines.append(f"  log {c['name']}: {self.last_logs.get(key, '')[-1500:]!r}")
        if self.diagnostics is not None:
            lines.append("sidecar log tail:\n" + self.diagnostics()[-3000:])
        return "\n".join(lines)
