"""The pod manager: brings pods up in the background, tears them down, answers status, and
rebuilds everything from Docker and the data root after a restart.

State lives in two places only: Docker (containers and volumes, labelled with the pod's
identity) and the pod's directory (``<data root>/pods/<uid>``: the create request, so a
half-created pod can be finished, and the pod's volume files). Memory holds nothing that
cannot be rebuilt from those.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from interlink_common.wire import (
    ContainerStateTerminated,
    CreateStruct,
    PodStatus,
    RetrievedPodData,
)

from interlink_common.identity import check_uid, is_uid

from . import host_fs
from . import labels as L
from .docker_config import (
    container_create_args,
    docker_mounts,
    container_host_config,
    infra_create_args,
    infra_host_config,
)
from .engine import Engine, EngineError
from .eviction import evicted_state, read_evicted
from .floors import Floors
from .plan import ContainerPlan, NodeFacts, PlanError, PodPlan, plan_pod, registry_of
from .policy import SidecarPolicy
from .gpus import GPUAllocator, GPUInventory, GPURestoreConflict, GPUUnavailable, format_label, \
    parse_label
from .lifecycle import Health, Supervisor, Supervisors
from .probes import run_handler
from .status import ContainerFacts, Waiting, container_status, not_found_status
from .tracker import Tracker, has_stopped
from .admission import non_root_violation
from .pinned_mounts import PinError, pin, unpin_below
from .volumes import MountSpec, VolumeError, ensure_dir, materialize, remove_pod_dir

log = logging.getLogger("interlink.sidecar.pods")
T = TypeVar("T")

REQUEST_FILE = "request.json"
MAX_STORED_REQUEST = 256 << 20  # far above any request the body caps let in
# Kubernetes' limits: 4096 bytes of message file; 80 lines or 2048 bytes of log as fallback.
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048


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


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a Docker call in a worker thread. If the caller is cancelled, the call still runs
    to its end before the cancellation goes on, so whoever waits for the cancelled task sees
    every container it created."""
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await fut
        raise


class PodManager:
    def __init__(self, engine: Engine, tracker: Tracker, policy: SidecarPolicy, *,
                 data_root: Path, node: NodeFacts,
                 gpus: GPUInventory | None = None) -> None:
        self.engine = engine
        self.tracker = tracker
        self.policy = policy
        self.data_root = data_root
        self.node = node
        self.records: dict[str, PodRecord] = {}
        self.supervisors = Supervisors()
        self.gpus = gpus or GPUInventory(enabled=False, reason="GPU support is not configured")
        self.allocator = GPUAllocator([u.uuid for u in self.gpus.units],
                                      self.gpus.resource_name) if self.gpus.enabled else None
        # Termination messages read when a container stops, by (container ID, FinishedAt).
        self._messages: dict[tuple[str, str], str] = {}
        tracker.add_listener(self._on_container_change)
        self._locks: dict[str, asyncio.Lock] = {}
        # Images seen on the engine, and when: spares an inspect per image on every start.
        self._images_seen: dict[str, float] = {}
        self.floors = Floors.from_policy(policy)

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def pod_dir(self, uid: str) -> Path:
        return host_fs.pod_dir(self.data_root, uid)

    def plan(self, data: RetrievedPodData, pod_ip: str = "") -> PodPlan:
        return plan_pod(data, self.policy, data_root=self.data_root, node=self.node,
                        pod_ip=pod_ip)

    # --- create -----------------------------------------------------------------------------

    async def create(self, data: RetrievedPodData) -> CreateStruct:
        """Validate synchronously, then bring the pod up in the background."""
        uid = data.pod.uid
        async with self._lock(uid):
            existing = self.records.get(uid)
            if existing is not None:
                return CreateStruct(PodUID=uid, PodJID=existing.job_id)
            plan = self.plan(data)
            self._check_host_ports(plan)
            record = PodRecord(uid=uid, namespace=plan.namespace, name=plan.name, plan=plan,
                               pod=data.pod.to_wire())
            self._reserve_gpus(record)
            try:
                await blocking(self._prepare, data, plan)
            except PlanError:
                self._release_gpus(uid)
                raise
            self.records[uid] = record
            record.task = asyncio.create_task(self._bring_up(record, data))
            log.info("accepted pod %s (uid %s)", record.ref(), uid)
            return CreateStruct(PodUID=uid, PodJID=plan.job_id)

    def _prepare(self, data: RetrievedPodData, plan: PodPlan) -> None:
        """Write the request and the volume files before answering, so that a restart right
        after the answer can still finish the pod. On failure nothing is left behind."""
        pod_dir = self.pod_dir(plan.uid)
        try:
            self._materialize(plan)
            host_fs.write_file(self.data_root, pod_dir / REQUEST_FILE,
                               json.dumps(data.to_wire()).encode(), 0o600, None, None)
        except (VolumeError, OSError) as exc:
            self._remove_pod_dir(pod_dir)
            raise PlanError(f"cannot prepare the pod's volumes: {exc}") from None

    def _remove_pod_dir(self, pod_dir: Path) -> None:
        """Detach the pod's pinned mounts, then remove its directory; with a mount left,
        keep the directory (and say so) rather than delete through it."""
        try:
            # The request first: were the rest to fail, no restart may bring the pod back.
            with contextlib.suppress(FileNotFoundError):
                (pod_dir / REQUEST_FILE).unlink()
            left = unpin_below(pod_dir)
            if left:
                raise VolumeError(f"mounts left below it: {', '.join(left)}")
            remove_pod_dir(self.data_root, pod_dir)
        except Exception as exc:  # never let one pod's leftovers stop a delete or a restart
            log.error("pod directory %s not removed: %s", pod_dir, exc)

    # --- GPUs -------------------------------------------------------------------------------

    def _reserve_gpus(self, record: PodRecord) -> None:
        """Take the pod's GPUs now, or queue it (GPU.WhenFull: queue), or refuse it."""
        assert record.plan is not None
        count = record.plan.gpus
        if not count:
            record.gpu_granted.set()
            return
        if self.allocator is None:
            raise PlanError(self.gpus.no_gpus_message(count))
        try:
            self.allocator.allocate(record.uid, record.ref(), count)
            record.gpu_granted.set()
        except GPUUnavailable as exc:
            if self.policy.GPU.WhenFull != "queue" or not exc.fits:
                raise PlanError(str(exc)) from None
            position = self.allocator.enqueue(record.uid, record.ref(), count)
            log.info("pod %s waits for %d GPUs (position %d)", record.ref(), count, position)

    def _release_gpus(self, uid: str) -> None:
        """Give a pod's GPUs back and start the queued pods they make room for."""
        if self.allocator is None:
            return
        if self.allocator.release(uid):
            log.info("released the GPUs of pod %s", uid)
        for grant in self.allocator.next_ready():
            waiting = self.records.get(grant.pod_uid)
            if waiting is not None:
                waiting.gpu_granted.set()

    def _pod_finished(self, record: PodRecord) -> bool:
        """True when the pod can never run again: its GPUs can go (restartPolicy Never: every
        container has stopped; OnFailure: every one exited 0; an init container failed)."""
        if record.evicted:
            return True
        if record.plan is None or record.init_failed is not None:
            return record.init_failed is not None
        if record.plan.restart_policy == "Always":
            return False
        for c in record.plan.main:
            found = self._docker_containers(record, L.ROLE_MAIN, c.name)
            if not found or not has_stopped(found[-1]):
                return False
            state = found[-1]["State"]
            if record.plan.restart_policy == "OnFailure" and (
                    state.get("ExitCode") or state.get("Error")):
                return False
        return True

    async def _wait_for_gpus(self, rec: PodRecord) -> None:
        assert rec.plan is not None
        while not rec.gpu_granted.is_set():
            assert self.allocator is not None
            message = (f"waiting for {rec.plan.gpus} {self.gpus.resource_name}: position "
                       f"{self.allocator.position(rec.uid)} in line, "
                       f"{self.allocator.free_count()} free of {self.allocator.total}")
            for c in rec.plan.containers:
                rec.waiting[c.name] = Waiting("WaitingForGPU", message)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(rec.gpu_granted.wait(), 5)
        for c in rec.plan.containers:
            if rec.waiting.get(c.name, Waiting("")).reason == "WaitingForGPU":
                rec.waiting.pop(c.name)

    def _materialize(self, plan: PodPlan) -> None:
        """The pod's files: volumes and termination message files (idempotent)."""
        # Root-only: no other host user reaches the pod's secrets, request or messages; the
        # containers get their files through bind mounts, which need no traversable parents.
        host_fs.ensure_dir(self.data_root, self.pod_dir(plan.uid), 0o700, None, None)
        materialize(plan.volumes, [d for c in plan.containers for d in c.mount_dirs],
                    root=self.data_root)
        for c in plan.containers:
            if c.termination_file is not None:
                # Any user the container runs as must be able to write its message.
                host_fs.create_file(self.data_root, c.termination_file, 0o666)

    def _check_host_ports(self, plan: PodPlan) -> None:
        for binding in plan.infra.ports:
            ip, port, proto = binding.host_ip, binding.host_port, binding.protocol
            for other in self.records.values():
                if other.plan and any(p.host_port == port and p.protocol == proto
                                      for p in other.plan.infra.ports):
                    raise PlanError(f"hostPort {port}/{proto} is already used by pod "
                                    f"{other.ref()} on this node; pick another hostPort")
            if proto == "tcp":
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((ip or "0.0.0.0", port))
                    except OSError as exc:
                        if exc.errno == errno.EADDRINUSE:
                            raise PlanError(f"hostPort {port}/tcp is already in use on this "
                                            "node by another program; pick another hostPort"
                                            ) from None
                        raise

    # --- bring-up (idempotent: also finishes pods found half-created after a restart) -----

    async def _bring_up(self, rec: PodRecord, data: RetrievedPodData) -> None:
        assert rec.plan is not None
        try:
            await self._wait_for_gpus(rec)
            await self._ensure_images(rec)
            # A pod with no init containers whose spec does not use its own IP can have its
            # containers created while the sandbox starts.
            early = not rec.plan.init and not self._mains_exist(rec) and not rec.plan.volumes.tmpfs \
                and "status.podIP" not in json.dumps(rec.pod)
            infra = await self._ensure_infra(rec, early=early)
            rec.pod_ip = _pod_ip(infra)
            # Re-plan now that the pod IP is known (status.podIP in env and downward API).
            rec.plan = self.plan(data, rec.pod_ip)
            for volume in rec.plan.volumes.tmpfs:
                if volume.name not in await blocking(self.engine.list_volumes, rec.uid):
                    await blocking(self.engine.create_tmpfs_volume, volume.name,
                                   volume.size_bytes, L.pod_labels(
                                       self.policy.Instance, rec.uid, rec.namespace, rec.name))
            if not self._mains_exist(rec):
                for c in rec.plan.init:
                    if not await self._run_init(rec, c):
                        return
            await asyncio.gather(*(self._ensure_main(rec, c) for c in rec.plan.main))
            for c in rec.plan.main:
                self.supervisors.start(Supervisor(
                    host=self, uid=rec.uid, container=c.spec, pod_ip=rec.pod_ip,
                    restart_policy=rec.plan.restart_policy, grace=rec.plan.grace_period,
                    backoff_initial=self.policy.BackoffInitialSeconds,
                    backoff_max=self.policy.BackoffMaxSeconds))
            log.info("pod %s is up", rec.ref())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # report, never leave the pod waiting without a reason
            log.exception("bringing up pod %s failed", rec.ref())
            for c in rec.plan.containers:
                rec.waiting.setdefault(c.name, Waiting("CreateContainerError", str(exc)))

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.policy.BackoffInitialSeconds * (2 ** attempt),
                    self.policy.BackoffMaxSeconds)
        await asyncio.sleep(delay)

    async def _ensure_images(self, rec: PodRecord) -> None:
        assert rec.plan is not None
        wanted: dict[str, tuple[str, list[str]]] = {}
        for c in rec.plan.containers:
            policy, names = wanted.setdefault(c.image, (c.pull_policy, []))
            names.append(c.name)
            if c.pull_policy == "Always":
                wanted[c.image] = ("Always", names)
        infra_image = rec.plan.infra.image
        for image, (policy, names) in [(infra_image, ("IfNotPresent", []))] + list(wanted.items()):
            attempt = 0
            while True:
                error = await self._pull_if_needed(rec, image, policy, names)
                if error is None:
                    for n in names:
                        rec.waiting.pop(n, None)
                    break
                reason, message = error
                targets = names or [c.name for c in rec.plan.containers]
                for n in targets:
                    rec.waiting[n] = Waiting(reason if attempt == 0 or reason != "ErrImagePull"
                                             else "ImagePullBackOff", message)
                log.warning("pod %s: %s", rec.ref(), message)
                await self._backoff(attempt)
                attempt += 1

    async def _pull_if_needed(self, rec: PodRecord, image: str, policy: str,
                              names: list[str]) -> tuple[str, str] | None:
        if policy != "Always" and time.monotonic() - self._images_seen.get(image, -1e9) < 60:
            return None
        present = await blocking(self.engine.image_id, image) is not None
        if present:
            self._images_seen[image] = time.monotonic()
        if present and policy != "Always":
            return None
        if policy == "Never":
            return ("ErrImageNeverPull", f"image {image!r} is not on this node and "
                    "imagePullPolicy is Never")
        for n in names:
            rec.waiting[n] = Waiting("ContainerCreating", f"pulling image {image!r}")
        assert rec.plan is not None
        auth = rec.plan.registry_auth.get(registry_of(image))
        try:
            await asyncio.wait_for(asyncio.to_thread(self.engine.pull, image, auth),
                                   self.policy.PullTimeoutSeconds)
        except (EngineError, asyncio.TimeoutError) as exc:
            detail = str(exc) or f"no answer within {self.policy.PullTimeoutSeconds:.0f} s"
            return ("ErrImagePull", f"pulling image {image!r} failed: {detail}")
        self._images_seen[image] = time.monotonic()
        return None

    async def _ensure_infra(self, rec: PodRecord, *, early: bool = False) -> dict[str, Any]:
        """Create and start the pod's sandbox; with ``early``, create the main containers
        while it starts."""
        assert rec.plan is not None
        infra = rec.plan.infra
        attempt = 0
        while True:
            known = [c for c in self.tracker.containers_of(rec.uid)
                     if c["Config"]["Labels"].get(L.ROLE) == L.ROLE_INFRA]
            info = known[0] if known else None
            try:
                if info is None:
                    args = infra_create_args(infra)
                    if rec.plan.gpus and self.allocator is not None:
                        # The pod's GPUs, recorded where a restarted sidecar finds them.
                        args["labels"] = {**args["labels"], L.GPUS: format_label(
                            self.allocator.allocation(rec.uid))}
                    await blocking(self.engine.create, args,
                                   infra_host_config(infra, self.floors))
                if info is None or not info["State"].get("Running") and not self._mains_exist(rec):
                    starting = blocking(self.engine.start, infra.docker_name)
                    if early:
                        started, *_ = await asyncio.gather(
                            starting, *(self._create(rec, c) for c in rec.plan.main),
                            return_exceptions=True)
                        if isinstance(started, BaseException):
                            raise started
                    else:
                        await starting
                info = await blocking(self.tracker.refresh, infra.docker_name)
                assert info is not None
                return info
            except EngineError as exc:
                message = f"cannot start the pod's network sandbox: {exc}"
                for c in rec.plan.containers:
                    rec.waiting[c.name] = Waiting("CreateContainerError", message)
                log.warning("pod %s: %s", rec.ref(), message)
                for cid in [*rec.container_ids.values(), infra.docker_name]:
                    await blocking(self.engine.remove, cid)
                rec.container_ids.clear()
                # Only containers made while the sandbox started had pins: all gone now.
                await blocking(self._unpin_staging, rec.uid, "")
                await self._backoff(attempt)
                attempt += 1

    def _docker_containers(self, rec: PodRecord, role: str, name: str) -> list[dict[str, Any]]:
        """The Docker containers of one Kubernetes container, oldest attempt first."""
        found = [c for c in self.tracker.containers_of(rec.uid)
                 if c["Config"]["Labels"].get(L.ROLE) == role
                 and c["Config"]["Labels"].get(L.CONTAINER) == name]
        return sorted(found, key=lambda c: int(c["Config"]["Labels"].get(L.ATTEMPT, "0")))

    def _mains_exist(self, rec: PodRecord) -> bool:
        return any(c["Config"]["Labels"].get(L.ROLE) == L.ROLE_MAIN
                   for c in self.tracker.containers_of(rec.uid))

    async def _create(self, rec: PodRecord, c: ContainerPlan, *, attempt: int = 0,
                      restart: bool = True) -> str | None:
        """Create one container; a failure is recorded as the container's state."""
        assert rec.plan is not None
        name = L.container_name(rec.namespace, rec.name, c.name, rec.uid, attempt)
        extra = {L.ATTEMPT: str(attempt)} if attempt else {}
        gpus = []
        if c.gpus and self.allocator is not None:
            gpus = rec.plan.gpu_assignment(self.allocator.allocation(rec.uid)).get(c.name, [])
            extra[L.GPUS] = format_label(gpus)
        try:
            host = container_host_config(c, rec.plan.infra.docker_name, gpu_uuids=gpus,
                                         restart=restart, floors=self.floors)
            await blocking(self._resolve_host_config, rec, c, name, host)
        except (PinError, VolumeError, OSError) as exc:
            await blocking(self._unpin_staging, rec.uid, name)
            message = f"cannot create container {c.name!r}: {exc}"
            rec.waiting[c.name] = Waiting("CreateContainerConfigError", message)
            log.warning("pod %s: %s", rec.ref(), message)
            return None
        try:
            cid = await blocking(self.engine.create,
                                 container_create_args(c, labels=extra, name=name,
                                                       gpu_uuids=gpus), host)
        except EngineError as exc:
            await blocking(self._unpin_staging, rec.uid, name)
            rec.waiting[c.name] = Waiting("CreateContainerError", str(exc))
            log.warning("pod %s: creating container %s failed: %s", rec.ref(), c.name, exc)
            return None
        rec.waiting.pop(c.name, None)
        rec.container_ids[c.name] = cid
        return cid

    def _resolve_host_config(self, rec: PodRecord, c: ContainerPlan, docker_name: str,
                             host: dict[str, Any]) -> None:
        """What depends on the node's state at the moment of creation, checked and fixed now
        in ``host`` (the host config): subPath and hostPath mounts pinned below the pod's
        directory, the image's user under runAsNonRoot, a Localhost seccomp profile."""
        assert rec.plan is not None
        pod_dir = self.pod_dir(rec.uid)
        staging = pod_dir / "mounts" / docker_name
        pinned: list[MountSpec] = []
        for d in c.mount_dirs:  # a subPath directory may have gone since /create
            ensure_dir(d, self.data_root)
        for i, m in enumerate(c.mounts):
            if m.beneath:
                target = staging / str(i)
                pin(Path(m.beneath), Path(m.source), pod_dir, target)
                m = MountSpec(str(target), m.target, m.read_only, m.kind)
            pinned.append(m)
        if any(m.beneath for m in c.mounts):
            host["mounts"] = docker_mounts(pinned)
        if c.run_as_non_root:
            violation = non_root_violation(self.engine.image_user(c.image) or "")
            if violation:
                raise PinError(errno.EPERM, violation)
        if c.seccomp_localhost is not None:
            host["security_opt"] = [*host.get("security_opt", []),
                                    f"seccomp={self._seccomp_profile(c.seccomp_localhost)}"]

    def _seccomp_profile(self, rel: str) -> str:
        root = Path(self.policy.SeccompProfileRoot)
        try:
            with host_fs.open_entry(root, rel) as fd:
                with open(f"/proc/self/fd/{fd}", encoding="utf-8") as f:
                    text = f.read(1 << 20)
            json.loads(text)
        except (OSError, ValueError) as exc:
            raise PinError(errno.ENOENT, f"seccomp profile {rel!r} under Sidecar."
                           f"SeccompProfileRoot ({root}) cannot be used: {exc}") from None
        return text

    async def _start(self, rec: PodRecord, c: ContainerPlan, cid: str) -> None:
        """Start a created container. Its new state reaches the tracker through Docker's
        events; a start that fails sends none, so that state is read here."""
        try:
            await blocking(self.engine.start, cid)
        except EngineError as exc:
            # Docker keeps the container with the error in its state; status reports it.
            log.warning("pod %s: container %s cannot start: %s", rec.ref(), c.name, exc)
            await blocking(self.tracker.refresh, cid)

    async def _create_and_start(self, rec: PodRecord, c: ContainerPlan, *, attempt: int = 0,
                                restart: bool = True) -> str | None:
        cid = await self._create(rec, c, attempt=attempt, restart=restart)
        if cid is not None:
            await self._start(rec, c, cid)
        return cid

    async def _run_init(self, rec: PodRecord, c: ContainerPlan) -> bool:
        """Run one init container to completion; False when the pod has failed."""
        assert rec.plan is not None
        existing = self._docker_containers(rec, L.ROLE_INIT, c.name)
        attempt = int(existing[-1]["Config"]["Labels"].get(L.ATTEMPT, "0")) if existing else 0
        info: dict[str, Any] | None = existing[-1] if existing else None
        while True:
            if info is None:
                cid = await self._create_and_start(rec, c, attempt=attempt, restart=False)
                if cid is None:  # could not even be created
                    await self._backoff(attempt)
                    continue
            else:
                cid = info["Id"]
            info = await self.tracker.wait_exit(cid)
            code = int((info or {}).get("State", {}).get("ExitCode", -1) if info else -1)
            if info is not None and code == 0:
                return True
            if rec.plan.restart_policy == "Never":
                from .status import terminated_from_docker
                rec.init_failed = terminated_from_docker(info) if info else \
                    ContainerStateTerminated(exitCode=1, reason="Error",
                                             message="init container disappeared")
                rec.init_failed_name = c.name
                log.info("pod %s: init container %s failed (exit %s); restartPolicy Never",
                         rec.ref(), c.name, code)
                self._release_gpus(rec.uid)
                return False
            await self._backoff(attempt)
            # Keep the previous attempt for Previous logs; drop older ones.
            for old in self._docker_containers(rec, L.ROLE_INIT, c.name)[:-1]:
                await self._remove_attempt(rec, old)
            attempt += 1
            info = None

    async def _ensure_main(self, rec: PodRecord, c: ContainerPlan) -> None:
        if c.name in rec.container_ids:  # created early, while the sandbox started
            await self._start(rec, c, rec.container_ids[c.name])
            return
        existing = self._docker_containers(rec, L.ROLE_MAIN, c.name)
        if not existing:
            await self._create_and_start(rec, c)
            return
        state = existing[-1]["State"]
        if state.get("Status") == "created" and not state.get("Error"):
            # Created but never started: the sidecar stopped in between.
            with contextlib.suppress(EngineError):
                await blocking(self.engine.start, existing[-1]["Id"])
            await blocking(self.tracker.refresh, existing[-1]["Id"])

    # --- what supervisors ask of the manager (lifecycle.Host) -----------------------------

    def current(self, uid: str, name: str) -> dict[str, Any] | None:
        record = self.records.get(uid)
        found = self._docker_containers(record, L.ROLE_MAIN, name) if record else []
        return found[-1] if found else None

    async def exec_in(self, cid: str, command: list[str], timeout: float) -> int:
        code, _ = await asyncio.wait_for(asyncio.to_thread(self.engine.exec, cid, command),
                                         timeout)
        return code

    async def kill(self, info: dict[str, Any], grace: int, *, restart: bool) -> bool:
        """Stop a container's process as a kubelet does (SIGTERM, SIGKILL after ``grace``).

        The signal goes to the process itself, from the host, so that Docker sees the exit as
        the container's own and its restart policy applies and counts it. Returns False when
        the process is not visible from here (the sidecar in a container of its own PID
        namespace); Docker then restarts or stops it, and the restart is not in its count.
        """
        pid = int(info["State"].get("Pid") or 0)
        try:
            if pid <= 0:
                raise ProcessLookupError
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            if restart:
                await blocking(self.engine.restart, info["Id"], grace)
            else:
                await blocking(self.engine.stop, info["Id"], grace)
            return False
        try:
            await asyncio.wait_for(self.tracker.wait_exit(info["Id"]), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return True

    async def recreate(self, uid: str, name: str) -> None:
        """A new Docker container for a main container that could not start."""
        record = self.records.get(uid)
        if record is None or record.plan is None:
            return
        plan = next(c for c in record.plan.main if c.name == name)
        found = self._docker_containers(record, L.ROLE_MAIN, name)
        attempt = int(found[-1]["Config"]["Labels"].get(L.ATTEMPT, "0")) + 1 if found else 0
        for old in found[:-1]:
            await self._remove_attempt(record, old)
        await self._create_and_start(record, plan, attempt=attempt)

    async def _remove_attempt(self, rec: PodRecord, info: dict[str, Any]) -> None:
        """Remove an old attempt's container, and the mounts pinned for it: a container that
        fails over and over must not fill the host's mount table."""
        await blocking(self.engine.remove, info["Id"])
        await blocking(self._unpin_staging, rec.uid, info["Name"].lstrip("/"))

    def _unpin_staging(self, uid: str, docker_name: str) -> None:
        """Detach and remove the staging of one container (``""``: of every container)."""
        staging = self.pod_dir(uid) / "mounts"
        if docker_name:
            staging = staging / docker_name
        try:
            left = unpin_below(staging)
            if left:
                raise PinError(errno.EBUSY, f"still mounted: {', '.join(left)}")
            host_fs.remove_tree(self.data_root, staging)
        except OSError as exc:
            log.warning("pod %s: staging %s not removed: %s", uid, staging, exc)

    def _on_container_change(self, cid: str, info: dict[str, Any] | None) -> None:
        if info is None:
            return
        labels = info["Config"]["Labels"]
        uid, name = labels.get(L.POD_UID, ""), labels.get(L.CONTAINER, "")
        self.supervisors.poke(uid, name)
        record = self.records.get(uid)
        if record is not None and record.plan is not None and record.plan.gpus and \
                self.allocator is not None and self.allocator.allocation(uid) and \
                self._pod_finished(record):
            self._release_gpus(uid)
        state = info["State"]
        finished = state.get("FinishedAt", "")
        if state.get("Running") or not finished or finished.startswith("0001") \
                or labels.get(L.ROLE) == L.ROLE_INFRA:
            return
        key = (info["Id"], finished)
        if key not in self._messages:
            self._messages[key] = ""
            asyncio.get_running_loop().create_task(self._read_termination_message(info))

    async def _read_termination_message(self, info: dict[str, Any]) -> None:
        """Kubernetes' terminationMessagePath, and FallbackToLogsOnError."""
        labels = info["Config"]["Labels"]
        record = self.records.get(labels.get(L.POD_UID, ""))
        if record is None or record.plan is None:
            return
        plan = next((c for c in record.plan.containers if c.name == labels.get(L.CONTAINER)),
                    None)
        if plan is None:
            return
        message = ""
        if plan.termination_file is not None:
            with contextlib.suppress(OSError):
                message = host_fs.read_file(self.data_root, plan.termination_file,
                                            MAX_TERMINATION_MESSAGE).decode("utf-8", "replace")
        code = info["State"].get("ExitCode") or 0
        if not message.strip() and code != 0 and \
                plan.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(Exception):
                chunks = await blocking(lambda: b"".join(self.engine.logs(
                    info["Id"], follow=False, tail=FALLBACK_LOG_LINES, timestamps=False,
                    since=None)))
                message = chunks[-FALLBACK_LOG_BYTES:].decode("utf-8", "replace")
        self._messages[(info["Id"], info["State"].get("FinishedAt", ""))] = message

    # --- delete -----------------------------------------------------------------------------

    async def delete(self, pod: dict[str, Any]) -> bool:
        """Stop and remove everything of the pod; True when there was something to delete."""
        meta = pod.get("metadata") or {}
        uid = check_uid(meta.get("uid", ""))  # it names a directory that is removed
        async with self._lock(uid):
            record = self.records.pop(uid, None)
            if record is not None and record.task is not None:
                record.task.cancel()
                await asyncio.gather(record.task, return_exceptions=True)
            await self.supervisors.stop(uid)
            grace = self._grace(meta.get("deletionGracePeriodSeconds"))
            if grace is None and record is not None and record.plan is not None:
                grace = record.plan.grace_period
            if grace is None:
                grace = self._grace((pod.get("spec") or {}).get("terminationGracePeriodSeconds"))
            if grace is None:
                grace = self.policy.DefaultGracePeriodSeconds
            containers = [c for c in await blocking(self.engine.list_managed)
                          if c["Labels"].get(L.POD_UID) == uid]
            workloads = [c["Id"] for c in containers if c["Labels"].get(L.ROLE) != L.ROLE_INFRA]
            infra = [c["Id"] for c in containers if c["Labels"].get(L.ROLE) == L.ROLE_INFRA]
            try:
                started = time.monotonic()
                if record is not None and record.plan is not None:
                    await self._pre_stop(record, containers, grace)
                left = max(0, math.ceil(grace - (time.monotonic() - started)))
                # Each container on its own: one that Docker cannot stop must not keep the
                # others, their volumes or the pod's GPUs.
                for failed in await asyncio.gather(
                        *(blocking(self.engine.stop, cid, left) for cid in workloads),
                        return_exceptions=True):
                    if isinstance(failed, Exception):
                        log.warning("pod %s: stopping a container failed: %s", uid, failed)
                for cid in workloads + infra:
                    try:
                        await blocking(self.engine.remove, cid)
                    except EngineError as exc:
                        log.warning("pod %s: removing container %s failed: %s", uid, cid[:12],
                                    exc)
                    await blocking(self.tracker.refresh, cid)
                for volume in await blocking(self.engine.list_volumes, uid):
                    await blocking(self.engine.remove_volume, volume)
            finally:
                self._release_gpus(uid)
            gone = {c["Id"] for c in containers}
            self._messages = {k: v for k, v in self._messages.items() if k[0] not in gone}
            pod_dir = self.pod_dir(uid)
            existed = pod_dir.exists()
            await blocking(self._remove_pod_dir, pod_dir)
            # The lock stays: a create waiting on it must not run beside one on a new lock.
            found = record is not None or bool(containers) or existed
            if found:
                log.info("deleted pod %s/%s (uid %s)", meta.get("namespace"), meta.get("name"),
                         uid)
            return found

    def _grace(self, value: Any) -> int | None:
        """A grace period from a request, within Sidecar.MaxGracePeriodSeconds; None when
        not a number of seconds."""
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return min(max(0, value), self.policy.MaxGracePeriodSeconds)

    async def _pre_stop(self, record: PodRecord, containers: list[dict[str, Any]],
                        grace: int) -> None:
        """preStop hooks of running containers, together, within the grace period."""
        assert record.plan is not None
        running = {c["Labels"].get(L.CONTAINER): c["Id"] for c in containers
                   if c["Labels"].get(L.ROLE) == L.ROLE_MAIN and c.get("State") == "running"}
        hooks = [(c, running[c.name]) for c in record.plan.main
                 if c.name in running and (c.spec.get("lifecycle") or {}).get("preStop")]

        async def run(c: ContainerPlan, cid: str) -> None:
            ok, detail = await run_handler(
                c.spec["lifecycle"]["preStop"], c.spec, record.pod_ip, timeout=max(grace, 1),
                exec_in=lambda cmd, t: self.exec_in(cid, cmd, t))
            if not ok:
                log.warning("pod %s: preStop hook of %s failed: %s", record.ref(), c.name,
                            detail)

        if hooks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(run(c, cid) for c, cid in hooks)),
                                       max(grace, 1))

    # --- status -----------------------------------------------------------------------------

    def status(self, pod: dict[str, Any]) -> PodStatus:
        """The pod's status from memory: no Docker call."""
        uid = (pod.get("metadata") or {}).get("uid", "")
        record = self.records.get(uid)
        if record is None:
            return not_found_status(pod, "pod is not known to the Docker sidecar on this node "
                                    "(never created here, or already deleted)")
        by_name: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for c in self.tracker.containers_of(uid):
            labels = c["Config"]["Labels"]
            by_name.setdefault((labels.get(L.ROLE, ""), labels.get(L.CONTAINER, "")), []).append(c)
        specs = _container_specs(record)
        mains = [c for c in (record.pod.get("spec") or {}).get("containers") or []
                 if isinstance(c, dict)]
        probed = {c.get("name") for c in mains if c.get("readinessProbe")}
        gated = {c.get("name") for c in mains if c.get("startupProbe")}

        def facts(role: str, name: str, image: str) -> ContainerFacts:
            found = sorted(by_name.get((role, name), []),
                           key=lambda c: int(c["Config"]["Labels"].get(L.ATTEMPT, "0")))
            latest = found[-1] if found else None
            waiting = record.waiting.get(name)
            override = None
            if latest is None and record.init_failed is not None:
                # Never run: mains and the init containers after the failed one. Reported
                # terminated, as waiting would keep the pod Pending for the VK.
                override = ContainerStateTerminated(
                    exitCode=record.init_failed.exitCode or 1, reason="InitContainerFailed",
                    message=f"init container {record.init_failed_name!r} failed "
                            f"(exit code {record.init_failed.exitCode}) and restartPolicy is "
                            "Never")
            elif role == L.ROLE_MAIN and latest is None and waiting is None and \
                    _init_pending(by_name, specs):
                waiting = Waiting("PodInitializing")
            if record.evicted:
                override = evicted_state(latest, record.evicted) or override
            health = self.supervisors.health(uid, name) if role == L.ROLE_MAIN else None
            restarts = int((latest or {}).get("Config", {}).get("Labels", {}).get(L.ATTEMPT, "0"))
            if role == L.ROLE_MAIN:
                restarts += int((latest or {}).get("RestartCount") or 0) + (
                    health.extra_restarts if health else 0)
            return ContainerFacts(
                name=name, image=image, docker=latest, restart_count=restarts, waiting=waiting,
                ready=_ready(health, name in probed, name in gated),
                started=health.started if health else (False if name in gated else None),
                terminated_override=override, backoff=health.backoff if health else "",
                message=self._message(latest, health))

        return PodStatus(
            name=record.name, UID=uid, namespace=record.namespace, JID=record.job_id,
            containers=[container_status(facts(L.ROLE_MAIN, n, i)) for n, i in specs["main"]],
            initContainers=[container_status(facts(L.ROLE_INIT, n, i))
                            for n, i in specs["init"]])

    def _message(self, info: dict[str, Any] | None, health: Health | None) -> str:
        if info is None:
            return ""
        message = self._messages.get((info["Id"], info["State"].get("FinishedAt", "")), "")
        if not message and health is not None and health.killed_because:
            message = f"killed by the sidecar: {health.killed_because}"
        return message

    # --- restart safety ---------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the view from Docker and the data root; finish half-created pods; never
        stop a running one; remove directories of pods that no longer exist."""
        await blocking(self.tracker.sync)
        by_pod = self.tracker.by_pod()
        pods_root = self.data_root / "pods"
        dirs: dict[str, Path] = {}
        for entry in pods_root.iterdir() if pods_root.exists() else ():
            if is_uid(entry.name) and entry.is_dir() and not entry.is_symlink():
                dirs[entry.name] = entry
            else:  # not made by the sidecar: touch nothing, and say so
                log.warning("ignoring %s in the data root: not a pod directory", entry)
        resumed: list[tuple[PodRecord, RetrievedPodData]] = []
        for uid in sorted(set(by_pod) | set(dirs)):
            request = dirs.get(uid, Path("/nonexistent")) / REQUEST_FILE
            if request.exists():
                try:
                    data = RetrievedPodData.model_validate(json.loads(host_fs.read_file(
                        self.data_root, request, MAX_STORED_REQUEST)))
                    if data.pod.uid != uid:
                        raise ValueError(f"it is the request of pod {data.pod.uid!r}")
                    plan = self.plan(data)
                    # A crash between answering /create and writing the files is possible.
                    await blocking(self._materialize, plan)
                except Exception as exc:  # whatever is wrong with one pod, the others recover
                    log.error("pod %s: stored request unusable (%s); reporting only", uid, exc)
                else:
                    record = PodRecord(uid=uid, namespace=plan.namespace, name=plan.name,
                                       plan=plan, pod=data.pod.to_wire(),
                                       evicted=read_evicted(dirs[uid]))
                    self.records[uid] = record
                    resumed.append((record, data))
                    continue
            if uid in by_pod:
                labels = by_pod[uid][0]["Config"]["Labels"]
                self.records[uid] = PodRecord(uid=uid, namespace=labels.get(L.POD_NAMESPACE, ""),
                                              name=labels.get(L.POD_NAME, ""), plan=None, pod={})
                log.warning("pod %s: containers found without their create request; "
                            "reporting their state only", uid)
            else:
                log.info("removing directory of pod %s, which no longer exists", uid)
                await blocking(self._remove_pod_dir, dirs[uid])
        # GPUs recorded in labels are held again before any pod may take free ones.
        labelled = [(r, d) for r, d in resumed if _gpu_label(by_pod.get(r.uid, []))]
        for record, _ in labelled + [x for x in resumed if x not in labelled]:
            self._restore_gpus(record, by_pod.get(record.uid, []))
        for record, _ in resumed:
            for cid in await blocking(self._repin, record, by_pod.get(record.uid, [])):
                assert record.plan is not None
                try:
                    await blocking(self.engine.restart, cid, record.plan.grace_period)
                except EngineError as exc:
                    log.error("pod %s: restarting container %s failed: %s", record.ref(),
                              cid[:12], exc)
        for record, data in resumed:
            if not record.evicted:  # an evicted pod stays down
                record.task = asyncio.create_task(self._bring_up(record, data))
        log.info("recovered %d pods", len(self.records))

    def _repin(self, rec: PodRecord, containers: list[dict[str, Any]]) -> list[str]:
        """Pin again the mounts a host reboot dropped (pins live in the host's mount table,
        while Docker keeps the containers, and may already have restarted them on empty
        staging directories). Returns the running containers that need a restart to see
        their volumes again."""
        assert rec.plan is not None
        pod_dir = self.pod_dir(rec.uid)
        by_name = {c.name: c for c in rec.plan.containers}
        restart = []
        for info in containers:
            c = by_name.get(info["Config"]["Labels"].get(L.CONTAINER, ""))
            if c is None or info["Config"]["Labels"].get(L.ROLE) == L.ROLE_INFRA:
                continue
            staging = pod_dir / "mounts" / info["Name"].lstrip("/")
            pinned = set(host_fs.mounts_below(staging))
            missing = [(i, m) for i, m in enumerate(c.mounts)
                       if m.beneath and str(staging / str(i)) not in pinned]
            if not missing:
                continue
            try:
                for i, m in missing:
                    pin(Path(m.beneath), Path(m.source), pod_dir, staging / str(i))
            except PinError as exc:
                log.error("pod %s: container %s lost its pinned mounts and they cannot be "
                          "pinned again: %s", rec.ref(), c.name, exc)
                continue
            log.warning("pod %s: pinned the mounts of container %s again (the host restarted)",
                        rec.ref(), c.name)
            if info["State"].get("Running"):
                restart.append(info["Id"])
        return restart

    def _restore_gpus(self, record: PodRecord, containers: list[dict[str, Any]]) -> None:
        """Hold again the GPUs a running pod was given before the restart (its infra label);
        a pod that has not got them yet queues or takes them anew."""
        assert record.plan is not None
        if not record.plan.gpus or record.evicted:
            record.gpu_granted.set()
            return
        held = parse_label(_gpu_label(containers))
        if not held:
            try:
                self._reserve_gpus(record)
            except PlanError as exc:
                for c in record.plan.containers:
                    record.waiting[c.name] = Waiting("CreateContainerError", str(exc))
            return
        if self.allocator is None or self._pod_finished(record):
            record.gpu_granted.set()
            return
        try:
            missing = self.allocator.restore(record.uid, record.ref(), held)
        except GPURestoreConflict as exc:
            log.error("pod %s: %s", record.ref(), exc)
        else:
            if missing:
                log.warning("pod %s holds GPUs this node no longer offers: %s", record.ref(),
                            ", ".join(missing))
        record.gpu_granted.set()

    async def close(self) -> None:
        for record in self.records.values():
            if record.task is not None:
                record.task.cancel()
        await asyncio.gather(*(r.task for r in self.records.values() if r.task),
                             return_exceptions=True)
        for uid in list(self.records):
            await self.supervisors.stop(uid)


def _gpu_label(containers: list[dict[str, Any]]) -> str:
    """The pod's GPUs as its infra container records them."""
    for c in containers:
        if c["Config"]["Labels"].get(L.ROLE) == L.ROLE_INFRA:
            return c["Config"]["Labels"].get(L.GPUS, "")
    return ""


def _ready(health: Health | None, probed: bool, gated: bool) -> bool | None:
    """None lets status say "ready while running"; a probed container is ready only once its
    probe said so, and never before its startup probe passed (``gated``)."""
    if health is None:  # its supervisor has not started yet
        return False if probed or gated else None
    if probed or not health.started:
        return health.ready and health.started
    return None


def _pod_ip(infra: dict[str, Any]) -> str:
    settings = infra.get("NetworkSettings") or {}
    if settings.get("IPAddress"):
        return settings["IPAddress"]
    for net in (settings.get("Networks") or {}).values():
        if net.get("IPAddress"):
            return net["IPAddress"]
    return "127.0.0.1"  # host network


def _container_specs(record: PodRecord) -> dict[str, list[tuple[str, str]]]:
    if record.plan is not None:
        return {"init": [(c.name, c.image) for c in record.plan.init],
                "main": [(c.name, c.image) for c in record.plan.main]}
    spec = record.pod.get("spec") or {}
    return {"init": [(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []],
            "main": [(c["name"], c.get("image", "")) for c in spec.get("containers") or []]}


def _init_pending(by_name: dict[tuple[str, str], list[dict[str, Any]]],
                  specs: dict[str, list[tuple[str, str]]]) -> bool:
    for name, _ in specs["init"]:
        found = by_name.get((L.ROLE_INIT, name))
        if not found or not has_stopped(found[-1]) or found[-1]["State"].get("ExitCode"):
            return True
    return False
