"""Pod workers and the pod manager on the in-memory engine (tests/fake_engine.py): init order
and failures, restart policies and back-off, delete with grace and preStop, recovery from
labels, GPU release, eviction, and the event stream the tracker follows. No Docker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fake_engine import Exit, FakeEngine, Run, StartError
from kube import container, create_body, pod, state_of, vk_phase

from docker_sidecar import host_fs
from docker_sidecar import labels as L
from docker_sidecar.gpus import GPUDevice, GPUInventory
from docker_sidecar.plan import NodeFacts, PlanError
from docker_sidecar.pods import LogLookupError, PodManager
from docker_sidecar.policy import SidecarPolicy
from docker_sidecar.tracker import Tracker
from interlink_common.wire import LogStruct, RetrievedPodData

NODE = NodeFacts(cpus=4, memory=8 << 30, name="node", host_ip="10.0.0.1")
IMAGE = "interlink-test/busybox:1"


class Node:
    """A pod manager on a fake engine and a data root, as the sidecar runs it."""

    def __init__(self, engine: FakeEngine, root: Path, gpus: GPUInventory | None = None,
                 **policy: Any) -> None:
        self.engine = engine
        self.root = root
        host_fs.prepare_data_root(root)
        self.policy = SidecarPolicy(**{"BackoffInitialSeconds": 0.02,
                                       "BackoffMaxSeconds": 0.05, **policy})
        self.tracker = Tracker(engine)
        self.manager = PodManager(engine, self.tracker, self.policy, data_root=root,
                                  node=NODE, gpus=gpus)

    async def __aenter__(self) -> Node:
        self.tracker.start(asyncio.get_running_loop())
        await self.manager.recover()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.close()
        self.tracker.stop()

    async def create(self, p: dict[str, Any]) -> None:
        await self.manager.create(RetrievedPodData.model_validate(create_body(p)))

    def status(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.manager.status(p).to_wire()

    def phase(self, p: dict[str, Any]) -> str:
        return vk_phase(self.status(p))

    async def until(self, check: Callable[[], Any], timeout: float = 5) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {timeout}s; status: "
                                     f"{json.dumps(self.last, default=str)}")
            await asyncio.sleep(0.01)

    last: Any = None

    async def phase_is(self, p: dict[str, Any], phase: str, timeout: float = 5) -> None:
        def check() -> bool:
            self.last = self.status(p)
            return vk_phase(self.last) == phase
        await self.until(check, timeout)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


def engine() -> FakeEngine:
    return FakeEngine(images=("registry.k8s.io/pause:3.10", IMAGE))


def names(e: FakeEngine, op: str) -> list[str]:
    """The pod-local container names ("POD" for the sandbox) of ``op`` calls, in order."""
    out = []
    for call in e.ops(op):
        docker_name = call[1]
        out.append(docker_name.split("_")[3])
    return out


# --- bring-up ---------------------------------------------------------------------------------


def test_sandbox_then_init_containers_in_order_then_mains(tmp_path: Path) -> None:
    e = engine()
    e.script("a", Exit(0))
    e.script("b", Exit(0))
    p = pod("order", [container("m")], init=[container("a"), container("b")])

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            assert names(e, "start") == ["POD", "a", "b", "m"]
            status = node.status(p)
            assert state_of(status, "a", init=True)["state"]["terminated"]["reason"] == \
                "Completed"
            # Ready follows Running once the tracker has seen the start (no probes here).
            await node.until(lambda: node.status(p)["containers"][0]["ready"] is True)
    run(scenario)


def test_failed_init_container_fails_the_pod_under_never(tmp_path: Path) -> None:
    e = engine()
    e.script("a", Exit(3))
    p = pod("init-fails", [container("m")], init=[container("a"), container("b")])

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Failed")
            status = node.status(p)
            assert state_of(status, "a", init=True)["state"]["terminated"]["exitCode"] == 3
            for name, init in (("b", True), ("m", False)):
                term = state_of(status, name, init=init)["state"]["terminated"]
                assert term["reason"] == "InitContainerFailed"
            assert names(e, "create") == ["POD", "a"]  # b and m never made
    run(scenario)


def test_failed_init_container_is_retried_under_on_failure(tmp_path: Path) -> None:
    e = engine()
    e.script("a", Exit(1), Exit(1), Exit(0))
    p = pod("init-retry", [container("m")], init=[container("a")], restart="OnFailure")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            init = state_of(node.status(p), "a", init=True)
            assert init["restartCount"] == 2
            # The previous attempt is kept for Previous logs, older ones removed.
            assert [int(c.labels.get(L.ATTEMPT, "0")) for c in e.named("a")] == [1, 2]
    run(scenario)


def test_pod_without_init_containers_creates_mains_while_the_sandbox_starts(
        tmp_path: Path) -> None:
    e = engine()
    p = pod("early", [container("m1"), container("m2")])

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            assert sorted(names(e, "create")) == ["POD", "m1", "m2"]
            assert names(e, "start")[0] == "POD"
    run(scenario)


def test_missing_image_is_pulled_and_a_failed_pull_backs_off(tmp_path: Path) -> None:
    e = engine()
    e.pull_errors["example.org/missing:1"] = "manifest unknown"
    p = pod("pulls", [container("m", image="example.org/other:1"),
                      container("x", image="example.org/missing:1")])

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)

            def backing_off() -> bool:
                node.last = node.status(p)
                waiting = state_of(node.last, "x")["state"].get("waiting") or {}
                return waiting.get("reason") == "ImagePullBackOff"
            await node.until(backing_off)
            assert "manifest unknown" in state_of(node.last, "x")["state"]["waiting"]["message"]
            assert ("pull", "example.org/other:1") in e.ops("pull")
            e.pull_errors.clear()
            await node.phase_is(p, "Running")
    run(scenario)


# --- restart policies -------------------------------------------------------------------------


def test_always_restarts_and_counts_docker_restarts(tmp_path: Path) -> None:
    e = engine()
    e.script("m", Exit(1), Exit(2), Run())
    p = pod("always", [container("m")], restart="Always")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            await node.until(lambda: state_of(node.status(p), "m")["restartCount"] == 2)
            assert len(e.named("m")) == 1  # Docker restarted the same container
    run(scenario)


def test_never_leaves_a_failed_container_down(tmp_path: Path) -> None:
    e = engine()
    e.script("m", Exit(2))
    p = pod("never", [container("m")], restart="Never")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Failed")
            term = state_of(node.status(p), "m")["state"]["terminated"]
            assert (term["exitCode"], term["reason"]) == (2, "Error")
            assert state_of(node.status(p), "m")["restartCount"] == 0
    run(scenario)


def test_on_failure_keeps_a_success(tmp_path: Path) -> None:
    e = engine()
    e.script("m", Exit(0))
    p = pod("onfailure", [container("m")], restart="OnFailure")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Succeeded")
            assert e.named("m")[0].restart_count == 0
    run(scenario)


def test_container_that_cannot_start_is_recreated_after_back_off(tmp_path: Path) -> None:
    e = engine()
    e.script("m", StartError("exec: no such file"), Run())
    p = pod("startfail", [container("m")], restart="Always")

    async def scenario() -> None:
        async with Node(e, tmp_path, BackoffInitialSeconds=0.3,
                        BackoffMaxSeconds=0.3) as node:
            await node.create(p)

            def backing_off() -> bool:
                node.last = node.status(p)
                waiting = state_of(node.last, "m")["state"].get("waiting") or {}
                return waiting.get("reason") == "CrashLoopBackOff"
            await node.until(backing_off)
            assert "exec: no such file" in state_of(node.last, "m")["state"]["waiting"][
                "message"]
            await node.phase_is(p, "Running")
            assert [int(c.labels.get(L.ATTEMPT, "0")) for c in e.named("m")] == [0, 1]
            assert state_of(node.status(p), "m")["restartCount"] == 1
    run(scenario)


def test_failing_liveness_probe_restarts_through_the_engine(tmp_path: Path) -> None:
    e = engine()
    e.exec_codes[("m", "false")] = 1
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    p = pod("liveness", [container("m", livenessProbe=probe)], restart="Always")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            # No process is visible (Pid 0): the kill goes through the engine's restart.
            await node.until(lambda: e.ops("restart"), timeout=5)
            await node.until(lambda: state_of(node.status(p), "m")["restartCount"] >= 1)
    run(scenario)


# --- events and messages ----------------------------------------------------------------------


def test_exits_reach_status_through_the_event_stream(tmp_path: Path) -> None:
    e = engine()
    p = pod("events", [container("m")], restart="Never")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            inspects_before = len(e.ops())
            e.finish("m", 0)  # the process exits by itself: only an event says so
            await node.phase_is(p, "Succeeded")
            assert len(e.ops()) == inspects_before  # nothing was asked of the engine
    run(scenario)


def test_event_stream_that_breaks_is_reopened_and_nothing_is_missed(tmp_path: Path) -> None:
    e = engine()
    p = pod("reopen", [container("m")], restart="Never")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            e.break_stream()
            e.finish("m", 4)  # while no stream is open: the re-sync finds it
            await node.phase_is(p, "Failed", timeout=8)
    run(scenario)


def test_termination_message_falls_back_to_logs_on_error(tmp_path: Path) -> None:
    e = engine()
    e.script("m", Exit(1, logs=b"line 1\nit broke\n"))
    p = pod("message", [container("m", terminationMessagePolicy="FallbackToLogsOnError")])

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.until(lambda: (state_of(node.status(p), "m")["state"].get(
                "terminated") or {}).get("message") == "line 1\nit broke\n")
    run(scenario)


# --- delete -----------------------------------------------------------------------------------


def test_delete_runs_pre_stop_then_stops_within_the_grace_period(tmp_path: Path) -> None:
    e = engine()
    hook = {"preStop": {"exec": {"command": ["drain"]}}}
    p = pod("delete", [container("m", lifecycle=hook), container("n")], grace=30)

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            pod_dir = host_fs.pod_dir(tmp_path, p["metadata"]["uid"])
            assert pod_dir.exists()
            gone = {**p, "metadata": {**p["metadata"], "deletionGracePeriodSeconds": 7}}
            assert await node.manager.delete(gone)
            ops = [c for c in e.ops("exec", "stop", "remove")]
            assert ops[0] == ("exec", e_name(p, "m"), ["drain"])
            stops = {c[1]: c[2] for c in ops if c[0] == "stop"}
            assert set(stops) == {e_name(p, "m"), e_name(p, "n")}
            assert all(6 <= t <= 7 for t in stops.values())
            assert not e.containers and not pod_dir.exists()
            term = node.status(p)["containers"][0]["state"]["terminated"]
            assert term["reason"] == "NotFound"
            assert not await node.manager.delete(gone)  # nothing left to delete
    run(scenario)


def test_delete_removes_the_pods_tmpfs_volumes(tmp_path: Path) -> None:
    e = engine()
    volumes = [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]
    p = pod("tmpfs", [container("m", volumeMounts=[{"name": "scratch",
                                                   "mountPath": "/scratch"}])],
            volumes=volumes)

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            assert len(e.volumes) == 1
            assert await node.manager.delete(p)
            assert not e.volumes
    run(scenario)


def e_name(p: dict[str, Any], name: str) -> str:
    meta = p["metadata"]
    return L.container_name(meta["namespace"], meta["name"], name, meta["uid"])


# --- restart safety ---------------------------------------------------------------------------


def test_recovery_rebuilds_pods_from_labels_and_requests_without_touching_them(
        tmp_path: Path) -> None:
    e = engine()
    kept = pod("kept", [container("m")], restart="Always")
    orphan = pod("orphan", [container("m")], restart="Always")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            await node.create(kept)
            await node.create(orphan)
            await node.phase_is(kept, "Running")
            await node.phase_is(orphan, "Running")
        # The sidecar is gone; one pod's request is lost with it.
        (host_fs.pod_dir(tmp_path, orphan["metadata"]["uid"]) / "request.json").unlink()
        made = len(e.ops("create", "start", "stop", "remove"))
        async with Node(e, tmp_path) as node:
            await node.phase_is(kept, "Running")
            # Known from its labels alone: reported, never finished nor stopped.
            status = node.status(orphan)
            assert (status["name"], status["namespace"]) == ("orphan", "tests")
            assert status["JID"] == L.infra_name("tests", "orphan", orphan["metadata"]["uid"])
            await asyncio.sleep(0.1)
            assert len(e.ops("create", "start", "stop", "remove")) == made
            assert await node.manager.delete(kept)
    run(scenario)


def test_recovery_finishes_a_half_created_pod(tmp_path: Path) -> None:
    e = engine()
    e.script("a", Exit(0))
    p = pod("half", [container("m")], init=[container("a")])

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            # Answered, written to disk, and the sidecar stops before any container exists.
            data = RetrievedPodData.model_validate(create_body(p))
            node.manager.services.store.prepare(data, node.manager.plan(data))
        async with Node(e, tmp_path) as node:
            await node.phase_is(p, "Running")
            assert names(e, "start") == ["POD", "a", "m"]
    run(scenario)


# --- GPUs -------------------------------------------------------------------------------------


def gpu_inventory(count: int) -> GPUInventory:
    units = [GPUDevice(index=i, uuid=f"GPU-{i:08d}", name="Fake GPU", memory_total=1 << 34,
                       mig_enabled=False) for i in range(count)]
    return GPUInventory(True, devices=list(units), units=list(units))


def gpu_container(name: str) -> dict[str, Any]:
    return container(name, resources={"limits": {"nvidia.com/gpu": "1"}})


def test_gpus_go_back_when_the_pod_is_done_and_the_next_in_line_starts(
        tmp_path: Path) -> None:
    e = engine()
    first = pod("first", [gpu_container("g1")], restart="Never")
    second = pod("second", [gpu_container("g2")], restart="Never")

    async def scenario() -> None:
        async with Node(e, tmp_path, gpus=gpu_inventory(1),
                        GPU={"WhenFull": "queue"}) as node:
            allocator = node.manager.allocator
            assert allocator is not None
            await node.create(first)
            await node.create(second)
            await node.phase_is(first, "Running")
            # The second pod's worker says so once it has asked for the GPU (its task runs
            # after create returns).
            await node.until(lambda: (state_of(node.status(second), "g2")["state"].get(
                "waiting") or {}).get("reason") == "WaitingForGPU")
            infra = next(c for c in e.containers.values() if c.labels.get(L.ROLE) == "infra")
            assert infra.labels[L.GPUS] == "GPU-00000000"
            e.finish("g1", 0)  # done for good: its GPU goes before any delete
            await node.phase_is(second, "Running", timeout=8)
            assert allocator.holders() == {"GPU-00000000": "tests/second"}
    run(scenario)


def test_gpus_held_by_a_running_pod_are_held_again_after_a_restart(tmp_path: Path) -> None:
    e = engine()
    p = pod("holder", [gpu_container("g")], restart="Always")
    other = pod("other", [gpu_container("g")], restart="Always")

    async def scenario() -> None:
        async with Node(e, tmp_path, gpus=gpu_inventory(1)) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
        async with Node(e, tmp_path, gpus=gpu_inventory(1)) as node:
            assert node.manager.allocator is not None
            assert node.manager.allocator.holders() == {"GPU-00000000": "tests/holder"}
            try:
                await node.create(other)
            except Exception as exc:
                assert "nvidia.com/gpu" in str(exc)
            else:
                raise AssertionError("a second pod got the held GPU")
    run(scenario)


# --- eviction ---------------------------------------------------------------------------------


def test_eviction_kills_without_grace_releases_gpus_and_survives_a_restart(
        tmp_path: Path) -> None:
    e = engine()
    p = pod("evicted", [gpu_container("g")], restart="Always", grace=30)

    async def scenario() -> None:
        async with Node(e, tmp_path, gpus=gpu_inventory(1)) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            record = node.manager.records[p["metadata"]["uid"]]
            await node.manager.evict(record, "Usage of EmptyDir volume \"x\" exceeds...")
            assert {c[2] for c in e.ops("stop")} == {0}
            term = state_of(node.status(p), "g")["state"]["terminated"]
            assert term["reason"] == "Evicted"
            assert node.manager.allocator is not None
            assert node.manager.allocator.holders() == {}
        starts = len(e.ops("start"))
        async with Node(e, tmp_path, gpus=gpu_inventory(1)) as node:
            await asyncio.sleep(0.1)
            assert len(e.ops("start")) == starts  # an evicted pod stays down
            assert state_of(node.status(p), "g")["state"]["terminated"]["reason"] == "Evicted"
    run(scenario)


# --- the tunnel companion (interlink.eu/wstunnel-client-commands) ---------------------------

TUNNEL_POLICY = {"TunnelImage": IMAGE}


def tunnelled(name: str, restart: str = "Never") -> dict[str, Any]:
    p = pod(name, [container("notebook")], restart=restart)
    p["metadata"]["annotations"]["interlink.eu/wstunnel-client-commands"] = "run-the-tunnel &"
    return p


def tunnels(e: FakeEngine) -> list[Any]:
    return [c for c in e.named(L.TUNNEL_NAME) if c.labels.get(L.ROLE) == L.ROLE_TUNNEL]


def test_the_companion_runs_beside_the_pod_and_is_not_in_its_status(tmp_path: Path) -> None:
    e = engine()
    p = tunnelled("tun")

    async def scenario() -> None:
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            await node.until(lambda: tunnels(e) and tunnels(e)[0].state["Running"])
            status = node.status(p)
            assert [c["name"] for c in status["containers"]] == ["notebook"]
            assert not status.get("initContainers")
            assert names(e, "start") == ["POD", "TUNNEL", "notebook"]
            # Logs are the pod's: the companion neither makes the default ambiguous nor is
            # offered as a container of the pod.
            meta = p["metadata"]
            req = LogStruct(Namespace=meta["namespace"], PodUID=meta["uid"],
                            PodName=meta["name"])
            assert node.manager.find_log_container(req).name == "notebook"
            with pytest.raises(LogLookupError) as info:
                node.manager.find_log_container(req.model_copy(update={"ContainerName": "x"}))
            assert "TUNNEL" not in str(info.value)
            assert await node.manager.delete(p)
            assert tunnels(e) == []
    run(scenario)


def test_a_pod_without_the_annotation_gets_no_companion(tmp_path: Path) -> None:
    e = engine()
    p = pod("plain", [container("notebook")])

    async def scenario() -> None:
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            assert tunnels(e) == [] and names(e, "create") == ["POD", "notebook"]
    run(scenario)


def test_the_annotation_without_a_tunnel_image_is_refused_and_nothing_made(
        tmp_path: Path) -> None:
    e = engine()
    p = tunnelled("refused")

    async def scenario() -> None:
        async with Node(e, tmp_path) as node:
            with pytest.raises(PlanError, match="Sidecar.TunnelImage"):
                await node.create(p)
            assert e.ops("create") == [] and not node.manager.records
            assert not host_fs.pod_dir(tmp_path, p["metadata"]["uid"]).exists()
    run(scenario)


@pytest.mark.parametrize("restart", ["Never", "Always"])
def test_a_companion_that_dies_is_restarted(tmp_path: Path, restart: str) -> None:
    e = engine()
    p = tunnelled("dies", restart)

    async def scenario() -> None:
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            await node.until(lambda: tunnels(e) and tunnels(e)[0].state["Running"])
            e.finish(L.TUNNEL_NAME, 1)
            await node.until(lambda: tunnels(e)[0].state["Running"])
            assert tunnels(e)[0].restart_count == 1 and len(tunnels(e)) == 1
            # The pod's own containers are untouched, and the status never counts it.
            state = state_of(node.status(p), "notebook")
            assert state["restartCount"] == 0 and "running" in state["state"]
    run(scenario)


def test_the_companion_is_recovered_and_started_again_after_a_restart(
        tmp_path: Path) -> None:
    e = engine()
    p = tunnelled("recovered", "Always")

    async def scenario() -> None:
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            await node.until(lambda: tunnels(e) and tunnels(e)[0].state["Running"])
        # Stopped while the sidecar was away (Docker's restart policy skips a stop).
        e.stop(tunnels(e)[0].id, 0)
        assert not tunnels(e)[0].state["Running"]
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.phase_is(p, "Running")
            await node.until(lambda: tunnels(e)[0].state["Running"])
            assert len(tunnels(e)) == 1 and names(e, "create").count("TUNNEL") == 1
            assert [c["name"] for c in node.status(p)["containers"]] == ["notebook"]
            assert await node.manager.delete(p)
            assert tunnels(e) == []
    run(scenario)


def test_a_companion_stopped_from_outside_is_started_again(tmp_path: Path) -> None:
    e = engine()
    p = tunnelled("stopped", "Never")

    async def scenario() -> None:
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            await node.until(lambda: tunnels(e) and tunnels(e)[0].state["Running"])
            starts = names(e, "start").count("TUNNEL")
            # docker stop or kill: Docker's restart policy leaves it down; the sidecar does not.
            e.stop(tunnels(e)[0].id, 0)
            await node.until(lambda: names(e, "start").count("TUNNEL") > starts
                             and tunnels(e)[0].state["Running"])
            assert len(tunnels(e)) == 1
            # Deleting the pod stops it for good: nothing starts it again.
            assert await node.manager.delete(p)
            await asyncio.sleep(0.1)
            assert tunnels(e) == []
    run(scenario)


def test_the_companions_image_is_pulled_like_the_pods(tmp_path: Path) -> None:
    """Found in review: only the pod's own images were pulled, so on a node without the
    tunnel image the pod ran and could never be reached, with nothing said anywhere."""
    e = engine()
    p = tunnelled("pulls-tunnel")

    async def scenario() -> None:
        async with Node(e, tmp_path, TunnelImage="example.org/wstunnel:10") as node:
            await node.create(p)
            await node.phase_is(p, "Running")
            await node.until(lambda: tunnels(e) and tunnels(e)[0].state["Running"])
            assert ("pull", "example.org/wstunnel:10") in e.ops("pull")
    run(scenario)


def test_two_pods_asking_for_one_published_port_at_once_get_one_refusal(
        tmp_path: Path) -> None:
    """Found in review: the port check and the new worker were an await apart, so two creates
    of different pods could both take the port (the loser retried its sandbox for ever)."""
    e = engine()
    a, b = (pod(n, [container("m", ports=[{"containerPort": 18888}])]) for n in ("pa", "pb"))

    async def scenario() -> None:
        async with Node(e, tmp_path, PublishPorts=True) as node:
            results = await asyncio.gather(node.create(a), node.create(b),
                                           return_exceptions=True)
            refused = [r for r in results if isinstance(r, PlanError)]
            assert len(refused) == 1 and "18888" in str(refused[0])
            assert sum(r is None for r in results) == 1
    run(scenario)


def test_a_delete_does_not_wait_the_grace_period_for_the_companion(tmp_path: Path) -> None:
    """Its shell ignores SIGTERM as PID 1: stopped with the grace period, it held every delete
    for the whole of it. The pod's own containers keep their grace."""
    e = engine()
    p = tunnelled("quick-delete")
    p["spec"]["terminationGracePeriodSeconds"] = 30

    async def scenario() -> None:
        async with Node(e, tmp_path, **TUNNEL_POLICY) as node:
            await node.create(p)
            await node.until(lambda: tunnels(e) and tunnels(e)[0].state["Running"])
            assert await node.manager.delete(p)
            stops = {c[1].split("_")[3]: c[2] for c in e.ops("stop")}
            assert stops["TUNNEL"] == 0 and stops["notebook"] >= 29
    run(scenario)
