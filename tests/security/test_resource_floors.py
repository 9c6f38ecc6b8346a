"""A pod without limits cannot take the node's processes, disk or the sidecar's memory: pids
limit, log rotation, emptyDir sizeLimit eviction, default limits, request size caps. Each
attack is made from inside a pod or over the wire; the outcome is read from outside
(``docker inspect``, ``docker top``, the log files on the host, ``/status``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kube import container, create_body, pod, state_of, vk_phase

FLOORS = {"PidsLimit": 64, "LogMaxSize": "64Ki", "LogMaxFiles": 2,
          "EvictionIntervalSeconds": 0.5, "DefaultCPULimit": "500m",
          "DefaultMemoryLimit": "256Mi", "DefaultEphemeralStorageLimit": "8Mi",
          "MaxBodyBytes": 64 * 1024, "MaxStatusPods": 5}


@pytest.fixture(scope="module")
def floored(sidecar_factory):
    """A sidecar with low floors, so that the attacks reach them in seconds."""
    return sidecar_factory(policy=FLOORS)


def wait_for(what, until, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (result := until()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def test_defaults_give_every_container_a_pids_limit_and_rotated_logs(sidecar):
    p = pod("plain", [container("main", "exec sleep 3600")], grace=0)
    sidecar.run(create_body(p))
    for c in (sidecar.container(p, "main"),
              sidecar.docker.containers.get(f"il_tests_plain_POD_{p['metadata']['uid']}")):
        host = c.attrs["HostConfig"]
        assert host["PidsLimit"] == 4096
        assert host["LogConfig"] == {"Type": "json-file",
                                     "Config": {"max-size": str(10 << 20), "max-file": "5"}}
    sidecar.delete(p)


def test_a_fork_bomb_stops_at_the_pids_limit(floored):
    # Tries to start 200 processes that stay; only the limit's worth can exist at once. The
    # loop runs in a subshell, which exits when a fork fails; its sleeps stay.
    script = ("(i=0; while [ $i -lt 200 ]; do sleep 3600 & i=$((i+1)); done); "
              "echo forks-done; exec sleep 3600")
    p = pod("forker", [container("main", script)], grace=0)
    floored.run(create_body(p))
    wait_for("the loop to end", lambda: "forks-done" in floored.logs(p, "main").text)
    c = floored.container(p, "main")
    assert c.attrs["HostConfig"]["PidsLimit"] == 64
    processes = c.top()["Processes"]
    assert 32 <= len(processes) <= 64, len(processes)
    assert "can't fork" in floored.logs(p, "main").text
    # The node still forks: a new pod starts.
    q = pod("after-forker", [container("main", "echo alive; exec sleep 3600")], grace=0)
    floored.run(create_body(q))
    floored.delete(p)
    floored.delete(q)


def log_files(c) -> list[Path]:
    log_path = Path(c.attrs["LogPath"])
    return sorted(log_path.parent.glob(log_path.name + "*"))


def test_a_chatty_container_cannot_fill_the_disk_and_its_logs_still_read(floored):
    # About 1.5 MiB of log in a few seconds, 24 times the 64Ki the node keeps per file.
    script = ("i=0; while [ $i -lt 25000 ]; do echo \"line-$i padding-padding-padding-"
              "padding\"; i=$((i+1)); done; echo last-line; exec sleep 3600")
    p = pod("chatty", [container("main", script)], grace=0)
    floored.run(create_body(p))
    wait_for("the last line", lambda: floored.logs(p, "main", Tail=1).text == "last-line\n")
    c = floored.container(p, "main")
    assert c.attrs["HostConfig"]["LogConfig"]["Config"] == {"max-size": str(64 << 10),
                                                           "max-file": "2"}
    files = log_files(c)
    assert 1 <= len(files) <= 2, files
    assert sum(f.stat().st_size for f in files) <= 2 * (64 << 10) + (16 << 10)
    # tail and since read across the rotated files; the oldest lines are gone, not mangled.
    assert floored.logs(p, "main", Tail=3).text.splitlines() == [
        "line-24998 padding-padding-padding-padding",
        "line-24999 padding-padding-padding-padding", "last-line"]
    kept = floored.logs(p, "main", SinceSeconds=3600).text.splitlines()
    assert kept[-1] == "last-line" and not kept[0].startswith("line-0 ")
    numbers = [int(line.split()[0][5:]) for line in kept[:-1]]
    assert numbers == list(range(numbers[0], 25000))
    floored.delete(p)


def test_follow_of_a_rotated_log_delivers_what_comes_next(floored):
    # A burst that rotates the log twice, then, once the follow is open, more lines. (No
    # rotation while following: Docker 20.10's json-file follower can lose its place across
    # one, a limit of the engine, not of the sidecar.)
    burst = ("i=0; while [ $i -lt {n} ]; do echo \"{word}-$i padding-padding-padding-"
             "padding\"; i=$((i+1)); done")
    script = (burst.format(n=3000, word="burst") + "; echo burst-done; "
              "while [ ! -e /tmp/go ]; do sleep 0.2; done; " + burst.format(n=100, word="more")
              + "; echo the-end; exec sleep 3600")
    p = pod("rotating", [container("main", script)], grace=0)
    floored.run(create_body(p))
    wait_for("the first burst", lambda: floored.logs(p, "main", Tail=1).text == "burst-done\n")
    c = floored.container(p, "main")
    assert len(log_files(c)) == 2  # rotated already
    meta = p["metadata"]
    body = {"Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"],
            "ContainerName": "main", "Opts": {"Follow": True, "Tail": 1}}
    seen = b""
    with floored.http.stream("GET", "/getLogs", json=body) as r:
        assert r.status_code == 200
        chunks = r.iter_raw()
        seen += next(chunks)
        assert seen == b"burst-done\n"
        assert c.exec_run("touch /tmp/go").exit_code == 0
        for chunk in chunks:
            seen += chunk
            if b"the-end\n" in seen:
                break
    assert seen == b"burst-done\n" + b"".join(
        b"more-%d padding-padding-padding-padding\n" % i for i in range(100)) + b"the-end\n"
    assert c.attrs["HostConfig"]["LogConfig"]["Config"]["max-size"] == str(64 << 10)


def test_writing_past_an_emptydir_size_limit_evicts_the_pod(floored, tmp_path):
    # restartPolicy Always: an eviction must hold against Docker's restart policy, the
    # sidecar's supervisors, and a restart of the sidecar itself.
    script = ("dd if=/dev/zero of=/scratch/fill bs=64k count=64 2>/dev/null; echo filled; "
              "exec sleep 3600")
    p = pod("hoarder", [container("main", script, volumeMounts=[
        {"name": "scratch", "mountPath": "/scratch"}])], restart="Always", grace=30,
        volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}])
    assert floored.create(create_body(p)).status_code == 200
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'
    status = floored.wait(p, lambda s: "terminated" in state_of(s, "main")["state"],
                          timeout=60)
    terminated = state_of(status, "main")["state"]["terminated"]
    assert (terminated["reason"], terminated["message"]) == ("Evicted", message)
    assert terminated["exitCode"] != 0 and vk_phase(status) == "Failed"
    c = floored.container(p, "main")
    assert not c.attrs["State"]["Running"]
    floored.respawn(tmp_path, policy=FLOORS)
    status = floored.status(p)
    assert state_of(status, "main")["state"]["terminated"]["reason"] == "Evicted"
    c.reload()
    assert not c.attrs["State"]["Running"] and c.attrs["RestartCount"] == 0
    assert floored.delete(p).status_code == 200


def test_filling_the_root_filesystem_past_ephemeral_storage_evicts_the_pod(floored):
    # One pod sets its own limit; the other none, and gets the node's default (8Mi).
    fill = "dd if=/dev/zero of=/fill bs=64k count={n}; exec sleep 3600"
    own = pod("own-limit", [container("main", fill.format(n=32), resources={
        "limits": {"ephemeral-storage": "1Mi"}})], restart="Always", grace=0)
    unset = pod("no-limit", [container("main", fill.format(n=256))], restart="Always",
                grace=0)
    for p in (own, unset):
        assert floored.create(create_body(p)).status_code == 200
    for p, limit in ((own, "1Mi"), (unset, "8Mi")):
        status = floored.wait(p, lambda s: state_of(s, "main")["state"].get(
            "terminated", {}).get("reason") == "Evicted", timeout=60)
        assert state_of(status, "main")["state"]["terminated"]["message"] == (
            f'Container main exceeded its local ephemeral storage limit "{limit}".')
        assert not floored.container(p, "main").attrs["State"]["Running"]
        floored.delete(p)


def test_an_emptydir_without_size_limit_is_bounded_by_the_pods_total(floored):
    """No sizeLimit, no limits of its own: the node default (8Mi) per container is the pod's
    total, and its emptyDir counts against it, as the kubelet counts it."""
    script = "dd if=/dev/zero of=/scratch/fill bs=64k count=192; exec sleep 3600"
    p = pod("unbounded", [container("main", script, volumeMounts=[
        {"name": "scratch", "mountPath": "/scratch"}])], restart="Always", grace=0,
        volumes=[{"name": "scratch", "emptyDir": {}}])
    assert floored.create(create_body(p)).status_code == 200
    status = floored.wait(p, lambda s: state_of(s, "main")["state"].get(
        "terminated", {}).get("reason") == "Evicted", timeout=60)
    assert state_of(status, "main")["state"]["terminated"]["message"] == (
        "Pod ephemeral local storage usage exceeds the total limit of containers 8Mi.")
    assert not floored.container(p, "main").attrs["State"]["Running"]
    assert floored.delete(p).status_code == 200


def test_containers_without_limits_get_the_node_defaults(floored):
    p = pod("unbounded", [container("main", "exec sleep 3600"),
                          container("bounded", "exec sleep 3600", resources={
                              "limits": {"cpu": "250m", "memory": "128Mi"}})], grace=0)
    floored.run(create_body(p))
    host = floored.container(p, "main").attrs["HostConfig"]
    assert (host["NanoCpus"], host["Memory"]) == (500_000_000, 256 << 20)
    host = floored.container(p, "bounded").attrs["HostConfig"]
    assert (host["NanoCpus"], host["Memory"]) == (250_000_000, 128 << 20)
    floored.delete(p)


def test_status_of_too_many_pods_is_refused_naming_the_cap(floored):
    pods = [pod(f"s{i}", [container("main")]) for i in range(6)]
    r = floored.http.request("GET", "/status", json=pods)
    assert r.status_code == 413
    assert "Sidecar.MaxStatusPods" in r.text and "5" in r.text
    r = floored.http.request("GET", "/status", json=pods[:5])
    assert r.status_code == 200 and len(r.json()) == 5


@pytest.mark.parametrize("path", ["/create", "/status", "/delete", "/getLogs"])
def test_oversized_bodies_are_refused_before_they_are_read(floored, path):
    huge = json.dumps({"pad": "x" * (200 * 1024)}).encode()
    r = floored.http.request("POST", path, content=huge)
    assert r.status_code == 413, r.text
    assert "Sidecar.MaxBodyBytes" in r.text and str(64 * 1024) in r.text

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(200):
            yield b"x" * 1024

    r = floored.http.request("POST", path, content=chunked())
    assert r.status_code == 413, r.text
    assert "Sidecar.MaxBodyBytes" in r.text
    assert floored.http.get("/healthz").status_code == 200
