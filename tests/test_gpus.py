"""GPUs: discovery through the real nvidia-ml-py bindings against a fake libnvidia-ml.so.1
(tests/gpu/fake_nvml.c), allocation, and a real Docker Engine starting an NVIDIA device request.

pynvml keeps the first library it loads for the life of the process, so every discovery scenario
runs in a fresh Python subprocess with its own environment.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from docker_sidecar.gpus import (GPUAllocator, GPUInventory, GPURestoreConflict, GPUUnavailable,
                                 Grant, accelerators, format_label, parse_label)
from docker_sidecar.policy import GPUSettings, SidecarPolicy
from procs import ROOT, env_for_children

GIB = 1024 ** 3


@pytest.fixture(scope="session")
def fake_nvml(tmp_path_factory) -> Path:
    """Path of the built fake libnvidia-ml.so.1."""
    out = tmp_path_factory.mktemp("fake-nvml")
    done = subprocess.run([str(ROOT / "tests" / "gpu" / "build.sh"), str(out)], check=True,
                          capture_output=True, text=True)
    lib = Path(done.stdout.strip())
    assert lib == out / "libnvidia-ml.so.1" and lib.is_file()
    return lib


def gpu(n: int, *, mig: str = "-", migs: list[str] = (), name: str = "NVIDIA H100 80GB HBM3",
        mem: int = 81559, used: int = 0, util: int = 0) -> dict[str, Any]:
    return {"uuid": f"GPU-{n:08x}-aaaa-bbbb-cccc-0000000000{n:02d}", "name": name, "mem": mem,
            "used": used, "util": util, "mig": mig, "migs": list(migs)}


def write_nvml_config(path: Path, gpus: list[dict[str, Any]]) -> Path:
    lines = ["# written by tests/test_gpus.py"]
    for g in gpus:
        lines.append(f"gpu {g['uuid']} {g['mem']} {g['used']} {g['util']} 3 {g['mig']} {g['name']}")
        for m in g["migs"]:
            lines.append(f"mig {m} 9856 512 NVIDIA A100-SXM4-80GB MIG 1g.10gb")
    path.write_text("\n".join(lines) + "\n")
    return path


_PROBE = r"""
import ctypes, dataclasses, json, logging, os, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(levelname)s %(message)s")
if os.environ.get("PRELOAD"):
    ctypes.CDLL(os.environ["PRELOAD"], mode=ctypes.RTLD_GLOBAL)
from docker_sidecar.gpus import GPUError, discover, sample
from docker_sidecar.policy import GPUSettings
try:
    inv = discover(GPUSettings.model_validate(json.loads(os.environ["GPU_SETTINGS"])))
except GPUError as exc:
    print(json.dumps({"error": str(exc)})); sys.exit(0)
out = dataclasses.asdict(inv)
out.pop("_nvml_open")
out["readings"] = [dataclasses.asdict(r) for r in sample(inv)]
inv.close()
print(json.dumps(out))
"""


def probe(tmp_path: Path, gpus: list[dict[str, Any]] | None, *, lib: Path | None = None,
          preload: Path | None = None, fail_init: bool = False,
          **settings: Any) -> tuple[dict[str, Any], list[str]]:
    """Run discover() + sample() in a fresh interpreter; returns its result and its log lines.
    ``lib``: found through LD_LIBRARY_PATH, as pynvml looks it up on a GPU machine."""
    env = env_for_children(GPU_SETTINGS=json.dumps(settings))
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("FAKE_NVML_FAIL_INIT", None)
    if gpus is not None:
        env["FAKE_NVML_CONFIG"] = str(write_nvml_config(tmp_path / "nvml.conf", gpus))
    if lib is not None:
        env["LD_LIBRARY_PATH"] = str(lib.parent)
    if preload is not None:
        env["PRELOAD"] = str(preload)
    if fail_init:
        env["FAKE_NVML_FAIL_INIT"] = "1"
    done = subprocess.run([sys.executable, "-c", _PROBE], check=False, env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    logs = [line[4:] for line in done.stderr.splitlines() if line.startswith("LOG ")]
    return json.loads(done.stdout.splitlines()[-1]), logs


def uuids(devices: list[dict[str, Any]]) -> list[str]:
    return [d["uuid"] for d in devices]


# --- discovery ----------------------------------------------------------------------------------


def test_four_gpus_are_found_through_nvml_with_their_readings(tmp_path, fake_nvml):
    gpus = [gpu(i, used=1024 * i, util=10 * i) for i in range(4)]
    inv, logs = probe(tmp_path, gpus, lib=fake_nvml)
    assert inv["enabled"] and inv["reason"] == ""
    assert inv["driver_version"] == "999.99.99-fake"
    assert uuids(inv["units"]) == uuids(inv["devices"]) == [g["uuid"] for g in gpus]
    first = inv["units"][0]
    assert first == {"index": 0, "uuid": gpus[0]["uuid"], "name": "NVIDIA H100 80GB HBM3",
                     "memory_total": 81559 * 1024 * 1024, "mig_enabled": False,
                     "parent_uuid": ""}
    assert [u["index"] for u in inv["units"]] == [0, 1, 2, 3]
    assert [(r["uuid"], r["memory_used"], r["utilization"]) for r in inv["readings"]] == [
        (g["uuid"], i * GIB, 10 * i) for i, g in enumerate(gpus)]
    assert inv["skipped"] == {}
    assert len(logs) == 1 and logs[0].startswith("INFO GPU support on: 4 nvidia.com/gpu")


def test_a_library_loaded_before_the_bindings_is_found_by_its_soname(tmp_path, fake_nvml):
    inv, _ = probe(tmp_path, [gpu(0), gpu(1)], preload=fake_nvml)
    assert inv["enabled"] and len(inv["units"]) == 2


def test_an_explicit_library_path_is_used(tmp_path, fake_nvml):
    inv, _ = probe(tmp_path, [gpu(0)], NVMLLibrary=str(fake_nvml))
    assert inv["enabled"] and uuids(inv["units"]) == [gpu(0)["uuid"]]


def test_allow_list_by_uuid_and_by_index(tmp_path, fake_nvml):
    gpus = [gpu(i) for i in range(4)]
    inv, logs = probe(tmp_path, gpus, lib=fake_nvml,
                      Devices=[gpus[3]["uuid"], "1", "GPU-nonexistent"])
    assert uuids(inv["units"]) == [gpus[1]["uuid"], gpus[3]["uuid"]]
    assert len(inv["devices"]) == 4
    assert set(inv["skipped"]) == {gpus[0]["uuid"], gpus[2]["uuid"]}
    assert "not in GPU.Devices" in inv["skipped"][gpus[0]["uuid"]]
    assert any("WARNING" in line and "'GPU-nonexistent' matches no GPU" in line for line in logs)


def test_an_allow_list_that_matches_nothing_turns_gpu_support_off(tmp_path, fake_nvml):
    inv, logs = probe(tmp_path, [gpu(0), gpu(1)], lib=fake_nvml, Devices=["7"])
    assert not inv["enabled"] and inv["units"] == []
    assert inv["reason"].startswith("none of the 2 GPUs can be used: GPU 0 (")
    assert logs[-1] == f"INFO GPU support off: {inv['reason']}"
    err, _ = probe(tmp_path, [gpu(0)], lib=fake_nvml, Devices=["7"], Enabled="on")
    assert err["error"].startswith("GPU.Enabled is on but GPU support is unavailable: none of")


MIG_A = "MIG-11111111-2222-3333-4444-555555555555"
MIG_B = "MIG-66666666-7777-8888-9999-000000000000"


def test_mig_devices_are_the_units_when_mig_is_allowed(tmp_path, fake_nvml):
    gpus = [gpu(0, mig="0"), gpu(1, mig="1", migs=[MIG_A, MIG_B], name="NVIDIA A100-SXM4-80GB")]
    inv, _ = probe(tmp_path, gpus, lib=fake_nvml, MIG=True)
    assert inv["enabled"]
    assert uuids(inv["units"]) == [gpus[0]["uuid"], MIG_A, MIG_B]
    mig = inv["units"][1]
    assert mig == {"index": 1, "uuid": MIG_A, "name": "NVIDIA A100-SXM4-80GB MIG 1g.10gb",
                   "memory_total": 9856 * 1024 * 1024, "mig_enabled": True,
                   "parent_uuid": gpus[1]["uuid"]}
    assert [d["mig_enabled"] for d in inv["devices"]] == [False, True, True, True]
    # MIG devices report memory but no utilization
    by_uuid = {r["uuid"]: r for r in inv["readings"]}
    assert by_uuid[MIG_B]["memory_used"] == 512 * 1024 * 1024
    assert by_uuid[MIG_B]["utilization"] is None
    assert by_uuid[gpus[0]["uuid"]]["utilization"] == 0


def test_one_mig_device_can_be_allowed_by_its_uuid(tmp_path, fake_nvml):
    gpus = [gpu(0), gpu(1, mig="1", migs=[MIG_A, MIG_B])]
    inv, _ = probe(tmp_path, gpus, lib=fake_nvml, MIG=True, Devices=[MIG_B])
    assert uuids(inv["units"]) == [MIG_B]
    assert set(inv["skipped"]) == {gpus[0]["uuid"], MIG_A}


def test_a_gpu_in_mig_mode_is_skipped_when_mig_is_not_allowed(tmp_path, fake_nvml):
    gpus = [gpu(0), gpu(1, mig="1", migs=[MIG_A, MIG_B])]
    inv, logs = probe(tmp_path, gpus, lib=fake_nvml)
    assert uuids(inv["units"]) == [gpus[0]["uuid"]]
    why = inv["skipped"][gpus[1]["uuid"]]
    assert "MIG mode" in why and "GPU.MIG is false" in why
    assert f"WARNING GPU {gpus[1]['uuid']} not used: {why}" in logs


def test_a_gpu_in_mig_mode_without_mig_devices_is_skipped(tmp_path, fake_nvml):
    gpus = [gpu(0, mig="1")]
    inv, _ = probe(tmp_path, gpus, lib=fake_nvml, MIG=True)
    assert not inv["enabled"]
    assert "in MIG mode but has no MIG devices" in inv["reason"]


def test_a_failing_init_turns_gpu_support_off_with_nvmls_error(tmp_path, fake_nvml):
    inv, logs = probe(tmp_path, [gpu(0)], lib=fake_nvml, fail_init=True)
    assert not inv["enabled"] and inv["units"] == [] and inv["readings"] == []
    assert inv["reason"] == "NVML failed to initialize: Driver Not Loaded"
    assert logs == ["INFO GPU support off: NVML failed to initialize: Driver Not Loaded"]
    err, _ = probe(tmp_path, [gpu(0)], lib=fake_nvml, fail_init=True, Enabled="on")
    assert err == {"error": "GPU.Enabled is on but GPU support is unavailable: "
                            "NVML failed to initialize: Driver Not Loaded"}


def test_a_missing_library_turns_gpu_support_off(tmp_path):
    inv, logs = probe(tmp_path, None, NVMLLibrary=str(tmp_path / "libnvidia-ml.so.1"))
    assert not inv["enabled"]
    assert inv["reason"].startswith(f"cannot load the NVML library {tmp_path}/libnvidia-ml.so.1")
    assert len(logs) == 1 and logs[0].startswith("INFO GPU support off: cannot load")


def test_no_library_on_the_system_turns_gpu_support_off(tmp_path):
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        pytest.skip("this machine has a real libnvidia-ml.so.1")
    except OSError:
        pass
    inv, logs = probe(tmp_path, None)
    assert not inv["enabled"]
    assert inv["reason"] == ("the NVML library libnvidia-ml.so.1 was not found "
                             "(no NVIDIA driver installed on this machine?)")
    assert logs == [f"INFO GPU support off: {inv['reason']}"]


def test_no_gpus_and_off_mode(tmp_path, fake_nvml):
    inv, _ = probe(tmp_path, [], lib=fake_nvml)
    assert not inv["enabled"] and inv["reason"] == "NVML reports no GPUs on this machine"
    inv, logs = probe(tmp_path, [gpu(0)], lib=fake_nvml, fail_init=True, Enabled="off")
    assert not inv["enabled"] and inv["reason"] == "GPU.Enabled is off"
    assert logs == ["INFO GPU support off: GPU.Enabled is off"]


def test_the_message_for_a_pod_on_a_node_without_gpus():
    inv = GPUInventory(False, "NVML failed to initialize: Driver Not Loaded")
    assert inv.no_gpus_message(2) == ("requested 2 nvidia.com/gpu, but this node has no GPUs: "
                                      "NVML failed to initialize: Driver Not Loaded")


# --- settings -----------------------------------------------------------------------------------


def test_gpu_settings_defaults_and_yaml_spellings():
    assert SidecarPolicy().GPU == GPUSettings(Enabled="auto", ResourceName="nvidia.com/gpu",
                                              Devices=[], MIG=False, WhenFull="refuse",
                                              NVMLLibrary="")
    parsed = SidecarPolicy.model_validate(yaml.safe_load(
        "GPU: {Enabled: on, Devices: [0, GPU-abc], MIG: true, WhenFull: queue}")).GPU
    assert (parsed.Enabled, parsed.Devices, parsed.MIG, parsed.WhenFull) == (
        "on", ["0", "GPU-abc"], True, "queue")
    assert SidecarPolicy.model_validate(yaml.safe_load("GPU: {Enabled: off}")).GPU.Enabled == "off"
    assert GPUSettings(Devices="0, 2").Devices == ["0", "2"]
    for bad in ({"Enabled": "maybe"}, {"WhenFull": "wait"}, {"Devics": ["0"]}):
        with pytest.raises(ValidationError):
            GPUSettings.model_validate(bad)


# --- allocation ---------------------------------------------------------------------------------

UNITS = ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]


def test_allocation_is_exclusive_and_a_refusal_names_the_holders():
    alloc = GPUAllocator(UNITS)
    assert alloc.allocate("uid-alice", "jhub/jupyter-alice", 2) == ["GPU-a", "GPU-b"]
    assert alloc.allocate("uid-bob", "jhub/jupyter-bob", 1) == ["GPU-c"]
    assert alloc.free_count() == 1
    with pytest.raises(GPUUnavailable) as exc:
        alloc.allocate("uid-carol", "jhub/jupyter-carol", 2)
    assert str(exc.value) == ("requested 2 nvidia.com/gpu, 1 free of 4 "
                              "(in use by jhub/jupyter-alice, jhub/jupyter-bob)")
    assert exc.value.fits
    assert alloc.holders() == {"GPU-a": "jhub/jupyter-alice", "GPU-b": "jhub/jupyter-alice",
                               "GPU-c": "jhub/jupyter-bob"}
    # a repeated create gets the same GPUs back
    assert alloc.allocate("uid-alice", "jhub/jupyter-alice", 2) == ["GPU-a", "GPU-b"]
    assert alloc.allocate("uid-dave", "jhub/dave", 0) == []
    with pytest.raises(GPUUnavailable) as exc:
        alloc.allocate("uid-eve", "jhub/eve", 5)
    assert str(exc.value) == "requested 5 nvidia.com/gpu, but this node has only 4"
    assert not exc.value.fits


def test_release_gives_the_gpus_back():
    alloc = GPUAllocator(UNITS, resource_name="example.com/gpu")
    alloc.allocate("u1", "ns/one", 4)
    with pytest.raises(GPUUnavailable, match=r"^requested 1 example.com/gpu, 0 free of 4 "
                                             r"\(in use by ns/one\)$"):
        alloc.allocate("u2", "ns/two", 1)
    assert alloc.release("u1") == UNITS
    assert alloc.release("u1") == []
    assert alloc.free_count() == 4 and alloc.holders() == {}
    assert alloc.allocate("u2", "ns/two", 1) == ["GPU-a"]
    assert alloc.allocation("u2") == ["GPU-a"]


def test_twenty_concurrent_allocations_on_four_gpus():
    alloc = GPUAllocator(UNITS)
    start = threading.Barrier(20)
    got: list[list[str]] = []
    refused: list[str] = []

    def one(n: int) -> None:
        start.wait()
        try:
            got.append(alloc.allocate(f"uid-{n}", f"ns/pod-{n}", 1))
        except GPUUnavailable as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and len(refused) == 16
    assert sorted(u for g in got for u in g) == UNITS
    assert all(m.startswith("requested 1 nvidia.com/gpu, 0 free of 4 (in use by ns/pod-")
               for m in refused)
    assert alloc.free_count() == 0


def test_restore_rebuilds_allocations_and_reports_overlaps():
    alloc = GPUAllocator(UNITS)
    assert alloc.restore("u1", "ns/one", parse_label("GPU-b,GPU-d")) == []
    assert alloc.restore("u1", "ns/one", ["GPU-d", "GPU-b"]) == []  # its other containers
    assert alloc.restore("u2", "ns/two", ["GPU-gone"]) == ["GPU-gone"]  # no longer a unit
    with pytest.raises(GPURestoreConflict, match=r"ns/three .* GPU-d \(ns/one\)"):
        alloc.restore("u3", "ns/three", ["GPU-a", "GPU-d"])
    with pytest.raises(GPURestoreConflict, match="ns/one is labelled with GPUs GPU-a and"):
        alloc.restore("u1", "ns/one", ["GPU-a"])
    assert alloc.holders() == {"GPU-b": "ns/one", "GPU-d": "ns/one", "GPU-gone": "ns/two"}
    assert alloc.free_count() == 2
    assert alloc.allocate("u4", "ns/four", 2) == ["GPU-a", "GPU-c"]


def test_the_queue_is_first_come_first_served():
    alloc = GPUAllocator(UNITS)
    alloc.allocate("u-full", "ns/full", 3)
    alloc.allocate("u-one", "ns/one", 1)
    assert alloc.next_ready() == []
    for n, (uid, count) in enumerate([("u-a", 2), ("u-b", 1), ("u-c", 1)], 1):
        with pytest.raises(GPUUnavailable):
            alloc.allocate(uid, f"ns/{uid}", count)
        assert alloc.enqueue(uid, f"ns/{uid}", count) == n
    assert alloc.enqueue("u-b", "ns/u-b", 1) == 2  # once
    assert alloc.position("u-c") == 3 and alloc.position("u-full") is None
    with pytest.raises(GPUUnavailable, match="this node has only 4"):
        alloc.enqueue("u-big", "ns/big", 5)

    alloc.release("u-one")  # 1 free: u-a (2) is first and must not be overtaken by u-b
    assert alloc.next_ready() == []
    with pytest.raises(GPUUnavailable) as exc:  # nor by a newcomer
        alloc.allocate("u-new", "ns/new", 1)
    assert str(exc.value) == ("requested 1 nvidia.com/gpu, 1 free of 4 (in use by ns/full); "
                              "3 pod(s) waiting for GPUs before it")

    alloc.release("u-full")  # 4 free: a(2), b(1), c(1) all fit, in order
    assert alloc.next_ready() == [Grant("u-a", "ns/u-a", ["GPU-a", "GPU-b"]),
                                  Grant("u-b", "ns/u-b", ["GPU-c"]),
                                  Grant("u-c", "ns/u-c", ["GPU-d"])]
    assert alloc.waiting() == [] and alloc.free_count() == 0


def test_a_deleted_pod_leaves_the_queue():
    alloc = GPUAllocator(UNITS[:1])
    alloc.allocate("u0", "ns/zero", 1)
    alloc.enqueue("u1", "ns/one", 1)
    alloc.enqueue("u2", "ns/two", 1)
    assert alloc.dequeue("u1") and not alloc.dequeue("u1")
    alloc.release("u0")
    assert alloc.next_ready() == [Grant("u2", "ns/two", ["GPU-a"])]
    alloc.enqueue("u3", "ns/three", 1)
    alloc.release("u3")  # release also dequeues
    assert alloc.waiting() == []


def test_the_head_of_the_queue_may_allocate_itself():
    alloc = GPUAllocator(UNITS[:1])
    alloc.allocate("u0", "ns/zero", 1)
    alloc.enqueue("u1", "ns/one", 1)
    alloc.release("u0")
    assert alloc.allocate("u1", "ns/one", 1) == ["GPU-a"]
    assert alloc.waiting() == []


def test_capacity_for_ping_and_labels():
    alloc = GPUAllocator(UNITS)
    alloc.allocate("u1", "ns/one", 3)
    inv = GPUInventory(True, resource_name="nvidia.com/gpu")
    assert accelerators(inv, alloc) == [{"resourceType": "nvidia.com/gpu", "available": "1"}]
    assert accelerators(GPUInventory(False, "off"), None) == []
    assert format_label(["GPU-a", "MIG-b"]) == "GPU-a,MIG-b"
    assert parse_label("GPU-a, MIG-b") == ["GPU-a", "MIG-b"]
    assert parse_label(None) == parse_label("") == []


# --- Docker -------------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_container_with_an_nvidia_device_request_sees_its_gpus(docker_client):
    """dockerd registers its "nvidia" device driver only when nvidia-container-runtime-hook is on
    its PATH; scripts/ensure-docker puts the stub tests/gpu/bin/ there on machines without the
    NVIDIA Container Toolkit."""
    from docker.errors import APIError
    from docker.types import DeviceRequest

    gpu_uuid = f"GPU-{uuid.uuid4()}"
    name = f"il-gpu-test-{uuid.uuid4().hex[:8]}"
    try:
        container = docker_client.containers.create(
            "interlink-test/busybox:1", ["sh", "-c", "env"], name=name, network_mode="none",
            labels={"io.interlink.managed": "gpu-test"},
            device_requests=[DeviceRequest(driver="nvidia", device_ids=[gpu_uuid],
                                           capabilities=[["gpu"]])])
        try:
            container.start()
        except APIError as exc:
            if "could not select device driver" not in str(exc):
                raise
            message = (f"this dockerd has no nvidia device driver ({exc.explanation}); start it "
                       f"with {ROOT}/tests/gpu/bin on its PATH (scripts/ensure-docker)")
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        assert container.wait(timeout=60)["StatusCode"] == 0
        env = container.logs().decode().splitlines()
        assert f"NVIDIA_VISIBLE_DEVICES={gpu_uuid}" in env
        container.reload()
        requests = container.attrs["HostConfig"]["DeviceRequests"]
        assert requests[0]["Driver"] == "nvidia" and requests[0]["DeviceIDs"] == [gpu_uuid]
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": name}):
            c.remove(force=True)
