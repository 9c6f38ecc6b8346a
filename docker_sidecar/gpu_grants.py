"""Which pod holds which GPUs: taken at admission, waited for in line, given back when the pod
can never run again, held again after a restart from the infra container's label.

``gpus.py`` finds the devices and keeps the allocator; this module applies it to pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import labels as L
from .containers import Container
from .gpus import GPUAllocator, GPUInventory, GPURestoreConflict, GPUUnavailable, format_label, \
    parse_label
from .plan import PlanError
from .policy import SidecarPolicy
from .status import Waiting

if TYPE_CHECKING:
    from .pod_worker import PodRecord

log = logging.getLogger("interlink.sidecar.pods")


class GPUGrants:
    def __init__(self, inventory: GPUInventory | None, policy: SidecarPolicy,
                 record_of: Callable[[str], PodRecord | None]) -> None:
        self.inventory = inventory or GPUInventory(enabled=False,
                                                   reason="GPU support is not configured")
        self.allocator = GPUAllocator([u.uuid for u in self.inventory.units],
                                      self.inventory.resource_name) \
            if self.inventory.enabled else None
        self.policy = policy
        self._record_of = record_of

    def reserve(self, record: PodRecord) -> None:
        """Take the pod's GPUs now, or queue it (GPU.WhenFull: queue), or refuse it."""
        assert record.plan is not None
        count = record.plan.gpus
        if not count:
            record.gpu_granted.set()
            return
        if self.allocator is None:
            raise PlanError(self.inventory.no_gpus_message(count))
        try:
            self.allocator.allocate(record.uid, record.ref(), count)
            record.gpu_granted.set()
        except GPUUnavailable as exc:
            if self.policy.GPU.WhenFull != "queue" or not exc.fits:
                raise PlanError(str(exc)) from None
            position = self.allocator.enqueue(record.uid, record.ref(), count)
            log.info("pod %s waits for %d GPUs (position %d)", record.ref(), count, position)

    def release(self, uid: str) -> None:
        """Give a pod's GPUs back and start the queued pods they make room for."""
        if self.allocator is None:
            return
        if self.allocator.release(uid):
            log.info("released the GPUs of pod %s", uid)
        for grant in self.allocator.next_ready():
            waiting = self._record_of(grant.pod_uid)
            if waiting is not None:
                waiting.gpu_granted.set()

    def holds(self, record: PodRecord) -> bool:
        """The pod asked for GPUs and holds some now."""
        return record.plan is not None and bool(record.plan.gpus) and \
            self.allocator is not None and bool(self.allocator.allocation(record.uid))

    async def wait(self, rec: PodRecord) -> None:
        """Until the pod's GPUs are granted; meanwhile its containers say where it is in line."""
        assert rec.plan is not None
        while not rec.gpu_granted.is_set():
            assert self.allocator is not None
            message = (f"waiting for {rec.plan.gpus} {self.inventory.resource_name}: position "
                       f"{self.allocator.position(rec.uid)} in line, "
                       f"{self.allocator.free_count()} free of {self.allocator.total}")
            for c in rec.plan.containers:
                rec.waiting[c.name] = Waiting("WaitingForGPU", message)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(rec.gpu_granted.wait(), 5)
        for c in rec.plan.containers:
            if rec.waiting.get(c.name, Waiting("")).reason == "WaitingForGPU":
                rec.waiting.pop(c.name)

    def label(self, rec: PodRecord) -> dict[str, str]:
        """The pod's GPUs as a label of its infra container, where a restarted sidecar finds
        them ({} for a pod without GPUs)."""
        assert rec.plan is not None
        if rec.plan.gpus and self.allocator is not None:
            return {L.GPUS: format_label(self.allocator.allocation(rec.uid))}
        return {}

    def of_container(self, rec: PodRecord, name: str) -> list[str]:
        """The GPUs of one of the pod's containers."""
        assert rec.plan is not None
        if self.allocator is None:
            return []
        return rec.plan.gpu_assignment(self.allocator.allocation(rec.uid)).get(name, [])

    def restore(self, record: PodRecord, containers: list[Container],
                finished: Callable[[], bool]) -> None:
        """Hold again the GPUs a running pod was given before the restart (its infra label);
        a pod that has not got them yet queues or takes them anew; a ``finished`` one gets
        none."""
        assert record.plan is not None
        if not record.plan.gpus or record.evicted:
            record.gpu_granted.set()
            return
        held = parse_label(held_label(containers))
        if not held:
            try:
                self.reserve(record)
            except PlanError as exc:
                for c in record.plan.containers:
                    record.waiting[c.name] = Waiting("CreateContainerError", str(exc))
            return
        if self.allocator is None or finished():
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


def held_label(containers: list[Container]) -> str:
    """The pod's GPUs as its infra container records them."""
    for c in containers:
        if c.is_infra:
            return c.labels.get(L.GPUS, "")
    return ""
