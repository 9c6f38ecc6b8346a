"""Eviction of a pod whose disk-backed emptyDir outgrows its ``sizeLimit``, whose container
outgrows its ``ephemeral-storage`` limit (writable layer and logs), or whose containers and
emptyDirs together outgrow the sum of its containers' limits, as the kubelet does.

Why measure and evict rather than back the volume with a size-limited filesystem: the kubelet
itself measures (``du``, or project quotas where the filesystem has them) and evicts; a
filesystem per volume would need a loop device and ``mkfs`` per pod (root, a kernel with loop
devices, space reserved up front, mounts to clean up after a crash), and project quotas need
an XFS or ext4 data root mounted with quotas on, which a node cannot be assumed to have. A
scan (``disk_usage.py``: by file descriptor, never through a symlink the pod swaps in) needs
nothing, costs one walk of each limited volume per interval (none for pods without any limit)
on a thread of its own, so a volume of many small files slows only the eviction checks, never
a Docker call.

An evicted pod's containers are killed (grace period 0, as the kubelet's eviction of a pod over
a local-storage limit), its GPUs go back, and its status says ``Evicted`` with the kubelet's
message. The verdict is a file in the pod's directory, so a restarted sidecar neither brings
the pod up again nor gives it GPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import labels as L
from .containers import Container
from .disk_usage import Unmeasurable, disk_usage
from .quantity import QuantityError, byte_count, format_bytes_k8s
from .status import EVICTED_EXIT_CODE, evicted_state

if TYPE_CHECKING:
    from .pods import PodManager

__all__ = ["EVICTED_EXIT_CODE", "EVICTED_FILE", "EvictionWatch", "evicted_state",
           "limited_containers", "limited_dirs", "over_limit", "pod_limit", "read_evicted"]

log = logging.getLogger("interlink.sidecar.eviction")

EVICTED_FILE = "evicted"


@dataclass(frozen=True)
class LimitedDir:
    volume: str
    path: Path
    limit: int
    limit_text: str  # the sizeLimit as the pod wrote it, for the message


def limited_dirs(pod: dict[str, Any], sources: dict[str, Any]) -> list[LimitedDir]:
    """The pod's disk-backed emptyDirs that have a sizeLimit (memory-backed ones are tmpfs,
    already limited by the kernel)."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        empty = (volume or {}).get("emptyDir")
        if not isinstance(empty, dict) or empty.get("medium") or \
                empty.get("sizeLimit") is None:
            continue
        source = sources.get(volume.get("name"))
        if source is None or source.kind != "bind":
            continue
        try:
            limit = byte_count(empty["sizeLimit"])
        except QuantityError:
            continue  # refused when the pod was planned
        out.append(LimitedDir(volume["name"], Path(source.source), limit,
                              str(empty["sizeLimit"])))
    return out


@dataclass(frozen=True)
class LimitedContainer:
    """A container with an ephemeral-storage limit: its writable layer and its log files."""

    name: str
    layer: Path | None
    log_path: Path | None
    limit: int | None  # None: no limit of its own; counted only in the pod's total
    limit_text: str


def limited_containers(pod: dict[str, Any], docker: list[Container] | list[dict[str, Any]],
                       default: str = "", *, unlimited: bool = False,
                       tunnel_limit: str = "") -> list[LimitedContainer]:
    """The pod's running containers with an ephemeral-storage limit (their own, else the
    node's default), as the kubelet measures them: writable layer plus logs. With
    ``unlimited``, those without a limit too (they count in the pod's total); with
    ``tunnel_limit``, the tunnel companion under that limit."""
    views = [c for c in map(Container.of, docker) if c is not None]
    # By name alone: an init container and a main one never share a name.
    latest = {c.name: c for c in sorted(views, key=lambda c: c.attempt) if not c.is_infra}
    spec = pod.get("spec") or {}
    out = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        info = latest.get((c or {}).get("name", ""))
        raw = (((c.get("resources") or {}).get("limits") or {}).get("ephemeral-storage")
               or default)
        if info is None or not (raw or unlimited) or not info.state.running:
            continue
        try:
            limit = byte_count(raw) if raw else None
        except QuantityError:
            continue
        out.append(LimitedContainer(c["name"], Path(info.upper_dir) if info.upper_dir else None,
                                    Path(info.log_path) if info.log_path else None,
                                    limit, str(raw)))
    # Its upper-case name is no Kubernetes container's: ``latest`` holds it under that name.
    tunnel = latest.get(L.TUNNEL_NAME)
    if tunnel_limit and tunnel is not None and tunnel.role == L.ROLE_TUNNEL and \
            tunnel.state.running:
        out.append(LimitedContainer(L.TUNNEL_NAME,
                                    Path(tunnel.upper_dir) if tunnel.upper_dir else None,
                                    Path(tunnel.log_path) if tunnel.log_path else None,
                                    byte_count(tunnel_limit), tunnel_limit))
    return out


@dataclass(frozen=True)
class PodLimit:
    """A pod whose containers have ephemeral-storage limits: their total bounds the pod's
    containers (layers, logs) and all its disk-backed emptyDirs, sizeLimit or not."""

    limit: int
    dirs: tuple[Path, ...]


def pod_limit(pod: dict[str, Any], sources: dict[str, Any], default: str = "") -> PodLimit | None:
    """The kubelet's pod-level ephemeral-storage limit: the sum of the app containers' limits
    (each its own, or the node's default), or a larger init container's (it runs alone).
    Without it an emptyDir without sizeLimit could fill the node."""
    spec = pod.get("spec") or {}

    def limit_of(c: Any) -> int | None:
        raw = ((((c or {}).get("resources") or {}).get("limits") or {})
               .get("ephemeral-storage") or default)
        try:
            return byte_count(raw) if raw else None
        except QuantityError:
            return None

    # As the kubelet's PodLimits: containers without a limit add nothing; no limit at all,
    # no pod total.
    mains = [n for n in map(limit_of, spec.get("containers") or []) if n is not None]
    inits = [n for n in map(limit_of, spec.get("initContainers") or []) if n is not None]
    total = max([sum(mains)] + inits)
    if not total:
        return None
    dirs = []
    for volume in spec.get("volumes") or []:
        empty = (volume or {}).get("emptyDir")
        source = sources.get((volume or {}).get("name"))
        if isinstance(empty, dict) and not empty.get("medium") and source is not None \
                and source.kind == "bind":
            dirs.append(Path(source.source))
    return PodLimit(total, tuple(dirs))


def container_usage(c: LimitedContainer, measure: Callable[[Path], int] = disk_usage) -> int:
    used = measure(c.layer) if c.layer is not None else 0
    if c.log_path is not None:
        for f in c.log_path.parent.glob(c.log_path.name + "*"):
            with contextlib.suppress(OSError):
                used += f.lstat().st_blocks * 512
    return used


def over_limit(dirs: list[LimitedDir], containers: list[LimitedContainer] = (),
               pod: PodLimit | None = None) -> str:
    """The kubelet's eviction message for the first volume or container over its limit, then
    for the pod over its total, or "". Each directory is walked once. Usage that cannot be
    measured (``Unmeasurable``) counts as over: data could hide below."""
    walked: dict[Path, int] = {}

    def measure(path: Path) -> int:
        if path not in walked:
            walked[path] = disk_usage(path)
        return walked[path]

    for d in dirs:
        try:
            over = measure(d.path) > d.limit
        except Unmeasurable as exc:
            return (f'Usage of EmptyDir volume "{d.volume}" cannot be measured against the '
                    f'limit "{d.limit_text}": {exc}.')
        if over:
            return f'Usage of EmptyDir volume "{d.volume}" exceeds the limit "{d.limit_text}".'
    used_by: dict[str, int] = {}
    for c in containers:
        try:
            used_by[c.name] = container_usage(c, measure)
        except Unmeasurable as exc:
            return (f'Container {c.name} cannot be measured against its local ephemeral '
                    f'storage limit "{c.limit_text}": {exc}.')
        if c.limit is not None and used_by[c.name] > c.limit:
            return (f'Container {c.name} exceeded its local ephemeral storage limit '
                    f'"{c.limit_text}".')
    if pod is not None:
        total = format_bytes_k8s(pod.limit)
        try:
            # The companion has a limit of its own and is not one of the pod's containers.
            used = sum(map(measure, pod.dirs)) + sum(
                n for name, n in used_by.items() if name != L.TUNNEL_NAME)
        except Unmeasurable as exc:
            return (f"Pod ephemeral local storage usage cannot be measured against the total "
                    f"limit of containers {total}: {exc}.")
        if used > pod.limit:
            return ("Pod ephemeral local storage usage exceeds the total limit of containers "
                    f"{total}.")
    return ""


def read_evicted(pod_dir: Path) -> str:
    """The eviction message recorded for a pod, or "" when it was not evicted."""
    try:
        return (pod_dir / EVICTED_FILE).read_text()
    except OSError:
        return ""


class EvictionWatch:
    """Measures every pod's limited emptyDirs each ``interval`` seconds; evicts those over."""

    def __init__(self, manager: "PodManager", interval: float) -> None:
        self.manager = manager
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eviction")

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            default = self.manager.policy.DefaultEphemeralStorageLimit
            for record, containers in self.manager.eviction_candidates():
                assert record.plan is not None
                dirs = limited_dirs(record.pod, record.plan.volumes.sources)
                total = pod_limit(record.pod, record.plan.volumes.sources, default)
                # With a pod total, every running container's usage counts toward it.
                limited = limited_containers(
                    record.pod, containers, default, unlimited=total is not None,
                    tunnel_limit=self.manager.policy.TunnelEphemeralStorageLimit)
                if not dirs and not limited and total is None:
                    continue
                try:
                    message = await loop.run_in_executor(self._pool, over_limit, dirs,
                                                         limited, total)
                    if message:
                        await self.manager.evict(record, message)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one pod's trouble must not stop the watch
                    log.exception("eviction check of pod %s failed", record.ref())
