"""The pod manager: the facade the HTTP layer talks to. It admits pods (create), takes them
down (delete, evict), answers status and log lookups, and rebuilds everything from Docker and
the data root after a restart (recover).

State lives in two places only: Docker (containers and volumes, labelled with the pod's
identity) and the pod's directory (``pod_store.py``: the create request, so a half-created pod
can be finished, and the pod's volume files). Memory holds nothing that cannot be rebuilt
from those. Each pod has its worker (``pod_worker.py``); the workers share a container
runtime (``runtime.py``), an image puller (``images.py``), the GPU grants
(``gpu_grants.py``) and the termination messages (``termination.py``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from interlink_common.identity import check_uid
from interlink_common.wire import CreateStruct, LogStruct, PodStatus, RetrievedPodData

from . import labels as L
from .containers import Container
from .engine import EngineError
from .engine_api import ContainerEngine
from .eviction import EvictionWatch
from .gpu_grants import GPUGrants, held_label
from .gpus import GPUAllocator, GPUInventory
from .images import ImagePuller
from .lifecycle import Supervisors
from .plan import HostPort, NodeFacts, PlanError, PodPlan, plan_pod
from .pod_store import PodStore
from .pod_worker import PodRecord, PodServices, PodWorker, remove_pod
from .policy import SidecarPolicy
from .probes import aclose_client
from .runtime import ContainerRuntime
from .status import not_found_status, phase_of
from .termination import TerminationMessages
from .threads import blocking
from .tracker import Tracker

__all__ = ["LogLookupError", "PodManager", "PodRecord", "blocking"]

log = logging.getLogger("interlink.sidecar.pods")


class LogLookupError(Exception):
    """No container to read logs from; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PodManager:
    def __init__(self, engine: ContainerEngine, tracker: Tracker, policy: SidecarPolicy, *,
                 data_root: Path, node: NodeFacts,
                 gpus: GPUInventory | None = None) -> None:
        self.engine = engine
        self.tracker = tracker
        self.policy = policy
        self.data_root = data_root
        self.node = node
        self.workers: dict[str, PodWorker] = {}
        # Per UID, and kept after a delete: a create waiting on it must not run beside one on
        # a new lock.
        self._locks: dict[str, asyncio.Lock] = {}
        store = PodStore(data_root)
        grants = GPUGrants(gpus, policy, self._record_of)
        runtime = ContainerRuntime(engine, tracker, store, policy, grants, self._record_of)
        self.services = PodServices(
            engine=engine, tracker=tracker, policy=policy, store=store, grants=grants,
            runtime=runtime, images=ImagePuller(engine, policy, runtime.backoff),
            messages=TerminationMessages(engine, store, self._record_of),
            supervisors=Supervisors(), plan=self.plan)
        tracker.add_listener(self._on_container_change)
        self._eviction: EvictionWatch | None = None
        # Pods between their port check and their worker (the create's await in between).
        self._pending_ports: dict[str, PodPlan] = {}

    # --- what the HTTP layer reads --------------------------------------------------------

    @property
    def records(self) -> Mapping[str, PodRecord]:
        """Every pod known here, by UID (read-only)."""
        return MappingProxyType({uid: w.record for uid, w in self.workers.items()})

    @property
    def gpus(self) -> GPUInventory:
        return self.services.grants.inventory

    @property
    def allocator(self) -> GPUAllocator | None:
        return self.services.grants.allocator

    def _record_of(self, uid: str) -> PodRecord | None:
        worker = self.workers.get(uid)
        return worker.record if worker is not None else None

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def plan(self, data: RetrievedPodData, pod_ip: str = "") -> PodPlan:
        return plan_pod(data, self.policy, data_root=self.data_root, node=self.node,
                        pod_ip=pod_ip)

    # --- create -----------------------------------------------------------------------------

    async def create(self, data: RetrievedPodData) -> CreateStruct:
        """Validate synchronously, then bring the pod up in the background."""
        uid = data.pod.uid
        async with self._lock(uid):
            existing = self.workers.get(uid)
            if existing is not None:
                return CreateStruct(PodUID=uid, PodJID=existing.record.job_id)
            plan = self.plan(data)
            # Checked and held with no await in between: two creates of different pods (two
            # locks) must not both take a port.
            self._check_host_ports(plan)
            self._pending_ports[uid] = plan
            record = PodRecord(uid=uid, namespace=plan.namespace, name=plan.name, plan=plan,
                               pod=data.pod.to_wire())
            self.services.grants.reserve(record)
            try:
                await blocking(self.services.store.prepare, data, plan)
            except PlanError:
                self.services.grants.release(uid)
                raise
            finally:
                self._pending_ports.pop(uid, None)
            worker = self.workers[uid] = PodWorker(record, self._lock(uid), self.services)
            worker.start(data)
            log.info("accepted pod %s (uid %s)", record.ref(), uid)
            return CreateStruct(PodUID=uid, PodJID=plan.job_id)

    def _check_host_ports(self, plan: PodPlan) -> None:
        """Refuse a node port that another pod here, or another program, already holds."""
        for binding in plan.infra.ports:
            ip, port, proto = binding.host_ip, binding.host_port, binding.protocol
            others = [(o.ref(), o.plan) for o in self.records.values()] + \
                [(f"{p.namespace}/{p.name}", p) for p in self._pending_ports.values()]
            for ref, other in others:
                if other and any(p.host_port == port and p.protocol == proto
                                 for p in other.infra.ports):
                    raise PlanError(_port_clash(binding, f"pod {ref} on this node"))
            if proto == "tcp":
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((ip or "0.0.0.0", port))
                    except OSError as exc:
                        if exc.errno == errno.EADDRINUSE:
                            raise PlanError(_port_clash(
                                binding, "another program on this node")) from None
                        raise

    # --- delete and evict -------------------------------------------------------------------

    async def delete(self, pod: dict[str, Any]) -> bool:
        """Stop and remove everything of the pod; True when there was something to delete."""
        meta = pod.get("metadata") or {}
        uid = check_uid(meta.get("uid", ""))  # it names a directory that is removed
        s = self.services
        async with self._lock(uid):
            worker = self.workers.pop(uid, None)
            record = worker.record if worker is not None else None
            if worker is not None:
                await worker.stop_sync()
            await s.supervisors.stop(uid)
            grace = self._grace(meta.get("deletionGracePeriodSeconds"))
            if grace is None and record is not None and record.plan is not None:
                grace = record.plan.grace_period
            if grace is None:
                grace = self._grace((pod.get("spec") or {}).get("terminationGracePeriodSeconds"))
            if grace is None:
                grace = self.policy.DefaultGracePeriodSeconds
            containers = await remove_pod(s, uid, grace, record)
            pod_dir = s.store.pod_dir(uid)
            existed = pod_dir.exists()
            await blocking(s.store.remove, pod_dir)
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

    def eviction_candidates(self) -> Iterator[tuple[PodRecord, list[Container]]]:
        """The pods that may be evicted, each with its containers, read as it comes up."""
        for record in list(self.records.values()):
            if record.plan is None or record.evicted:
                continue
            yield record, self.tracker.containers_of(record.uid)

    async def evict(self, record: PodRecord, message: str) -> None:
        """Evict the pod (``eviction.py`` says why), unless it was deleted or evicted
        meanwhile."""
        async with self._lock(record.uid):
            worker = self.workers.get(record.uid)
            if worker is None or worker.record is not record or record.evicted:
                return
            await worker.evict(message)

    # --- status and logs --------------------------------------------------------------------

    def status(self, pod: dict[str, Any]) -> PodStatus:
        """The pod's status from memory: no Docker call."""
        uid = (pod.get("metadata") or {}).get("uid", "")
        worker = self.workers.get(uid)
        if worker is None:
            return not_found_status(pod, "pod is not known to the Docker sidecar on this node "
                                    "(never created here, or already deleted)")
        return worker.status()

    def phases(self) -> dict[str, int]:
        """How many pods are in each phase, as the VK derives it."""
        return dict(Counter(phase_of(self.status({"metadata": {"uid": uid}}))
                            for uid in list(self.workers)))

    def find_log_container(self, req: LogStruct) -> Container:
        """The Docker container whose log a /getLogs request asks for."""
        record = self._record_of(req.PodUID)
        if record is None:
            raise LogLookupError(404, f"pod {req.Namespace}/{req.PodName} (uid {req.PodUID}) "
                                 "is not known on this node")
        # The pod's own containers: the sandbox and the tunnel companion are not among them.
        containers = [c for c in self.tracker.containers_of(req.PodUID)
                      if c.role in (L.ROLE_INIT, L.ROLE_MAIN)]
        names = sorted({c.name for c in containers})
        name = req.ContainerName
        if not name:
            mains = [c for c in containers if c.role == L.ROLE_MAIN]
            if len({c.name for c in mains}) != 1:
                raise LogLookupError(400, f"ContainerName is required: pod {record.ref()} has "
                                     f"containers {', '.join(names) or '(none yet)'}")
            name = mains[0].name
        found = sorted((c for c in containers if c.name == name), key=lambda c: c.attempt)
        if not found:
            raise LogLookupError(404, f"container {name!r} of pod {record.ref()} has no logs "
                                 f"yet or does not exist; containers with logs: "
                                 f"{', '.join(names) or '(none yet)'}")
        if req.Opts.Previous and len(found) > 1:
            return found[-2]
        return found[-1]

    # --- Docker's events --------------------------------------------------------------------

    def _on_container_change(self, cid: str, info: Container | None) -> None:
        if info is None:
            return
        self.services.supervisors.poke(info.pod_uid, info.name)
        worker = self.workers.get(info.pod_uid)
        if worker is not None:
            worker.release_gpus_if_finished()
            if info.role == L.ROLE_TUNNEL and info.has_stopped and worker.record.plan:
                worker.tunnel_stopped()
        self.services.messages.on_change(info)

    # --- restart safety ---------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the view from Docker and the data root; finish half-created pods; never
        stop a running one; remove directories of pods that no longer exist."""
        s = self.services
        await blocking(self.tracker.sync)
        by_pod = self.tracker.by_pod()
        dirs = s.store.pod_dirs()
        resumed: list[tuple[PodWorker, RetrievedPodData]] = []
        for uid in sorted(set(by_pod) | set(dirs)):
            request = s.store.request_path(dirs.get(uid))
            if request.exists():
                try:
                    data = s.store.load_request(uid, request)
                    plan = self.plan(data)
                    # A crash between answering /create and writing the files is possible.
                    await blocking(s.store.materialize, plan)
                except Exception as exc:  # whatever is wrong with one pod, the others recover
                    log.error("pod %s: stored request unusable (%s); reporting only", uid, exc)
                else:
                    record = PodRecord(uid=uid, namespace=plan.namespace, name=plan.name,
                                       plan=plan, pod=data.pod.to_wire(),
                                       evicted=s.store.read_evicted(uid))
                    worker = self.workers[uid] = PodWorker(record, self._lock(uid), s)
                    resumed.append((worker, data))
                    continue
            if uid in by_pod:
                first = by_pod[uid][0]
                self.workers[uid] = PodWorker(PodRecord(
                    uid=uid, namespace=first.labels.get(L.POD_NAMESPACE, ""),
                    name=first.labels.get(L.POD_NAME, ""), plan=None, pod={}),
                    self._lock(uid), s)
                log.warning("pod %s: containers found without their create request; "
                            "reporting their state only", uid)
            else:
                log.info("removing directory of pod %s, which no longer exists", uid)
                await blocking(s.store.remove, dirs[uid])
        # GPUs recorded in labels are held again before any pod may take free ones.
        labelled = [(w, d) for w, d in resumed if held_label(by_pod.get(w.uid, []))]
        for worker, _ in labelled + [x for x in resumed if x not in labelled]:
            s.grants.restore(worker.record, by_pod.get(worker.uid, []), worker.finished)
        for worker, _ in resumed:
            record = worker.record
            assert record.plan is not None
            for cid in await blocking(s.store.repin, record.plan, record.ref(),
                                      by_pod.get(record.uid, [])):
                try:
                    await blocking(self.engine.restart, cid, record.plan.grace_period)
                except EngineError as exc:
                    log.error("pod %s: restarting container %s failed: %s", record.ref(),
                              cid[:12], exc)
        for worker, data in resumed:
            if not worker.record.evicted:  # an evicted pod stays down
                worker.start(data)
        log.info("recovered %d pods", len(self.workers))

    async def start(self) -> None:
        """Follow Docker's events, recover what the last run left, then watch for pods over
        their storage limits."""
        self.tracker.start(asyncio.get_running_loop())
        await self.recover()
        self._eviction = EvictionWatch(self, self.policy.EvictionIntervalSeconds)
        self._eviction.start()

    async def close(self) -> None:
        """Stop the eviction watch and every pod's task and supervisors (containers keep
        running), then stop following Docker's events."""
        if self._eviction is not None:
            await self._eviction.stop()
        await asyncio.gather(*(w.stop_sync() for w in self.workers.values()))
        for uid in list(self.workers):
            await self.services.supervisors.stop(uid)
        await aclose_client()
        self.tracker.stop()


def _port_clash(binding: HostPort, holder: str) -> str:
    """Why a node port cannot be had, and how to pick another."""
    port, proto = binding.host_port, binding.protocol
    if not binding.published:
        return f"hostPort {port}/{proto} is already used by {holder}; pick another hostPort"
    return (f"containerPort {port}/{proto} cannot be published: node port {port} is already "
            f"used by {holder} (Sidecar.PublishPorts publishes each containerPort on the node "
            "port of the same number). Give each user's pod its own port: with JupyterHub, set "
            "c.KubeSpawner.port per user, e.g. in a pre_spawn_hook, or use InterLinkSpawner, which "
            "takes one per server from its port_range; see docs/DEPLOYMENT.md")
