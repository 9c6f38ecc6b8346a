"""The container runtime of pods: creates, starts, kills and re-creates their Docker
containers, and runs commands in them. It serves the supervisors (``lifecycle.Host``) and the
pod workers; it keeps no state of its own (the tracker's view is the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import host_fs
from . import labels as L
from .admission import non_root_violation
from .containers import Container, attempts
from .docker_config import container_create_args, container_host_config, docker_mounts
from .engine import EngineError
from .engine_api import ContainerEngine
from .floors import Floors
from .gpu_grants import GPUGrants
from .gpus import format_label
from .pinned_mounts import PinError, pin
from .plan import ContainerPlan
from .pod_store import PodStore
from .policy import SidecarPolicy
from .status import Waiting
from .threads import blocking
from .tracker import Tracker
from .volumes import MountSpec, VolumeError, ensure_dir

if TYPE_CHECKING:
    from .pod_worker import PodRecord

log = logging.getLogger("interlink.sidecar.pods")


class ContainerRuntime:
    def __init__(self, engine: ContainerEngine, tracker: Tracker, store: PodStore,
                 policy: SidecarPolicy, grants: GPUGrants,
                 record_of: Callable[[str], PodRecord | None]) -> None:
        self.engine = engine
        self.tracker = tracker
        self.store = store
        self.policy = policy
        self.grants = grants
        self.floors = Floors.from_policy(policy)
        self._record_of = record_of

    # --- reading the tracker's view ---------------------------------------------------------

    def containers(self, uid: str, role: str, name: str) -> list[Container]:
        """The Docker containers of one Kubernetes container, oldest attempt first."""
        return attempts(self.tracker.containers_of(uid), role, name)

    def infra(self, uid: str) -> Container | None:
        known = [c for c in self.tracker.containers_of(uid) if c.is_infra]
        return known[0] if known else None

    def mains_exist(self, uid: str) -> bool:
        return any(c.role == L.ROLE_MAIN for c in self.tracker.containers_of(uid))

    async def backoff(self, attempt: int) -> None:
        delay = min(self.policy.BackoffInitialSeconds * (2 ** attempt),
                    self.policy.BackoffMaxSeconds)
        await asyncio.sleep(delay)

    # --- creating and starting --------------------------------------------------------------

    async def create(self, rec: PodRecord, c: ContainerPlan, *, attempt: int = 0,
                     restart: bool = True) -> str | None:
        """Create one container; a failure is recorded as the container's state."""
        assert rec.plan is not None
        name = L.container_name(rec.namespace, rec.name, c.name, rec.uid, attempt)
        extra = {L.ATTEMPT: str(attempt)} if attempt else {}
        gpus = []
        if c.gpus and self.grants.allocator is not None:
            gpus = self.grants.of_container(rec, c.name)
            extra[L.GPUS] = format_label(gpus)
        try:
            host = container_host_config(c, rec.plan.infra.docker_name, gpu_uuids=gpus,
                                         restart=restart, floors=self.floors)
            await blocking(self._resolve_host_config, rec, c, name, host)
        except (PinError, VolumeError, OSError) as exc:
            await blocking(self.store.unpin_staging, rec.uid, name)
            message = f"cannot create container {c.name!r}: {exc}"
            rec.waiting[c.name] = Waiting("CreateContainerConfigError", message)
            log.warning("pod %s: %s", rec.ref(), message)
            return None
        try:
            cid = await blocking(self.engine.create,
                                 container_create_args(c, labels=extra, name=name,
                                                       gpu_uuids=gpus), host)
        except EngineError as exc:
            await blocking(self.store.unpin_staging, rec.uid, name)
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
        pod_dir = self.store.pod_dir(rec.uid)
        staging = self.store.staging(rec.uid, docker_name)
        pinned: list[MountSpec] = []
        for d in c.mount_dirs:  # a subPath directory may have gone since /create
            ensure_dir(d, self.store.data_root)
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

    async def start(self, rec: PodRecord, c: ContainerPlan, cid: str) -> None:
        """Start a created container. Its new state reaches the tracker through Docker's
        events; a start that fails sends none, so that state is read here."""
        try:
            await blocking(self.engine.start, cid)
        except EngineError as exc:
            # Docker keeps the container with the error in its state; status reports it.
            log.warning("pod %s: container %s cannot start: %s", rec.ref(), c.name, exc)
            await blocking(self.tracker.refresh, cid)

    async def create_and_start(self, rec: PodRecord, c: ContainerPlan, *, attempt: int = 0,
                               restart: bool = True) -> str | None:
        cid = await self.create(rec, c, attempt=attempt, restart=restart)
        if cid is not None:
            await self.start(rec, c, cid)
        return cid

    async def remove_attempt(self, rec: PodRecord, info: Container) -> None:
        """Remove an old attempt's container, and the mounts pinned for it: a container that
        fails over and over must not fill the host's mount table."""
        await blocking(self.engine.remove, info.id)
        await blocking(self.store.unpin_staging, rec.uid, info.docker_name)

    # --- what supervisors ask (lifecycle.Host) ----------------------------------------------

    def current(self, uid: str, name: str) -> Container | None:
        found = self.containers(uid, L.ROLE_MAIN, name) if self._record_of(uid) else []
        return found[-1] if found else None

    async def exec_in(self, cid: str, command: list[str], timeout: float) -> int:
        code, _ = await asyncio.wait_for(asyncio.to_thread(self.engine.exec, cid, command),
                                         timeout)
        return code

    async def kill(self, info: Container, grace: int, *, restart: bool) -> bool:
        """Stop a container's process as a kubelet does (SIGTERM, SIGKILL after ``grace``).

        The signal goes to the process itself, from the host, so that Docker sees the exit as
        the container's own and its restart policy applies and counts it. Returns False when
        the process is not visible from here (the sidecar in a container of its own PID
        namespace); Docker then restarts or stops it, and the restart is not in its count.
        """
        pid = info.state.pid
        try:
            if pid <= 0:
                raise ProcessLookupError
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            if restart:
                await blocking(self.engine.restart, info.id, grace)
            else:
                await blocking(self.engine.stop, info.id, grace)
            return False
        try:
            await asyncio.wait_for(self.tracker.wait_exit(info.id), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return True

    async def recreate(self, uid: str, name: str) -> None:
        """A new Docker container for a main container that could not start."""
        record = self._record_of(uid)
        if record is None or record.plan is None:
            return
        plan = next(c for c in record.plan.main if c.name == name)
        found = self.containers(uid, L.ROLE_MAIN, name)
        attempt = found[-1].attempt + 1 if found else 0
        for old in found[:-1]:
            await self.remove_attempt(record, old)
        cid = await self.create_and_start(record, plan, attempt=attempt)
        if cid is not None:
            # The supervisor looks again as soon as this returns: it must see the new
            # container, not the one that failed (whose successor's start event may still be
            # on its way), or it would back off and re-create once more.
            await blocking(self.tracker.refresh, cid)
