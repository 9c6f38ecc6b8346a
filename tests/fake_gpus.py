"""GPUs where there are none: the fake NVML library (tests/gpu/fake_nvml.c) listing the GPUs a
test names, and the check that dockerd runs NVIDIA device requests (through the stub hook)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from procs import ROOT


def nvml_env(tmp: Path, gpus: list[str]) -> tuple[dict[str, str], str]:
    lib = subprocess.run([str(ROOT / "tests/gpu/build.sh"), str(tmp / "nvml")], check=True,
                         capture_output=True, text=True).stdout.strip()
    config = tmp / "gpus.txt"
    config.write_text("".join(f"gpu {u} 81559 0 0 0 - NVIDIA H100 80GB HBM3\n" for u in gpus))
    return {"FAKE_NVML_CONFIG": str(config)}, lib


def dockerd_can_do_gpus(docker_client, gpu: str = f"GPU-{uuid.UUID(int=1)}") -> None:
    """The engine must know the "nvidia" device driver: a real NVIDIA Container Toolkit, or the
    stub hook that scripts/ensure-docker puts on dockerd's PATH."""
    from docker.types import DeviceRequest

    try:
        docker_client.containers.run("interlink-test/busybox:1", "true", remove=True,
                                     device_requests=[DeviceRequest(
                                         driver="nvidia", device_ids=[gpu],
                                         capabilities=[["gpu"]])])
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"dockerd cannot run NVIDIA device requests ({exc}); start it with "
                    "scripts/ensure-docker, which puts tests/gpu/bin on its PATH")
