"""Pure mapping of plans onto the Docker Engine API's create arguments."""

from __future__ import annotations

from typing import Any

from docker.types import DeviceRequest, Mount

from .floors import Floors, gpu_env
from .plan import ContainerPlan, InfraPlan
from .volumes import MountSpec


def infra_create_args(plan: InfraPlan) -> dict[str, Any]:
    """Arguments for ``APIClient.create_container`` (``host_config`` given separately)."""
    return {
        "image": plan.image,
        "name": plan.docker_name,
        "hostname": None if plan.network_mode == "host" else plan.hostname,
        "labels": plan.labels,
        "ports": sorted({(str(p.container_port), p.protocol) for p in plan.ports}) or None,
        # Whatever the infra image says, it gets no GPU from an nvidia default runtime.
        "environment": gpu_env([], None),
    }


def infra_host_config(plan: InfraPlan, floors: Floors | None = None) -> dict[str, Any]:
    """Keyword arguments for ``APIClient.create_host_config``."""
    return {
        **(floors.host_config() if floors else {}),
        "port_bindings": _port_bindings(plan) or None,
        "extra_hosts": plan.extra_hosts or None,
        "network_mode": plan.network_mode,
        "pid_mode": plan.pid_mode,
        "ipc_mode": plan.ipc_mode,
        # The infra process only holds namespaces; if Docker restarts, bring it back.
        "restart_policy": {"Name": "unless-stopped"},
        "sysctls": plan.sysctls or None,
    }


def _port_bindings(plan: InfraPlan) -> dict[str, list[Any]]:
    bindings: dict[str, list[Any]] = {}
    for p in plan.ports:
        bindings.setdefault(p.key, []).append((p.host_ip, p.host_port) if p.host_ip
                                              else p.host_port)
    return bindings


def container_create_args(plan: ContainerPlan, *, labels: dict[str, str] | None = None,
                          name: str | None = None,
                          gpu_uuids: list[str] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "image": plan.image,
        "name": name or plan.docker_name,
        # NVIDIA_VISIBLE_DEVICES names exactly the container's GPUs, or none.
        "environment": gpu_env(plan.env, gpu_uuids),
        "labels": {**plan.labels, **(labels or {})},
        "working_dir": plan.working_dir,
        "user": plan.user,
        "tty": plan.tty,
        "stdin_open": plan.stdin_open,
    }
    # None keeps the image's value; a list (even empty) replaces it.
    if plan.entrypoint is not None:
        args["entrypoint"] = plan.entrypoint
    if plan.cmd is not None:
        args["command"] = plan.cmd
    return args


def docker_mounts(mounts: list[MountSpec]) -> list[Mount]:
    return [Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only)
            for m in mounts]


def container_host_config(plan: ContainerPlan, infra_name: str, *,
                          gpu_uuids: list[str] | None = None,
                          restart: bool = True,
                          floors: Floors | None = None) -> dict[str, Any]:
    mounts = docker_mounts(plan.mounts)
    config: dict[str, Any] = {
        "network_mode": f"container:{infra_name}",
        "ipc_mode": f"container:{infra_name}",
        "pid_mode": f"container:{infra_name}" if plan.pid_mode == "pod" else plan.pid_mode,
        "mounts": mounts or None,
        "privileged": plan.privileged,
        "cap_add": plan.cap_add or None,
        "cap_drop": plan.cap_drop or None,
        "group_add": plan.group_add or None,
        "read_only": plan.read_only_rootfs,
        "security_opt": list(plan.security_opt) or None,
        "nano_cpus": plan.nano_cpus,
        "mem_limit": plan.mem_limit,
        # No swap beyond the limit, as on a kubelet.
        "memswap_limit": plan.mem_limit,
        "mem_reservation": plan.mem_reservation,
        "cpu_shares": plan.cpu_shares,
        "restart_policy": plan.restart_policy if restart else None,
    }
    if floors is not None:
        config.update(floors.host_config())
    if gpu_uuids:
        config["device_requests"] = [DeviceRequest(driver="nvidia", device_ids=list(gpu_uuids),
                                                   capabilities=[["gpu"]])]
    return {k: v for k, v in config.items() if v is not None}
