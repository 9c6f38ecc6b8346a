"""GPUs through the real sidecar: NVML discovery against the fake libnvidia-ml.so.1, exclusive
allocation, NVIDIA device requests on the real engine (stub nvidia-container-runtime-hook),
release, queueing, capacity in the ping, and restart safety."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sidecars import Sidecar, start_test_sidecar
from kube import container, create_body, pod, state_of, vk_phase
from fake_gpus import dockerd_can_do_gpus, nvml_env

GPUS = [f"GPU-{uuid.UUID(int=i + 1)}" for i in range(4)]


def gpu_sidecar(tmp: Path, docker_client, gpus: list[str], **gpu_settings) -> Sidecar:
    env, lib = nvml_env(tmp, gpus)
    policy = {"GPU": {"Enabled": "on", "NVMLLibrary": lib, **gpu_settings}}
    return start_test_sidecar(tmp, docker_client, policy=policy, env=env)


@pytest.fixture(scope="module")
def gpu_node(docker_client, tmp_path_factory):
    dockerd_can_do_gpus(docker_client)
    sc = gpu_sidecar(tmp_path_factory.mktemp("gpu"), docker_client, GPUS)
    yield sc
    sc.proc.stop()
    sc.cleanup()


def gpu_pod(name: str, count: int = 1, script: str = "echo gpus=$NVIDIA_VISIBLE_DEVICES; "
            "sleep 3600", **kw) -> dict:
    limits = {"nvidia.com/gpu": str(count)}
    return pod(name, [container("main", script, resources={"limits": limits,
                                                             "requests": limits})],
               grace=0, **kw)


def visible(sc: Sidecar, p: dict) -> list[str]:
    sc.wait(p, lambda s: "gpus=" in sc.logs(p, "main").text)
    return sc.logs(p, "main").text.split("gpus=", 1)[1].split()[0].split(",")


def available(sc: Sidecar) -> str:
    ping = sc.http.request("GET", "/status", content=b"[]").json()
    (acc,) = ping["resources"]["accelerators"]
    assert acc["resourceType"] == "nvidia.com/gpu"
    return acc["available"]


def test_twenty_pods_at_once_on_four_gpus(gpu_node):
    sc = gpu_node
    assert available(sc) == "4"
    pods = [gpu_pod(f"race-{i}") for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda p: sc.create(create_body(p)), pods))
    accepted = [p for p, r in zip(pods, answers) if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert len(accepted) == 4 and len(refused) == 16
    assert all(r.status_code == 422 and "requested 1 nvidia.com/gpu, 0 free of 4 (in use by "
               "tests/race-" in r.text for r in refused)
    seen = [visible(sc, p) for p in accepted]
    assert sorted(u for v in seen for u in v) == sorted(GPUS)  # each pod its own GPU
    assert available(sc) == "0"
    report = sc.http.get("/gpus").json()
    assert {g["uuid"]: g["pod"] for g in report["gpus"]} == {
        v[0]: f"tests/{p['metadata']['name']}" for v, p in zip(seen, accepted)}
    metrics = sc.http.get("/metrics").text
    assert "interlink_sidecar_gpus_free 0.0" in metrics
    assert 'interlink_sidecar_gpu_memory_total_bytes{name="NVIDIA H100 80GB HBM3"' in metrics
    for p in accepted:
        sc.delete(p)
    assert available(sc) == "4"


def test_multi_gpu_pod_splits_its_gpus_between_containers(gpu_node):
    sc = gpu_node
    limits1, limits2 = {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "2"}
    p = pod("split", [
        container("a", "echo gpus=$NVIDIA_VISIBLE_DEVICES; sleep 3600",
                  resources={"limits": limits1}),
        container("b", "echo gpus=$NVIDIA_VISIBLE_DEVICES; sleep 3600",
                  resources={"limits": limits2}),
        container("c", "echo gpus=${NVIDIA_VISIBLE_DEVICES:-none}; sleep 3600")], grace=0)
    sc.run(create_body(p))
    got = {}
    for name in ("a", "b", "c"):
        sc.wait(p, lambda s, n=name: "gpus=" in sc.logs(p, n).text)
        got[name] = sc.logs(p, name).text.split("gpus=", 1)[1].split()[0].split(",")
    # Without a grant: "void", which the NVIDIA runtime reads as no GPU (docs/GPU.md).
    assert len(got["a"]) == 1 and len(got["b"]) == 2 and got["c"] == ["void"]
    assert not set(got["a"]) & set(got["b"])
    assert available(sc) == "1"
    sc.delete(p)


def test_init_container_gpus_do_not_leak(gpu_node):
    sc = gpu_node
    limits = {"nvidia.com/gpu": "1"}
    p = pod("init-gpu", [container("main", "echo main=${NVIDIA_VISIBLE_DEVICES:-none}")],
            init=[container("setup", "echo init=$NVIDIA_VISIBLE_DEVICES",
                            resources={"limits": limits})], grace=0)
    status = sc.run(create_body(p), phase="Succeeded")
    assert state_of(status, "setup", init=True)["state"]["terminated"]["exitCode"] == 0
    assert sc.logs(p, "setup").text.startswith("init=GPU-")
    assert sc.logs(p, "main").text == "main=void\n"
    assert available(sc) == "4"  # finished under restartPolicy Never: given back
    sc.delete(p)


def test_finished_pod_gives_its_gpu_back(gpu_node):
    sc = gpu_node
    p = gpu_pod("short-job", script="echo done", restart="Never")
    sc.run(create_body(p), phase="Succeeded")
    sc.wait(p, lambda s: available(sc) == "4")
    sc.delete(p)


def test_node_without_gpus_refuses_gpu_pods_and_says_why(sidecar):
    r = sidecar.create(create_body(gpu_pod("no-gpus-here")))
    assert r.status_code == 422
    assert "requested 1 nvidia.com/gpu, but this node has no GPUs" in r.text
    assert sidecar.http.request("GET", "/status", content=b"[]").json()[
        "resources"]["accelerators"] == []


def test_queueing_starts_waiting_pods_in_order(docker_client, tmp_path):
    dockerd_can_do_gpus(docker_client)
    sc = gpu_sidecar(tmp_path, docker_client, GPUS[:2], WhenFull="queue")
    try:
        first = [gpu_pod(f"q-{i}") for i in range(2)]
        later = [gpu_pod("q-third"), gpu_pod("q-fourth")]
        for p in first:
            sc.run(create_body(p))
        for p in later:
            assert sc.create(create_body(p)).status_code == 200
        status = sc.wait(later[0], lambda s: state_of(s, "main")["state"].get(
            "waiting", {}).get("reason") == "WaitingForGPU")
        assert "position 1 in line" in state_of(status, "main")["state"]["waiting"]["message"]
        freed = visible(sc, first[1])
        sc.delete(first[1])
        sc.wait_phase(later[0], "Running")
        assert visible(sc, later[0]) == freed  # first come, first served
        assert vk_phase(sc.status(later[1])) == "Pending"
        sc.delete(first[0])
        sc.wait_phase(later[1], "Running")
        for p in later:
            sc.delete(p)
    finally:
        sc.proc.stop()
        sc.cleanup()


def test_assignments_survive_a_sidecar_restart(docker_client, tmp_path):
    dockerd_can_do_gpus(docker_client)
    sc = gpu_sidecar(tmp_path, docker_client, GPUS[:2])
    try:
        a, b = gpu_pod("keep-a"), gpu_pod("keep-b")
        for p in (a, b):
            sc.run(create_body(p))
        before = {g["uuid"]: g["pod"] for g in sc.http.get("/gpus").json()["gpus"]}
        env, lib = nvml_env(tmp_path, GPUS[:2])
        sc.respawn(tmp_path, policy={"GPU": {"Enabled": "on", "NVMLLibrary": lib}}, env=env)
        after = {g["uuid"]: g["pod"] for g in sc.http.get("/gpus").json()["gpus"]}
        assert after == before and available(sc) == "0"
        refused = sc.create(create_body(gpu_pod("keep-c")))
        assert refused.status_code == 422  # held GPUs are not handed out twice
        sc.delete(a)
        assert available(sc) == "1"  # releases still work after the restart
        sc.delete(b)
    finally:
        sc.proc.stop()
        sc.cleanup()
