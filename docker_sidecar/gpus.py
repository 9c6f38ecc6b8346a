"""NVIDIA GPUs: discovery through NVML (nvidia-ml-py) and their exclusive allocation to pods.

No Docker calls here. A pod's GPUs are recorded by the caller in the ``io.interlink.gpus`` label
(``format_label``/``parse_label``) and handed back to ``GPUAllocator.restore`` after a restart.

Queueing (``GPU.WhenFull: queue``): ``allocate`` refuses while earlier pods wait, so nobody jumps
the queue; the caller ``enqueue``s a refused pod whose request can ever fit (``exc.fits``), and
after every ``release``/``dequeue`` calls ``next_ready()``, which allocates to the pods at the
head of the queue, strictly first come first served, and returns them to be started. All
methods are short and non-blocking under one lock: safe from threads and from asyncio code.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .labels import GPUS as GPU_LABEL
from .policy import GPUSettings

log = logging.getLogger(__name__)

__all__ = [
    "GPU_LABEL", "GPUAllocator", "GPUDevice", "GPUError", "GPUInventory", "GPUReading",
    "GPURestoreConflict", "GPUUnavailable", "Grant", "Waiting", "accelerators", "discover",
    "format_label", "parse_label", "sample",
]


class GPUError(Exception):
    """GPU.Enabled is on but no usable GPU was found (a startup error)."""


@dataclass(frozen=True)
class GPUDevice:
    index: int  # NVML index of the physical GPU (of the parent for a MIG device)
    uuid: str
    name: str
    memory_total: int  # bytes
    mig_enabled: bool  # physical GPU: MIG mode is on; MIG device: always True
    parent_uuid: str = ""  # set for MIG devices only

    @property
    def is_mig(self) -> bool:
        return bool(self.parent_uuid)


@dataclass
class GPUInventory:
    enabled: bool
    reason: str = ""  # why GPU support is off
    resource_name: str = "nvidia.com/gpu"
    driver_version: str = ""
    devices: list[GPUDevice] = field(default_factory=list)  # every GPU and MIG device seen
    units: list[GPUDevice] = field(default_factory=list)  # the allocatable ones
    skipped: dict[str, str] = field(default_factory=dict)  # uuid -> why it is not allocatable
    _nvml_open: bool = field(default=False, repr=False, compare=False)

    def unit(self, uuid: str) -> GPUDevice | None:
        return next((u for u in self.units if u.uuid == uuid), None)

    def no_gpus_message(self, count: int) -> str:
        """Refusal of a pod asking for ``count`` GPUs while GPU support is off."""
        return (f"requested {count} {self.resource_name}, but this node has no GPUs: "
                f"{self.reason or 'GPU support is off'}")

    def close(self) -> None:
        """Drop the NVML reference ``discover`` kept open for ``sample``."""
        if self._nvml_open:
            self._nvml_open = False
            with contextlib.suppress(Exception):
                import pynvml
                pynvml.nvmlShutdown()


@dataclass(frozen=True)
class GPUReading:
    uuid: str
    name: str
    index: int
    parent_uuid: str
    memory_total: int  # bytes
    memory_used: int | None  # bytes; None: could not be read
    utilization: int | None  # percent; None: not supported (MIG) or could not be read


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --- discovery --------------------------------------------------------------------------------


def discover(settings: GPUSettings | None = None) -> GPUInventory:
    """The GPUs of this machine and which of them pods may get, per ``settings``.

    GPU support off (mode off, no library, no driver, no usable GPU): ``enabled=False`` and a
    ``reason``, logged once. With ``Enabled: on`` that raises ``GPUError`` instead. An enabled
    inventory keeps NVML initialized until ``close()``.
    """
    settings = settings or GPUSettings()
    if settings.Enabled == "off":
        inv = GPUInventory(False, "GPU.Enabled is off", settings.ResourceName)
    else:
        inv = _probe(settings)
    if inv.enabled:
        log.info("GPU support on: %d %s (%s), NVIDIA driver %s", len(inv.units),
                 settings.ResourceName, ", ".join(f"{u.uuid} {u.name}" for u in inv.units),
                 inv.driver_version or "?")
        return inv
    if settings.Enabled == "on":
        raise GPUError(f"GPU.Enabled is on but GPU support is unavailable: {inv.reason}")
    log.info("GPU support off: %s", inv.reason)
    return inv


def _probe(settings: GPUSettings) -> GPUInventory:
    res = settings.ResourceName

    def off(reason: str) -> GPUInventory:
        return GPUInventory(False, reason, res)

    try:
        import pynvml
    except ImportError:
        return off("the nvidia-ml-py package (module pynvml) is not installed")
    if settings.NVMLLibrary:
        try:
            _load_library(pynvml, settings.NVMLLibrary)
        except OSError as exc:
            return off(f"cannot load the NVML library {settings.NVMLLibrary} "
                       f"(GPU.NVMLLibrary): {exc}")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return off("the NVML library libnvidia-ml.so.1 was not found "
                   "(no NVIDIA driver installed on this machine?)")
    except pynvml.NVMLError as exc:
        return off(f"NVML failed to initialize: {exc}")
    except Exception as exc:  # noqa: BLE001 - a broken library must not stop the sidecar
        return off(f"NVML failed to initialize: {exc!r}")
    try:
        inv = _enumerate(pynvml, settings)
    except Exception as exc:  # noqa: BLE001
        inv = off(f"NVML failed to list GPUs: {exc}")
    if inv.enabled:
        inv._nvml_open = True
    else:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return inv


def _load_library(pynvml: Any, path: str) -> None:
    """Load ``path`` as the library pynvml uses (pynvml itself only looks up the soname)."""
    with pynvml.libLoadLock:
        if pynvml.nvmlLib is None:
            pynvml.nvmlLib = ctypes.CDLL(path)
        elif getattr(pynvml.nvmlLib, "_name", path) != path:
            log.warning("GPU.NVMLLibrary %s ignored: NVML already loaded from %s", path,
                        pynvml.nvmlLib._name)


def _enumerate(pynvml: Any, settings: GPUSettings) -> GPUInventory:
    inv = GPUInventory(True, resource_name=settings.ResourceName)
    try:
        inv.driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError:
        pass
    gpus: list[tuple[GPUDevice, list[GPUDevice]]] = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        try:
            mig_on = pynvml.nvmlDeviceGetMigMode(handle)[0] == pynvml.NVML_DEVICE_MIG_ENABLE
        except pynvml.NVMLError:  # not MIG capable
            mig_on = False
        gpu = GPUDevice(i, _text(pynvml.nvmlDeviceGetUUID(handle)),
                        _text(pynvml.nvmlDeviceGetName(handle)), _memory_total(pynvml, handle),
                        mig_on)
        migs = []
        if mig_on:
            for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                try:
                    mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
                except pynvml.NVMLError_NotFound:  # slot without a MIG device
                    continue
                migs.append(GPUDevice(i, _text(pynvml.nvmlDeviceGetUUID(mh)),
                                      _text(pynvml.nvmlDeviceGetName(mh)),
                                      _memory_total(pynvml, mh), True, gpu.uuid))
        gpus.append((gpu, migs))
        inv.devices += [gpu, *migs]
    _choose_units(inv, gpus, settings)
    return inv


def _memory_total(pynvml: Any, handle: Any) -> int:
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    except pynvml.NVMLError:
        return 0


def _choose_units(inv: GPUInventory, gpus: list[tuple[GPUDevice, list[GPUDevice]]],
                  settings: GPUSettings) -> None:
    allow = set(settings.Devices)
    matched: set[str] = set()

    def allowed(*keys: str) -> bool:
        hit = allow.intersection(keys)
        matched.update(hit)
        return not allow or bool(hit)

    for gpu, migs in gpus:
        what = f"GPU {gpu.index} ({gpu.uuid})"
        whole = allowed(gpu.uuid, str(gpu.index))
        if gpu.mig_enabled:
            picked = [m for m in migs if allowed(m.uuid) or whole]
            if not picked and not whole:
                inv.skipped[gpu.uuid] = f"{what} is not in GPU.Devices"
            elif not settings.MIG:
                inv.skipped[gpu.uuid] = (f"{what} is in MIG mode and GPU.MIG is false: it "
                                         "cannot be handed out whole, nor its MIG devices")
            elif not migs:
                inv.skipped[gpu.uuid] = f"{what} is in MIG mode but has no MIG devices"
            else:
                inv.units += picked
                for m in migs:
                    if m not in picked:
                        inv.skipped[m.uuid] = f"MIG device {m.uuid} is not in GPU.Devices"
        elif whole:
            inv.units.append(gpu)
        else:
            inv.skipped[gpu.uuid] = f"{what} is not in GPU.Devices"
    for uuid, why in inv.skipped.items():
        (log.info if "GPU.Devices" in why else log.warning)("GPU %s not used: %s", uuid, why)
    for entry in sorted(allow - matched):
        log.warning("GPU.Devices entry %r matches no GPU or MIG device of this machine", entry)
    if not inv.units:
        inv.enabled = False
        if not gpus:
            inv.reason = "NVML reports no GPUs on this machine"
        else:
            inv.reason = (f"none of the {len(gpus)} GPUs can be used: "
                          + "; ".join(inv.skipped.values()))


def sample(inventory: GPUInventory) -> list[GPUReading]:
    """Memory in use and utilization of each allocatable unit, for metrics; errors read as
    None, never raised."""
    if not inventory.enabled:
        return []
    try:
        import pynvml
        pynvml.nvmlInit()  # nested init: NVML counts references
    except Exception:  # noqa: BLE001
        return [_reading(u, None, None) for u in inventory.units]
    try:
        out = []
        for unit in inventory.units:
            used = util = None
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(unit.uuid)
            except pynvml.NVMLError:
                out.append(_reading(unit, None, None))
                continue
            try:
                used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
            except pynvml.NVMLError:
                pass
            try:
                util = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:
                pass
            out.append(_reading(unit, used, util))
        return out
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _reading(u: GPUDevice, used: int | None, util: int | None) -> GPUReading:
    return GPUReading(u.uuid, u.name, u.index, u.parent_uuid, u.memory_total, used, util)


# --- allocation -------------------------------------------------------------------------------


class GPUUnavailable(Exception):
    """Too few free GPUs; ``str(exc)`` is the message for the pod. ``fits``: the request could
    be met once GPUs are released (it does not ask for more than the node has)."""

    def __init__(self, message: str, *, fits: bool) -> None:
        super().__init__(message)
        self.fits = fits


class GPURestoreConflict(Exception):
    """Two pods' labels claim the same GPU (or one pod's labels disagree)."""


@dataclass(frozen=True)
class Waiting:
    pod_uid: str
    pod_ref: str  # namespace/name
    count: int


@dataclass(frozen=True)
class Grant:
    pod_uid: str
    pod_ref: str
    uuids: list[str]


def format_label(uuids: Iterable[str]) -> str:
    return ",".join(uuids)


def parse_label(value: str | None) -> list[str]:
    return [u.strip() for u in (value or "").split(",") if u.strip()]


class GPUAllocator:
    """Exclusive, pod-level GPU allocation by UUID, in memory."""

    def __init__(self, units: Sequence[str], resource_name: str = "nvidia.com/gpu") -> None:
        self.units = tuple(dict.fromkeys(units))  # allocation order
        self.resource_name = resource_name
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, list[str]]] = {}  # pod uid -> (pod ref, uuids)
        self._owner: dict[str, str] = {}  # uuid -> pod uid
        self._queue: list[Waiting] = []

    @property
    def total(self) -> int:
        return len(self.units)

    def allocate(self, pod_uid: str, pod_ref: str, count: int) -> list[str]:
        """``count`` free GPUs for the pod, or raise ``GPUUnavailable``. A pod that already holds
        GPUs gets the same ones back (a repeated create)."""
        with self._lock:
            return self._allocate(pod_uid, pod_ref, count, queued_ok=False)

    def _allocate(self, pod_uid: str, pod_ref: str, count: int, queued_ok: bool) -> list[str]:
        if pod_uid in self._held:
            held = self._held[pod_uid][1]
            if len(held) != count:
                raise ValueError(f"pod {pod_ref} already holds {len(held)} {self.resource_name}, "
                                 f"not {count}")
            return list(held)
        if count <= 0:
            return []
        res = self.resource_name
        if count > self.total:
            raise GPUUnavailable(f"requested {count} {res}, but this node has only "
                                 f"{self.total}", fits=False)
        free = self._free()
        ahead = [] if queued_ok else self._ahead_of(pod_uid)
        if len(free) < count or ahead:
            message = f"requested {count} {res}, {len(free)} free of {self.total}"
            refs = self._holder_refs()
            if refs:
                message += f" (in use by {', '.join(refs)})"
            if ahead:
                message += f"; {len(ahead)} pod(s) waiting for GPUs before it"
            raise GPUUnavailable(message, fits=True)
        got = free[:count]
        self._take(pod_uid, pod_ref, got)
        self._queue = [w for w in self._queue if w.pod_uid != pod_uid]
        return list(got)

    def release(self, pod_uid: str) -> list[str]:
        """Give back the pod's GPUs (and take it off the queue); returns the UUIDs freed."""
        with self._lock:
            self._queue = [w for w in self._queue if w.pod_uid != pod_uid]
            _, uuids = self._held.pop(pod_uid, ("", []))
            for u in uuids:
                if self._owner.get(u) == pod_uid:
                    del self._owner[u]
            return uuids

    def restore(self, pod_uid: str, pod_ref: str, uuids: Iterable[str]) -> list[str]:
        """Record GPUs a pod already holds (from its Docker labels). Returns the UUIDs that are
        not allocatable units here (GPU gone or no longer allowed): still recorded, so they are
        never handed out twice. Raises ``GPURestoreConflict`` on an overlap; nothing recorded."""
        uuids = list(dict.fromkeys(uuids))
        with self._lock:
            if pod_uid in self._held:
                held = self._held[pod_uid][1]
                if sorted(held) == sorted(uuids):
                    return [u for u in uuids if u not in self.units]
                raise GPURestoreConflict(f"pod {pod_ref} is labelled with GPUs "
                                         f"{format_label(uuids)} and {format_label(held)}")
            clash = {u: self._held[self._owner[u]][0] for u in uuids if u in self._owner}
            if clash:
                raise GPURestoreConflict(
                    f"pod {pod_ref} is labelled with GPUs held by other pods: "
                    + ", ".join(f"{u} ({ref})" for u, ref in clash.items()))
            self._take(pod_uid, pod_ref, uuids)
            return [u for u in uuids if u not in self.units]

    def allocation(self, pod_uid: str) -> list[str]:
        with self._lock:
            return list(self._held.get(pod_uid, ("", []))[1])

    def free_count(self) -> int:
        with self._lock:
            return len(self._free())

    def holders(self) -> dict[str, str]:
        """uuid -> namespace/name of the pod holding it."""
        with self._lock:
            return {u: self._held[p][0] for u, p in self._owner.items()}

    # queue (GPU.WhenFull: queue)

    def enqueue(self, pod_uid: str, pod_ref: str, count: int) -> int:
        """Put the pod at the end of the queue (once); returns its 1-based position. Raises
        ``GPUUnavailable`` (fits=False) for more GPUs than the node has."""
        with self._lock:
            if count > self.total:
                raise GPUUnavailable(f"requested {count} {self.resource_name}, but this node "
                                     f"has only {self.total}", fits=False)
            for n, w in enumerate(self._queue, 1):
                if w.pod_uid == pod_uid:
                    return n
            self._queue.append(Waiting(pod_uid, pod_ref, count))
            return len(self._queue)

    def dequeue(self, pod_uid: str) -> bool:
        with self._lock:
            before = len(self._queue)
            self._queue = [w for w in self._queue if w.pod_uid != pod_uid]
            return len(self._queue) != before

    def position(self, pod_uid: str) -> int | None:
        with self._lock:
            return next((n for n, w in enumerate(self._queue, 1) if w.pod_uid == pod_uid), None)

    def waiting(self) -> list[Waiting]:
        with self._lock:
            return list(self._queue)

    def next_ready(self) -> list[Grant]:
        """Allocate to queued pods from the head while their requests fit; they leave the
        queue. Stops at the first that does not fit (no overtaking)."""
        grants = []
        with self._lock:
            while self._queue:
                w = self._queue[0]
                try:
                    uuids = self._allocate(w.pod_uid, w.pod_ref, w.count, queued_ok=True)
                except GPUUnavailable:
                    break
                grants.append(Grant(w.pod_uid, w.pod_ref, uuids))
        return grants

    # internals, under the lock

    def _free(self) -> list[str]:
        return [u for u in self.units if u not in self._owner]

    def _ahead_of(self, pod_uid: str) -> list[Waiting]:
        ahead = []
        for w in self._queue:
            if w.pod_uid == pod_uid:
                break
            ahead.append(w)
        return ahead

    def _holder_refs(self) -> list[str]:
        refs = [self._held[self._owner[u]][0] for u in self.units if u in self._owner]
        return list(dict.fromkeys(refs))

    def _take(self, pod_uid: str, pod_ref: str, uuids: list[str]) -> None:
        self._held[pod_uid] = (pod_ref, list(uuids))
        for u in uuids:
            self._owner[u] = pod_uid


def accelerators(inventory: GPUInventory, allocator: GPUAllocator | None) -> list[dict[str, str]]:
    """PingResponse ``resources.accelerators``: the free units; [] when GPU support is off."""
    if not inventory.enabled or allocator is None:
        return []
    return [{"resourceType": inventory.resource_name, "available": str(allocator.free_count())}]
