"""GPUs stay exclusive whatever the image or the pod's env says. A container sees the GPUs the
NVIDIA runtime hook is told in ``NVIDIA_VISIBLE_DEVICES`` (its process env is the OCI spec's
env the hook reads): without a grant that is ``void``, even when the image and the pod set
``all``; with a grant, exactly its UUIDs. Evicting a GPU pod gives its GPUs back."""

from __future__ import annotations

import io
import subprocess
import uuid
from typing import Any

import pytest
from kube import container, create_body, pod, state_of

from procs import ROOT

GPUS = [f"GPU-{uuid.UUID(int=i + 0x100)}" for i in range(2)]
GREEDY_IMAGE = "interlink-test/nvidia-all:1"
ALL = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]
SHOW = "echo gpus=$NVIDIA_VISIBLE_DEVICES; exec sleep 3600"


@pytest.fixture(scope="module")
def gpu_node(sidecar_factory, docker_client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-exclusive")
    lib = subprocess.run([str(ROOT / "tests/gpu/build.sh"), str(tmp / "nvml")], check=True,
                         capture_output=True, text=True).stdout.strip()
    config = tmp / "gpus.txt"
    config.write_text("".join(f"gpu {u} 81559 0 0 0 - NVIDIA H100 80GB HBM3\n" for u in GPUS))
    # An image that asks the nvidia runtime for every GPU, as a hostile tenant's would.
    docker_client.images.build(fileobj=io.BytesIO(
        b"FROM interlink-test/busybox:1\nENV NVIDIA_VISIBLE_DEVICES=all\n"), tag=GREEDY_IMAGE,
        rm=True)
    return sidecar_factory(policy={"GPU": {"Enabled": "on", "NVMLLibrary": lib},
                                   "EvictionIntervalSeconds": 0.5},
                           env={"FAKE_NVML_CONFIG": str(config)})


def visible(sc: Any, p: dict[str, Any], name: str = "main") -> str:
    sc.wait(p, lambda s: "gpus=" in sc.logs(p, name).text)
    return sc.logs(p, name).text.split("gpus=", 1)[1].split()[0]


def env_entries(sc: Any, p: dict[str, Any], name: str = "main") -> list[str]:
    env = sc.container(p, name).attrs["Config"]["Env"]
    return [e for e in env if e.startswith("NVIDIA_VISIBLE_DEVICES=")]


def available(sc: Any) -> str:
    (acc,) = sc.http.request("GET", "/status", content=b"[]").json()["resources"][
        "accelerators"]
    return acc["available"]


def test_a_container_without_a_grant_sees_no_gpu_whatever_image_and_env_say(gpu_node):
    p = pod("greedy", [container("main", SHOW, image=GREEDY_IMAGE, env=ALL)], grace=0)
    gpu_node.run(create_body(p))
    assert visible(gpu_node, p) == "void"
    assert env_entries(gpu_node, p) == ["NVIDIA_VISIBLE_DEVICES=void"]
    infra = gpu_node.docker.containers.get(f"il_tests_greedy_POD_{p['metadata']['uid']}")
    assert "NVIDIA_VISIBLE_DEVICES=void" in infra.attrs["Config"]["Env"]
    assert available(gpu_node) == "2"
    gpu_node.delete(p)


def test_a_container_with_a_grant_sees_exactly_its_gpu(gpu_node):
    limits = {"nvidia.com/gpu": "1"}
    p = pod("granted", [
        container("main", SHOW, image=GREEDY_IMAGE, env=ALL,
                  resources={"limits": limits, "requests": limits}),
        container("sidekick", SHOW, image=GREEDY_IMAGE, env=ALL)], grace=0)
    gpu_node.run(create_body(p))
    granted = gpu_node.container(p, "main").attrs["Config"]["Labels"]["io.interlink.gpus"]
    assert granted in GPUS
    assert visible(gpu_node, p) == granted
    assert env_entries(gpu_node, p) == [f"NVIDIA_VISIBLE_DEVICES={granted}"]
    (request,) = gpu_node.container(p, "main").attrs["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == [granted]
    # Its neighbour in the same pod, without a grant, sees none.
    assert visible(gpu_node, p, "sidekick") == "void"
    gpu_node.delete(p)


def test_an_evicted_gpu_pod_gives_its_gpus_back(gpu_node):
    limits = {"nvidia.com/gpu": "2"}
    script = "dd if=/dev/zero of=/scratch/fill bs=64k count=64 2>/dev/null; exec sleep 3600"
    p = pod("gpu-hoarder", [container("main", script, volumeMounts=[
        {"name": "scratch", "mountPath": "/scratch"}],
        resources={"limits": limits, "requests": limits})], restart="Always", grace=0,
        volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}])
    assert gpu_node.create(create_body(p)).status_code == 200
    status = gpu_node.wait(p, lambda s: state_of(s, "main")["state"].get(
        "terminated", {}).get("reason") == "Evicted", timeout=60)
    assert "scratch" in state_of(status, "main")["state"]["terminated"]["message"]
    assert available(gpu_node) == "2"
    # The freed GPUs can be taken by the next pod.
    q = pod("next", [container("main", SHOW, resources={"limits": limits,
                                                         "requests": limits})], grace=0)
    gpu_node.run(create_body(q))
    assert sorted(visible(gpu_node, q).split(",")) == sorted(GPUS)
    gpu_node.delete(p)
    gpu_node.delete(q)
