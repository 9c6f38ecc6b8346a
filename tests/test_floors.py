"""Resource floors as pure translation: pids limit, log rotation, GPU visibility, default limits,
emptyDir usage and the eviction message, and the demultiplexing of Docker's log stream. No
Docker here; tests/security/ makes the same attacks on a real engine."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube import container, create_body, pod

from docker_sidecar import labels as L
from docker_sidecar.docker_config import (
    container_create_args,
    container_host_config,
    infra_create_args,
    infra_host_config,
)
from docker_sidecar.disk_usage import MAX_DEPTH, Unmeasurable, disk_usage
from docker_sidecar.eviction import (
    evicted_state,
    limited_containers,
    limited_dirs,
    over_limit,
    pod_limit,
)
from docker_sidecar.floors import Floors
from docker_sidecar.log_streams import _read
from docker_sidecar.plan import NodeFacts, PlanError, plan_pod
from docker_sidecar.policy import SidecarPolicy
from interlink_common.wire import RetrievedPodData

NODE = NodeFacts(cpus=4, memory=8 << 30, name="node")


def plan_of(tmp_path: Path, p: dict[str, Any], **policy: Any):
    data = RetrievedPodData.model_validate(create_body(p))
    return plan_pod(data, SidecarPolicy(**policy), data_root=tmp_path, node=NODE)


def test_every_container_and_the_infra_get_the_pids_limit_and_log_rotation(tmp_path) -> None:
    plan = plan_of(tmp_path, pod("p", [container("c")]))
    floors = Floors.from_policy(SidecarPolicy())
    for config in (container_host_config(plan.main[0], "infra", floors=floors),
                   infra_host_config(plan.infra, floors)):
        assert config["pids_limit"] == 4096
        assert config["log_config"].type == "json-file"
        assert config["log_config"].config == {"max-size": str(10 << 20), "max-file": "5"}


def test_pids_limit_zero_leaves_it_to_docker_and_sizes_are_quantities() -> None:
    floors = Floors.from_policy(SidecarPolicy(PidsLimit=0, LogMaxSize="1Gi", LogMaxFiles=2))
    config = floors.host_config()
    assert "pids_limit" not in config
    assert config["log_config"].config == {"max-size": str(1 << 30), "max-file": "2"}


@pytest.mark.parametrize("key,value", [("LogMaxSize", "ten megs"), ("LogMaxSize", ""),
                                       ("DefaultMemoryLimit", "-1Gi"),
                                       ("DefaultCPULimit", "lots"), ("LogMaxFiles", 0),
                                       ("PidsLimit", -1)])
def test_bad_floor_settings_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        SidecarPolicy(**{key: value})
    assert key in str(info.value)


# --- GPUs stay exclusive ---------------------------------------------------------------------


def test_a_container_without_a_grant_gets_no_gpu_whatever_its_env_says(tmp_path) -> None:
    c = container("c", env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                            {"name": "OTHER", "value": "x"}])
    plan = plan_of(tmp_path, pod("p", [c]))
    env = container_create_args(plan.main[0])["environment"]
    assert [e for e in env if e.startswith("NVIDIA_VISIBLE_DEVICES=")] == [
        "NVIDIA_VISIBLE_DEVICES=void"]
    assert env[-1] == "NVIDIA_VISIBLE_DEVICES=void" and "OTHER=x" in env
    assert "NVIDIA_VISIBLE_DEVICES=void" in infra_create_args(plan.infra)["environment"]


def test_a_container_with_a_grant_sees_exactly_its_uuids(tmp_path) -> None:
    c = container("c", env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])
    plan = plan_of(tmp_path, pod("p", [c]))
    env = container_create_args(plan.main[0], gpu_uuids=["GPU-a", "GPU-b"])["environment"]
    assert [e for e in env if e.startswith("NVIDIA_VISIBLE_DEVICES=")] == [
        "NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b"]


# --- default limits ----------------------------------------------------------------------------


def test_default_limits_fill_only_what_a_container_left_out(tmp_path) -> None:
    p = pod("p", [container("none"),
                  container("own", resources={"limits": {"cpu": "1", "memory": "1Gi"}}),
                  container("big", resources={"requests": {"memory": "8Gi"}})])
    plan = plan_of(tmp_path, p, DefaultCPULimit="500m", DefaultMemoryLimit="2Gi")
    none, own, big = plan.main
    assert (none.nano_cpus, none.mem_limit) == (500_000_000, 2 << 30)
    assert (own.nano_cpus, own.mem_limit) == (1_000_000_000, 1 << 30)
    # A request above the default becomes the limit rather than an impossible container.
    assert big.mem_limit == 8 << 30 and big.mem_reservation == 8 << 30
    assert plan_of(tmp_path, pod("q", [container("c")])).main[0].mem_limit is None


def test_a_bad_request_next_to_a_default_is_still_refused_naming_the_field(tmp_path) -> None:
    p = pod("p", [container("c", resources={"requests": {"memory": "lots"}})])
    with pytest.raises(PlanError, match="lots"):
        plan_of(tmp_path, p, DefaultMemoryLimit="1Gi")


def test_a_pod_of_more_containers_than_the_cap_is_refused(tmp_path) -> None:
    """Each container brings its own pids limit: without a cap, a pod multiplies its share."""
    many = [container(f"c{i}") for i in range(30)]
    plan_of(tmp_path, pod("p", many, init=[container("i0"), container("i1")]))  # 32: runs
    with pytest.raises(PlanError) as err:
        plan_of(tmp_path, pod("p", many, init=[container(f"i{i}") for i in range(3)]))
    assert "33 containers" in str(err.value) and "Sidecar.MaxContainersPerPod" in str(err.value)
    plan_of(tmp_path, pod("p", many + [container("c30"), container("c31"), container("c32")]),
            MaxContainersPerPod=40)


# --- emptyDir usage and eviction ---------------------------------------------------------------


def test_disk_usage_counts_blocks_once_and_does_not_follow_links(tmp_path) -> None:
    root = tmp_path / "vol"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "data").write_bytes(os.urandom(1 << 20))
    os.link(root / "sub" / "data", root / "hardlink")
    (root / "outside").symlink_to(tmp_path)  # a link out must not count what it points at
    (tmp_path / "big").write_bytes(os.urandom(4 << 20))
    with open(root / "sparse", "wb") as f:
        f.truncate(1 << 40)  # a sparse terabyte stores nothing
    used = disk_usage(root)
    assert 1 << 20 <= used < 2 << 20


def test_disk_usage_does_not_enter_a_mount_inside(tmp_path) -> None:
    """A claim or host path bind-mounted inside a volume is not the volume's usage."""
    root, other = tmp_path / "vol", tmp_path / "claim"
    (root / "mnt").mkdir(parents=True)
    other.mkdir()
    (other / "big").write_bytes(os.urandom(4 << 20))
    subprocess.run(["mount", "--bind", str(other), str(root / "mnt")], check=True)
    try:
        assert disk_usage(root) < 1 << 20
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)


def test_nesting_too_deep_to_measure_counts_as_over_the_limit(tmp_path) -> None:
    """Data hidden below more levels than the walk holds descriptors for cannot escape."""
    p = pod("p", [container("c")], volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}])
    dirs = limited_dirs(p, plan_of(tmp_path, p).volumes.sources)
    dirs[0].path.mkdir(parents=True)
    fd = os.open(dirs[0].path, os.O_RDONLY)
    for _ in range(MAX_DEPTH + 1):  # deeper than PATH_MAX lets a path name: walk by fd
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    with pytest.raises(Unmeasurable):
        disk_usage(dirs[0].path)
    message = over_limit(dirs)
    assert message.startswith('Usage of EmptyDir volume "scratch" cannot be measured')
    assert f"deeper than {MAX_DEPTH} levels" in message


def test_too_many_entries_to_measure_counts_as_over_the_limit(tmp_path, monkeypatch) -> None:
    """One pod's millions of files cannot hold up the checks of every other pod."""
    import docker_sidecar.disk_usage as du

    monkeypatch.setattr(du, "MAX_ENTRIES", 50)
    (tmp_path / "vol").mkdir()
    for i in range(51):
        (tmp_path / "vol" / f"f{i}").touch()
    with pytest.raises(Unmeasurable, match="more than 50 entries"):
        disk_usage(tmp_path / "vol")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(Unmeasurable):
            disk_usage(tmp_path / "vol")
    assert len(os.listdir("/proc/self/fd")) == before  # nothing left open


def test_over_limit_names_the_volume_and_limit_as_the_kubelet_does(tmp_path) -> None:
    p = pod("p", [container("c")], volumes=[
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
        {"name": "unlimited", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}])
    plan = plan_of(tmp_path, p)
    dirs = limited_dirs(p, plan.volumes.sources)
    assert [d.volume for d in dirs] == ["scratch"]
    dirs[0].path.mkdir(parents=True)
    assert over_limit(dirs) == ""
    (dirs[0].path / "fill").write_bytes(os.urandom(2 << 20))
    assert over_limit(dirs) == 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'


def test_evicted_state_keeps_completed_containers_and_kills_the_rest() -> None:
    done = {"Id": "a", "State": {"Running": False, "ExitCode": 0,
                                 "StartedAt": "2026-01-01T00:00:00Z",
                                 "FinishedAt": "2026-01-01T00:00:01Z"}}
    killed = {"Id": "b", "State": {"Running": False, "ExitCode": 137,
                                   "StartedAt": "2026-01-01T00:00:00Z",
                                   "FinishedAt": "2026-01-01T00:00:01Z"}}
    assert evicted_state(done, "m") is None
    state = evicted_state(killed, "m")
    assert (state.reason, state.message, state.exitCode) == ("Evicted", "m", 137)
    assert evicted_state(None, "m").exitCode == 137


def test_container_storage_counts_its_writable_layer_and_logs(tmp_path) -> None:
    layer, logs = tmp_path / "diff", tmp_path / "logs"
    layer.mkdir()
    logs.mkdir()
    (logs / "c-json.log").write_bytes(os.urandom(300 << 10))
    (logs / "c-json.log.1").write_bytes(os.urandom(300 << 10))
    (layer / "fill").write_bytes(os.urandom(300 << 10))

    def docker(name: str, running: bool = True) -> dict[str, Any]:
        return {"Config": {"Labels": {L.CONTAINER: name, L.ROLE: "main"}},
                "State": {"Running": running}, "LogPath": str(logs / "c-json.log"),
                "GraphDriver": {"Data": {"UpperDir": str(layer)}}}

    p = pod("p", [container("own", resources={"limits": {"ephemeral-storage": "1Mi"}}),
                  container("free"), container("done", resources={
                      "limits": {"ephemeral-storage": "1"}})])
    found = limited_containers(p, [docker("own"), docker("free"), docker("done", False)])
    assert [(c.name, c.limit_text) for c in found] == [("own", "1Mi")]
    assert over_limit([], found) == ""
    found = limited_containers(p, [docker("own"), docker("free")], default="512Ki")
    assert [(c.name, c.limit_text) for c in found] == [("own", "1Mi"), ("free", "512Ki")]
    assert over_limit([], found) == \
        'Container free exceeded its local ephemeral storage limit "512Ki".'
    # In a pod total, a container without a limit of its own still counts.
    found = limited_containers(p, [docker("own"), docker("free")], unlimited=True)
    assert [(c.name, c.limit) for c in found] == [("own", 1 << 20), ("free", None)]
    assert over_limit([], found) == ""
    # The tunnel companion is measured under its own limit, and not in the pod's total.
    companion = {**docker("x"), "Config": {"Labels": {L.CONTAINER: L.TUNNEL_NAME,
                                                      L.ROLE: L.ROLE_TUNNEL}}}
    found_t = limited_containers(p, [docker("own"), companion], tunnel_limit="512Ki")
    assert [(c.name, c.limit_text) for c in found_t] == [("own", "1Mi"), ("TUNNEL", "512Ki")]
    assert over_limit([], found_t) == \
        'Container TUNNEL exceeded its local ephemeral storage limit "512Ki".'
    # The total is 1Mi for "own" plus the 1 byte "done" asks for.
    assert over_limit([], found, pod_limit(p, {})) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 1048577."


def test_pod_total_bounds_emptydirs_without_sizelimit(tmp_path) -> None:
    """An emptyDir without sizeLimit is bounded by the pod's total, the sum of its containers'
    limits (the node default for those that set none), as the kubelet bounds it."""
    volumes = [{"name": "open", "emptyDir": {}},
               {"name": "mem", "emptyDir": {"medium": "Memory"}}]
    p = pod("p", [container("a", resources={"limits": {"ephemeral-storage": "1Mi"}}),
                  container("b")], init=[container("i", resources={
                      "limits": {"ephemeral-storage": "2Mi"}})], volumes=volumes)
    sources = plan_of(tmp_path, p).volumes.sources
    assert pod_limit(p, sources).limit == 2 << 20  # "b" adds nothing; the init's is larger
    assert pod_limit(pod("q", [container("c")]), {}) is None  # no limit anywhere: no total
    total = pod_limit(p, sources, default="1536Ki")  # 1Mi + 1.5Mi for "b" > the init's
    assert total is not None and total.limit == 2560 << 10
    assert [d.name for d in total.dirs] == ["open"]
    total.dirs[0].mkdir(parents=True)
    (total.dirs[0] / "fill").write_bytes(os.urandom(1 << 20))
    assert over_limit([], [], total) == ""
    (total.dirs[0] / "more").write_bytes(os.urandom(1700 << 10))
    assert over_limit([], [], total) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 2560Ki."


# --- Docker's log stream, read without threads -------------------------------------------------


def frames(*parts: tuple[int, bytes]) -> bytes:
    return b"".join(struct.pack(">BxxxL", kind, len(data)) + data for kind, data in parts)


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_multiplexed_stream_is_demultiplexed_across_any_chunking(split: int) -> None:
    raw = frames((1, b"out-1\n"), (2, b"err-1\n"), (1, b""), (1, b"out-2\n"))

    async def stream():
        for i in range(0, len(raw), split):
            yield raw[i:i + split]

    async def collect() -> bytes:
        response = httpx.Response(200, content=stream())
        return b"".join([c async for c in _read(response, tty=False)])

    assert asyncio.run(collect()) == b"out-1\nerr-1\nout-2\n"


# --- follow caps and the threaded fallback -----------------------------------------------------


class FakeLogs:
    """docker-py's blocking log stream: yields what it was given, then blocks until closed."""

    def __init__(self, lines: list[bytes]) -> None:
        import threading

        self.lines = list(lines)
        self.closed = threading.Event()

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.lines:
            return self.lines.pop(0)
        self.closed.wait(30)
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


class FakeEngine:
    def __init__(self) -> None:
        self.streams: list[FakeLogs] = []

    def logs(self, cid: str, **kwargs: Any) -> FakeLogs:
        self.streams.append(FakeLogs([b"one\n", b"two\n"]))
        return self.streams[-1]


def test_follow_caps_and_release_on_the_threaded_fallback() -> None:
    from docker_sidecar.log_streams import LogStreams, TooManyStreams
    from docker_sidecar.logs import LogParams

    follow = LogParams(follow=True, tail=None, timestamps=False, since=None, limit_bytes=None)

    async def scenario() -> None:
        engine = FakeEngine()
        streams = LogStreams(engine, per_pod=1, total=2,  # type: ignore[arg-type]
                             docker_host="ssh://me@host")
        assert not streams.asynchronous  # ssh: docker-py on a pool of the logs' own
        first = await streams.open("c1", follow, tty=False, pod_uid="a", pod_ref="ns/a")
        with pytest.raises(TooManyStreams, match="Sidecar.MaxLogFollowsPerPod"):
            await streams.open("c1", follow, tty=False, pod_uid="a", pod_ref="ns/a")
        second = await streams.open("c2", follow, tty=False, pod_uid="b", pod_ref="ns/b")
        with pytest.raises(TooManyStreams, match="Sidecar.MaxLogFollows\\b"):
            await streams.open("c3", follow, tty=False, pod_uid="c", pod_ref="ns/c")
        chunks = first.chunks(limit=5)
        assert [c async for c in chunks] == [b"one\n", b"t"]  # Bytes: the first 5
        assert engine.streams[0].closed.is_set()  # the blocked reader thread was let go
        await second.close()
        assert engine.streams[1].closed.is_set() and not streams.open_streams
        again = await streams.open("c1", follow, tty=False, pod_uid="a", pod_ref="ns/a")
        await again.close()
        await streams.aclose()

    asyncio.run(scenario())
