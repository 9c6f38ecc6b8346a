"""Resource floors every container gets, whatever its pod asks for: a pids limit, log rotation,
and GPU visibility pinned to the container's own grant.

Pure: the policy in, Docker create arguments out. ``docker_config`` merges them last, so no
pod field can undo them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docker.types import LogConfig

from .policy import SidecarPolicy
from .quantity import byte_count

# The NVIDIA Container Toolkit hands a container the GPUs this variable names, from the image's
# ENV or the container's env alike, whenever the nvidia runtime runs it (Docker's default
# runtime on many GPU nodes). "void" means none, as the NVIDIA device plugin sets it.
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
NO_GPUS = "void"


@dataclass(frozen=True)
class Floors:
    pids_limit: int  # 0: unlimited
    log_max_bytes: int
    log_max_files: int

    @classmethod
    def from_policy(cls, policy: SidecarPolicy) -> "Floors":
        return cls(pids_limit=policy.PidsLimit, log_max_bytes=byte_count(policy.LogMaxSize),
                   log_max_files=policy.LogMaxFiles)

    def host_config(self) -> dict[str, Any]:
        """``create_host_config`` arguments: the pids cgroup limit and json-file rotation.

        json-file (not the daemon's default driver, which may be one ``docker logs`` cannot
        read) keeps ``/getLogs`` working; Docker reads the rotated files for tail and since,
        and follows across a rotation. Files stay uncompressed so that reading them is cheap.
        """
        config: dict[str, Any] = {"log_config": LogConfig(
            type=LogConfig.types.JSON,
            config={"max-size": str(self.log_max_bytes), "max-file": str(self.log_max_files)})}
        if self.pids_limit:
            config["pids_limit"] = self.pids_limit
        return config


def gpu_env(env: Sequence[tuple[str, str]], gpu_uuids: Sequence[str] | None) -> list[str]:
    """The container's environment with ``NVIDIA_VISIBLE_DEVICES`` pinned to its grant: its GPU
    UUIDs, or ``void`` without a grant. Any value from the pod is dropped and ours goes last,
    overriding the image's ENV as well (Docker's container env wins over the image's)."""
    out = [f"{k}={v}" for k, v in env if k != VISIBLE_DEVICES]
    out.append(f"{VISIBLE_DEVICES}={','.join(gpu_uuids) if gpu_uuids else NO_GPUS}")
    return out
