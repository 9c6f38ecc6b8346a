"""One worker per pod, as the kubelet's: it owns the pod's record, lock and task, brings the
pod up (``sync``: images, sandbox, init containers, main containers, their supervisors) and
takes it down (``terminate``: preStop hooks, the grace period, removal; ``evict``).

Bring-up is idempotent: it also finishes a pod found half-created after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interlink_common.wire import ContainerStateTerminated, PodStatus, RetrievedPodData

from . import labels as L
from .containers import Container, Summary
from .docker_config import infra_create_args, infra_host_config
from .engine import EngineError
from .engine_api import ContainerEngine
from .gpu_grants import GPUGrants
from .images import ImagePuller
from .lifecycle import Supervisor, Supervisors
from .plan import ContainerPlan, PodPlan
from .pod_store import PodStore
from .policy import SidecarPolicy
from .probes import run_handler
from .runtime import ContainerRuntime
from .status import Waiting, pod_status, terminated_from_docker
from .termination import TerminationMessages
from .threads import blocking
from .tracker import Tracker

log = logging.getLogger("interlink.sidecar.pods")


@dataclass
class PodRecord:
    uid: str
    namespace: str
    name: str
    plan: PodPlan | None  # None when the create request was lost: report, cannot finish
    pod: dict[str, Any]
    waiting: dict[str, Waiting] = field(default_factory=dict)
    init_failed: ContainerStateTerminated | None = None
    init_failed_name: str = ""
    pod_ip: str = ""
    container_ids: dict[str, str] = field(default_factory=dict)  # created in this run, by name
    gpu_granted: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    evicted: str = ""  # the eviction message (docker_sidecar/eviction.py), once evicted

    @property
    def job_id(self) -> str:
        return self.plan.job_id if self.plan else L.infra_name(self.namespace, self.name, self.uid)

    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class PodServices:
    """What every pod worker shares: the engine and its view, the node's policy, the pods'
    directories, GPUs, images, termination messages and supervisors."""

    engine: ContainerEngine
    tracker: Tracker
    policy: SidecarPolicy
    store: PodStore
    grants: GPUGrants
    runtime: ContainerRuntime
    images: ImagePuller
    messages: TerminationMessages
    supervisors: Supervisors
    plan: Callable[[RetrievedPodData, str], PodPlan]  # (request, pod IP) -> plan


class PodWorker:
    def __init__(self, record: PodRecord, lock: asyncio.Lock, services: PodServices) -> None:
        self.record = record
        self.lock = lock  # shared with create/delete of the same UID, and kept after it
        self.s = services
        self._revive: asyncio.Task[None] | None = None  # the tunnel companion's restart

    @property
    def uid(self) -> str:
        return self.record.uid

    def containers(self) -> list[Container]:
        return self.s.tracker.containers_of(self.uid)

    def start(self, data: RetrievedPodData) -> None:
        """Bring the pod up in the background."""
        self.record.task = asyncio.create_task(self.sync(data))

    async def stop_sync(self) -> None:
        """Cancel the bring-up and wait for it (it finishes the Docker call it is in)."""
        for task in (self.record.task, self._revive):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def tunnel_stopped(self) -> None:
        """The tunnel companion has stopped for good (a ``docker stop`` or ``kill``, after which
        Docker's restart policy does nothing): start it again after the initial back-off,
        unless it runs again by then or the pod is going."""
        if self.record.evicted or (self._revive is not None and not self._revive.done()):
            return

        async def revive() -> None:
            await asyncio.sleep(self.s.policy.BackoffInitialSeconds)
            if not self.record.evicted:
                await self._ensure_tunnel()

        self._revive = asyncio.create_task(revive())

    # --- bring-up ---------------------------------------------------------------------------

    async def sync(self, data: RetrievedPodData) -> None:
        rec, s = self.record, self.s
        assert rec.plan is not None
        try:
            await s.grants.wait(rec)
            await s.images.ensure(rec)
            # A pod with no init containers whose spec does not use its own IP can have its
            # containers created while the sandbox starts.
            early = not rec.plan.init and not s.runtime.mains_exist(rec.uid) and \
                not rec.plan.volumes.tmpfs and "status.podIP" not in json.dumps(rec.pod)
            infra = await self._ensure_infra(early=early)
            rec.pod_ip = infra.ip
            # Re-plan now that the pod IP is known (status.podIP in env and downward API).
            rec.plan = s.plan(data, rec.pod_ip)
            await self._ensure_tunnel()
            for volume in rec.plan.volumes.tmpfs:
                if volume.name not in await blocking(s.engine.list_volumes, rec.uid):
                    await blocking(s.engine.create_tmpfs_volume, volume.name,
                                   volume.size_bytes, L.pod_labels(
                                       s.policy.Instance, rec.uid, rec.namespace, rec.name))
            if not s.runtime.mains_exist(rec.uid):
                for c in rec.plan.init:
                    if not await self._run_init(c):
                        return
            await asyncio.gather(*(self._ensure_main(c) for c in rec.plan.main))
            for c in rec.plan.main:
                s.supervisors.start(Supervisor(
                    host=s.runtime, uid=rec.uid, container=c.spec, pod_ip=rec.pod_ip,
                    restart_policy=rec.plan.restart_policy, grace=rec.plan.grace_period,
                    backoff_initial=s.policy.BackoffInitialSeconds,
                    backoff_max=s.policy.BackoffMaxSeconds))
            log.info("pod %s is up", rec.ref())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # report, never leave the pod waiting without a reason
            log.exception("bringing up pod %s failed", rec.ref())
            for c in rec.plan.containers:
                rec.waiting.setdefault(c.name, Waiting("CreateContainerError", str(exc)))

    async def _ensure_infra(self, *, early: bool = False) -> Container:
        """Create and start the pod's sandbox; with ``early``, create the main containers
        while it starts."""
        rec, s = self.record, self.s
        assert rec.plan is not None
        infra = rec.plan.infra
        attempt = 0
        while True:
            info = s.runtime.infra(rec.uid)
            try:
                if info is None:
                    args = infra_create_args(infra)
                    # The pod's GPUs, recorded where a restarted sidecar finds them.
                    gpus = s.grants.label(rec)
                    if gpus:
                        args["labels"] = {**args["labels"], **gpus}
                    await blocking(s.engine.create, args,
                                   infra_host_config(infra, s.runtime.floors))
                if info is None or not info.state.running and not s.runtime.mains_exist(rec.uid):
                    starting = blocking(s.engine.start, infra.docker_name)
                    if early:
                        started, *_ = await asyncio.gather(
                            starting, *(s.runtime.create(rec, c) for c in rec.plan.main),
                            return_exceptions=True)
                        if isinstance(started, BaseException):
                            raise started
                    else:
                        await starting
                info = await blocking(s.tracker.refresh, infra.docker_name)
                assert info is not None
                return info
            except EngineError as exc:
                message = f"cannot start the pod's network sandbox: {exc}"
                for c in rec.plan.containers:
                    rec.waiting[c.name] = Waiting("CreateContainerError", message)
                log.warning("pod %s: %s", rec.ref(), message)
                for cid in [*rec.container_ids.values(), infra.docker_name]:
                    await blocking(s.engine.remove, cid)
                rec.container_ids.clear()
                # Only containers made while the sandbox started had pins: all gone now.
                await blocking(s.store.unpin_staging, rec.uid, "")
                await s.runtime.backoff(attempt)
                attempt += 1

    async def _ensure_tunnel(self) -> None:
        """Create and start the tunnel companion, or start it again if it is found stopped
        (Docker's restart policy brings it back after a crash, not after a stop)."""
        rec, s = self.record, self.s
        assert rec.plan is not None
        c = rec.plan.tunnel
        if c is None:
            return
        existing = s.runtime.containers(rec.uid, L.ROLE_TUNNEL, c.name)
        if not existing:
            await s.runtime.create_and_start(rec, c)
            return
        if not existing[-1].state.running:
            with contextlib.suppress(EngineError):  # e.g. Docker is restarting it already
                await blocking(s.engine.start, existing[-1].id)
            await blocking(s.tracker.refresh, existing[-1].id)

    async def _run_init(self, c: ContainerPlan) -> bool:
        """Run one init container to completion; False when the pod has failed."""
        rec, s = self.record, self.s
        assert rec.plan is not None
        existing = s.runtime.containers(rec.uid, L.ROLE_INIT, c.name)
        attempt = existing[-1].attempt if existing else 0
        info: Container | None = existing[-1] if existing else None
        while True:
            if info is None:
                cid = await s.runtime.create_and_start(rec, c, attempt=attempt, restart=False)
                if cid is None:  # could not even be created
                    await s.runtime.backoff(attempt)
                    continue
            else:
                cid = info.id
            info = await s.tracker.wait_exit(cid)
            code = info.state.exit_code if info is not None else None
            code = -1 if code is None else code
            if info is not None and code == 0:
                return True
            if rec.plan.restart_policy == "Never":
                rec.init_failed = terminated_from_docker(info) if info else \
                    ContainerStateTerminated(exitCode=1, reason="Error",
                                             message="init container disappeared")
                rec.init_failed_name = c.name
                log.info("pod %s: init container %s failed (exit %s); restartPolicy Never",
                         rec.ref(), c.name, code)
                s.grants.release(rec.uid)
                return False
            await s.runtime.backoff(attempt)
            # Keep the previous attempt for Previous logs; drop older ones.
            for old in s.runtime.containers(rec.uid, L.ROLE_INIT, c.name)[:-1]:
                await s.runtime.remove_attempt(rec, old)
            attempt += 1
            info = None

    async def _ensure_main(self, c: ContainerPlan) -> None:
        rec, s = self.record, self.s
        if c.name in rec.container_ids:  # created early, while the sandbox started
            await s.runtime.start(rec, c, rec.container_ids[c.name])
            return
        existing = s.runtime.containers(rec.uid, L.ROLE_MAIN, c.name)
        if not existing:
            await s.runtime.create_and_start(rec, c)
            return
        if existing[-1].state.created_only:
            # Created but never started: the sidecar stopped in between.
            with contextlib.suppress(EngineError):
                await blocking(s.engine.start, existing[-1].id)
            await blocking(s.tracker.refresh, existing[-1].id)

    # --- state ------------------------------------------------------------------------------

    def finished(self) -> bool:
        """True when the pod can never run again: its GPUs can go (restartPolicy Never: every
        container has stopped; OnFailure: every one exited 0; an init container failed)."""
        record = self.record
        if record.evicted:
            return True
        if record.plan is None or record.init_failed is not None:
            return record.init_failed is not None
        if record.plan.restart_policy == "Always":
            return False
        for c in record.plan.main:
            found = self.s.runtime.containers(record.uid, L.ROLE_MAIN, c.name)
            if not found or not found[-1].has_stopped:
                return False
            state = found[-1].state
            if record.plan.restart_policy == "OnFailure" and (state.exit_code or state.error):
                return False
        return True

    def release_gpus_if_finished(self) -> None:
        """One of the pod's containers changed: a pod that can never run again gives its
        GPUs back now, not when it is deleted."""
        if self.s.grants.holds(self.record) and self.finished():
            self.s.grants.release(self.uid)

    def status(self) -> PodStatus:
        """The pod's status from memory: no Docker call."""
        return pod_status(self.record, self.containers(),
                          health=lambda name: self.s.supervisors.health(self.uid, name),
                          message=self.s.messages.message)

    # --- take-down --------------------------------------------------------------------------

    async def terminate(self, grace: int) -> list[Summary]:
        """Stop the bring-up and the supervisors, then remove the pod's containers and
        volumes (preStop hooks first, within ``grace``) and give its GPUs back."""
        await self.stop_sync()
        await self.s.supervisors.stop(self.uid)
        return await remove_pod(self.s, self.uid, grace, self.record)

    async def evict(self, message: str) -> None:
        """Kill the pod's containers, release its GPUs, and record why."""
        rec, s = self.record, self.s
        log.warning("evicting pod %s: %s", rec.ref(), message)
        rec.evicted = message
        # On disk first, so that a sidecar restarted halfway still keeps the pod down.
        s.store.mark_evicted(rec.uid, message)
        await self.stop_sync()
        await s.supervisors.stop(rec.uid)
        containers = self.containers()
        workloads = [c.id for c in containers if not c.is_infra]
        await asyncio.gather(*(blocking(s.engine.stop, cid, 0) for cid in workloads),
                             return_exceptions=True)
        for c in containers:
            if c.is_infra:
                with contextlib.suppress(Exception):
                    await blocking(s.engine.stop, c.id, 0)
        for cid in workloads:
            await blocking(s.tracker.refresh, cid)
        s.grants.release(rec.uid)


async def remove_pod(s: PodServices, uid: str, grace: int,
                     record: PodRecord | None) -> list[Summary]:
    """Remove every container and volume of pod ``uid`` (also one no worker knows), running
    the preStop hooks of a known pod first; the pod's GPUs go back whatever fails. Returns
    the containers that were found (Docker's list summaries)."""
    containers = [c for c in map(Summary, await blocking(s.engine.list_managed))
                  if c.pod_uid == uid]
    workloads = [c.id for c in containers if not c.is_infra]
    infra = [c.id for c in containers if c.is_infra]
    try:
        started = time.monotonic()
        if record is not None and record.plan is not None:
            await _pre_stop(s, record, containers, grace)
        left = max(0, math.ceil(grace - (time.monotonic() - started)))
        # Each container on its own: one that Docker cannot stop must not keep the others,
        # their volumes or the pod's GPUs.
        # The tunnel companion's shell ignores SIGTERM as PID 1, and it has nothing to save:
        # it goes at once rather than holding every delete for the whole grace period.
        tunnels = {c.id for c in containers if c.role == L.ROLE_TUNNEL}
        for failed in await asyncio.gather(
                *(blocking(s.engine.stop, cid, 0 if cid in tunnels else left)
                  for cid in workloads),
                return_exceptions=True):
            if isinstance(failed, Exception):
                log.warning("pod %s: stopping a container failed: %s", uid, failed)
        for cid in workloads + infra:
            try:
                await blocking(s.engine.remove, cid)
            except EngineError as exc:
                log.warning("pod %s: removing container %s failed: %s", uid, cid[:12], exc)
            await blocking(s.tracker.refresh, cid)
        for volume in await blocking(s.engine.list_volumes, uid):
            await blocking(s.engine.remove_volume, volume)
    finally:
        s.grants.release(uid)
    s.messages.forget(c.id for c in containers)
    return containers


async def _pre_stop(s: PodServices, record: PodRecord, containers: list[Summary],
                    grace: int) -> None:
    """preStop hooks of running containers, together, within the grace period."""
    assert record.plan is not None
    running = {c.name: c.id for c in containers if c.role == L.ROLE_MAIN and c.running}
    hooks = [(c, running[c.name]) for c in record.plan.main
             if c.name in running and (c.spec.get("lifecycle") or {}).get("preStop")]

    async def run(c: ContainerPlan, cid: str) -> None:
        ok, detail = await run_handler(
            c.spec["lifecycle"]["preStop"], c.spec, record.pod_ip, timeout=max(grace, 1),
            exec_in=lambda cmd, t: s.runtime.exec_in(cid, cmd, t))
        if not ok:
            log.warning("pod %s: preStop hook of %s failed: %s", record.ref(), c.name, detail)

    if hooks:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(run(c, cid) for c, cid in hooks)),
                                   max(grace, 1))
