"""The pod's directory on the host (``<data root>/pods/<uid>``): the stored create request,
the volume files, the termination message files, the staging of pinned mounts, the eviction
verdict. Every path operation goes through ``host_fs``; nothing here calls Docker.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
from pathlib import Path

from interlink_common.identity import is_uid
from interlink_common.wire import RetrievedPodData

from . import host_fs
from .containers import Container
from .eviction import EVICTED_FILE, read_evicted
from .pinned_mounts import PinError, pin, unpin_below
from .plan import ContainerPlan, PlanError, PodPlan
from .volumes import VolumeError, materialize, remove_pod_dir

log = logging.getLogger("interlink.sidecar.pods")

REQUEST_FILE = "request.json"
MAX_STORED_REQUEST = 256 << 20  # far above any request the body caps let in
MAX_TERMINATION_MESSAGE = 4096  # Kubernetes' limit on a termination message file


class PodStore:
    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root

    def pod_dir(self, uid: str) -> Path:
        return host_fs.pod_dir(self.data_root, uid)

    # --- create and remove ----------------------------------------------------------------

    def prepare(self, data: RetrievedPodData, plan: PodPlan) -> None:
        """Write the request and the volume files before answering, so that a restart right
        after the answer can still finish the pod. On failure nothing is left behind."""
        pod_dir = self.pod_dir(plan.uid)
        try:
            self.materialize(plan)
            host_fs.write_file(self.data_root, pod_dir / REQUEST_FILE,
                               json.dumps(data.to_wire()).encode(), 0o600, None, None)
        except (VolumeError, OSError) as exc:
            self.remove(pod_dir)
            raise PlanError(f"cannot prepare the pod's volumes: {exc}") from None

    def materialize(self, plan: PodPlan) -> None:
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

    def remove(self, pod_dir: Path) -> None:
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

    # --- after a restart ------------------------------------------------------------------

    def pod_dirs(self) -> dict[str, Path]:
        """The pod directories in the data root, by UID; anything else is left alone."""
        pods_root = self.data_root / "pods"
        dirs: dict[str, Path] = {}
        for entry in pods_root.iterdir() if pods_root.exists() else ():
            if is_uid(entry.name) and entry.is_dir() and not entry.is_symlink():
                dirs[entry.name] = entry
            else:  # not made by the sidecar: touch nothing, and say so
                log.warning("ignoring %s in the data root: not a pod directory", entry)
        return dirs

    def request_path(self, pod_dir: Path | None) -> Path:
        return (pod_dir or Path("/nonexistent")) / REQUEST_FILE

    def load_request(self, uid: str, request: Path) -> RetrievedPodData:
        """The stored create request of pod ``uid``; raises when it is unusable."""
        data = RetrievedPodData.model_validate(json.loads(host_fs.read_file(
            self.data_root, request, MAX_STORED_REQUEST)))
        if data.pod.uid != uid:
            raise ValueError(f"it is the request of pod {data.pod.uid!r}")
        return data

    def read_evicted(self, uid: str) -> str:
        return read_evicted(self.pod_dir(uid))

    def mark_evicted(self, uid: str, message: str) -> None:
        with contextlib.suppress(OSError):
            (self.pod_dir(uid) / EVICTED_FILE).write_text(message)

    # --- termination messages -------------------------------------------------------------

    def read_termination_file(self, plan: ContainerPlan) -> str:
        """The container's terminationMessagePath, as it left it ("" when unreadable)."""
        if plan.termination_file is None:
            return ""
        with contextlib.suppress(OSError):
            return host_fs.read_file(self.data_root, plan.termination_file,
                                     MAX_TERMINATION_MESSAGE).decode("utf-8", "replace")
        return ""

    # --- pinned mounts --------------------------------------------------------------------

    def staging(self, uid: str, docker_name: str) -> Path:
        """Where a container's pinned mounts live."""
        return self.pod_dir(uid) / "mounts" / docker_name

    def unpin_staging(self, uid: str, docker_name: str) -> None:
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

    def repin(self, plan: PodPlan, ref: str, containers: list[Container]) -> list[str]:
        """Pin again the mounts a host reboot dropped (pins live in the host's mount table,
        while Docker keeps the containers, and may already have restarted them on empty
        staging directories). Returns the running containers that need a restart to see
        their volumes again."""
        pod_dir = self.pod_dir(plan.uid)
        by_name = {c.name: c for c in plan.containers}
        restart = []
        for info in containers:
            c = by_name.get(info.name)
            if c is None or info.is_infra:
                continue
            staging = pod_dir / "mounts" / info.docker_name
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
                          "pinned again: %s", ref, c.name, exc)
                continue
            log.warning("pod %s: pinned the mounts of container %s again (the host restarted)",
                        ref, c.name)
            if info.state.running:
                restart.append(info.id)
        return restart
