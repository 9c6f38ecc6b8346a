"""A tenant who controls a pod spec, or who can call the sidecar directly, attacks the node.

Each test makes the attack as it would be made (a raw request, a pod spec, a container that
plants symlinks) and looks at the outcome from outside: the host's filesystem, ``docker
inspect``, what another host user can read, what the pod itself sees.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
import uuid
from pathlib import Path

import pytest

from conftest import Sidecar, start_test_sidecar
from hostuser import run_as
from docker_sidecar.pinned_mounts import unpin_below
from kube import container, create_body, pod, secret, state_of

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def node(docker_client, tmp_path_factory) -> Sidecar:
    """A sidecar with the default (safe) configuration."""
    sc = start_test_sidecar(tmp_path_factory.mktemp("attacked"), docker_client)
    yield sc
    sc.proc.stop()
    sc.cleanup()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A host directory that no pod may see, change or remove."""
    root = tmp_path / "canary"
    root.mkdir()
    (root / "host-secret").write_text("the host's own data\n")
    os.chmod(root, 0o750)
    return root


def snapshot(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for p in sorted([path, *path.rglob("*")]):
        st = p.lstat()
        out.append((str(p), stat.S_IMODE(st.st_mode), st.st_uid))
    return out


def pod_containers(sc: Sidecar, p: dict) -> list:
    uid = p["metadata"]["uid"]
    return sc.docker.containers.list(all=True, filters={"label": f"io.interlink.pod.uid={uid}"})


def logged(sc: Sidecar, p: dict, name: str, text: str, timeout: float = 20.0) -> str:
    """Wait until the container's log says ``text``; the log."""
    deadline = time.monotonic() + timeout
    while text not in (logs := sc.logs(p, name).text):
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)
    return logs


def waiting_reason(sc: Sidecar, p: dict, name: str, timeout: float = 30.0) -> dict:
    def stuck(status: dict) -> bool:
        waiting = state_of(status, name)["state"].get("waiting") or {}
        return waiting.get("reason") == "CreateContainerConfigError"
    status = sc.wait(p, stuck, timeout)
    return state_of(status, name)["state"]["waiting"]


# --- 1. identity: a UID is never a path ------------------------------------------------------


@pytest.mark.parametrize("forged", ["{canary}", "../../../{canary_name}", "x/../../..", "",
                                    "5d3e2c1b-6a7f-4e8d-9c0b-1a2b3c4d5e6f/../.."])
def test_a_uid_that_is_a_path_reaches_no_host_directory(node, canary, forged):
    forged = forged.format(canary=canary, canary_name=canary.name)
    before = snapshot(canary)
    p = pod("victim", [container("main", "sleep 1")])
    p["metadata"]["uid"] = forged
    r = node.http.request("DELETE", "/delete", json=p)
    assert r.status_code == 400 and "metadata.uid" in r.text, r.text
    r = node.create(create_body(p))
    assert r.status_code == 400 and "metadata.uid" in r.text, r.text
    r = node.http.request("GET", "/status", json=[p])
    assert r.status_code == 400 and "metadata.uid" in r.text, r.text
    assert snapshot(canary) == before
    assert pod_containers(node, p) == []


@pytest.mark.parametrize("field, value", [
    ("namespace", "../../etc"), ("namespace", "Team_A"), ("name", "a/b"), ("name", "x" * 254)])
def test_names_that_are_not_kubernetes_names_are_refused(node, field, value):
    p = pod("named", [container("main", "sleep 1")])
    p["metadata"][field] = value
    r = node.create(create_body(p))
    assert r.status_code == 400 and f"metadata.{field}" in r.text, r.text
    assert pod_containers(node, p) == []


def test_a_container_name_that_is_a_path_is_refused(node):
    p = pod("cname", [container("main", "sleep 1")])
    p["spec"]["containers"][0]["name"] = "../../termination"
    r = node.create(create_body(p))
    assert r.status_code == 400 and "spec.containers[0].name" in r.text, r.text


# --- 2. admission: Pod Security baseline -----------------------------------------------------


@pytest.mark.parametrize("caps", [["SYS_ADMIN"], ["ALL"], ["sys_module"], ["CAP_NET_ADMIN"]])
def test_capabilities_beyond_the_default_set_are_refused(node, caps):
    p = pod("caps", [container("main", "sleep 1",
                               securityContext={"capabilities": {"add": caps}})])
    r = node.create(create_body(p))
    assert r.status_code == 422, r.text
    assert 'violates PodSecurity "baseline"' in r.text and "non-default capabilities" in r.text
    assert "spec.containers[0].securityContext.capabilities.add[0]" in r.text
    assert "Sidecar.AllowedCapabilities" in r.text
    assert pod_containers(node, p) == []


def test_allowed_security_settings_reach_docker(node):
    p = pod("applied", [container("main", "cat /proc/sys/net/ipv4/ping_group_range; sleep 30",
                                  securityContext={
                                      "capabilities": {"drop": ["ALL"], "add": ["net_bind_service"]},
                                      "allowPrivilegeEscalation": False,
                                      "seccompProfile": {"type": "RuntimeDefault"}})],
            securityContext={"sysctls": [{"name": "net.ipv4.ping_group_range",
                                          "value": "0 2147483647"}]})
    node.run(create_body(p))
    main = node.container(p, "main")
    host = main.attrs["HostConfig"]
    assert host["CapAdd"] == ["NET_BIND_SERVICE"] and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    infra = node.docker.containers.get(host["NetworkMode"].split(":", 1)[1])
    assert infra.attrs["HostConfig"]["Sysctls"] == {"net.ipv4.ping_group_range": "0 2147483647"}
    logged(node, p, "main", "2147483647")
    node.delete(p)


@pytest.mark.parametrize("mutate, control, key", [
    (lambda p: p["spec"].update(securityContext={"seccompProfile": {"type": "Unconfined"}}),
     "seccompProfile", "Sidecar.AllowUnconfinedSeccomp"),
    (lambda p: p["spec"]["initContainers"][0].update(securityContext={
        "appArmorProfile": {"type": "Unconfined"}}),
     "forbidden AppArmor profile", "Sidecar.AllowUnconfinedAppArmor"),
    (lambda p: p["metadata"]["annotations"].update({
        "container.apparmor.security.beta.kubernetes.io/main": "unconfined"}),
     "forbidden AppArmor profile", "Sidecar.AllowUnconfinedAppArmor"),
    (lambda p: p["spec"]["containers"][0].update(securityContext={
        "seLinuxOptions": {"type": "spc_t"}}), "seLinuxOptions", "Sidecar.AllowSELinuxOptions"),
    (lambda p: p["spec"]["containers"][0].update(securityContext={"procMount": "Unmasked"}),
     "procMount", "Sidecar.AllowUnmaskedProcMount"),
    (lambda p: p["spec"].update(securityContext={"sysctls": [
        {"name": "kernel.core_pattern", "value": "|/tmp/x"}]}),
     "forbidden sysctls", "Sidecar.AllowedUnsafeSysctls"),
    (lambda p: p["spec"].update(hostPID=True), "host namespaces", "Sidecar.AllowHostPID"),
    (lambda p: p["spec"]["initContainers"][0].update(securityContext={"privileged": True}),
     "privileged", "Sidecar.AllowPrivileged"),
    (lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": 22, "hostPort": 22}]),
     "hostPort", "Sidecar.AllowedHostPorts"),
    (lambda p: p["spec"].update(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
     "hostPath volumes", "Sidecar.HostPathPrefixes"),
])
def test_each_baseline_control_refuses_and_names_its_exemption(node, mutate, control, key):
    p = pod("pss", [container("main", "sleep 1")], init=[container("setup", "true")])
    mutate(p)
    r = node.create(create_body(p))
    assert r.status_code == 422, r.text
    assert 'violates PodSecurity "baseline"' in r.text and control in r.text and key in r.text
    assert pod_containers(node, p) == []


def test_restricted_level(docker_client, tmp_path):
    profiles = tmp_path / "seccomp"
    profiles.mkdir()
    # Everything allowed but mkdir: shows that the pod's own profile is what Docker applies.
    (profiles / "no-mkdir.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    sc = start_test_sidecar(tmp_path, docker_client, policy={
        "PodSecurity": "restricted", "SeccompProfileRoot": str(profiles)})
    try:
        plain = pod("plain", [container("main", "sleep 1")])
        r = sc.create(create_body(plain))
        assert r.status_code == 422, r.text
        for control in ("allowPrivilegeEscalation != false", "unrestricted capabilities",
                        "runAsNonRoot != true", "seccompProfile"):
            assert control in r.text
        assert 'violates PodSecurity "restricted"' in r.text
        good = pod("hardened", [container("main", "id -u; sleep 30", securityContext={
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}})],
            securityContext={"runAsNonRoot": True, "runAsUser": 1000,
                             "seccompProfile": {"type": "RuntimeDefault"}})
        sc.run(create_body(good))
        host = sc.container(good, "main").attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
        sc.delete(good)
        # runAsNonRoot without runAsUser: the image's user (root here) is refused at creation.
        rooted = pod("rooted", [container("main", "sleep 30", securityContext=dict(
            good["spec"]["containers"][0]["securityContext"]))],
            securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})
        assert sc.create(create_body(rooted)).status_code == 200
        assert "image will run as root" in waiting_reason(sc, rooted, "main")["message"]
        assert [c for c in pod_containers(sc, rooted)
                if c.labels["io.interlink.container.role"] == "main"] == []
        sc.delete(rooted)
        local = pod("local-profile", [container(
            "main", "mkdir /tmp/x || echo mkdir-denied; sleep 30",
            securityContext=dict(good["spec"]["containers"][0]["securityContext"]))],
            securityContext={"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {
                "type": "Localhost", "localhostProfile": "no-mkdir.json"}})
        sc.run(create_body(local))
        logged(sc, local, "main", "mkdir-denied")
        sc.delete(local)
    finally:
        sc.proc.stop()
        sc.cleanup()


def test_a_kubespawner_pod_runs_unchanged_under_baseline(node):
    """uid 1000, gid 100, fsGroup 100, a PVC home, no privileged init container."""
    p = pod("jupyter-alice", [container(
        "notebook", "id; touch /home/jovyan/ok && echo ready; sleep 30",
        ports=[{"name": "notebook-port", "containerPort": 8888, "protocol": "TCP"}],
        securityContext={"runAsUser": 1000, "runAsGroup": 100, "allowPrivilegeEscalation": False},
        volumeMounts=[{"name": "home", "mountPath": "/home/jovyan"}],
        resources={"limits": {"cpu": "1", "memory": "256Mi"}})],
        restart="OnFailure",
        securityContext={"fsGroup": 100},
        volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}])
    node.run(create_body(p))
    assert "uid=1000" in logged(node, p, "notebook", "ready")
    node.delete(p)


# --- 3. mounts that cannot be redirected -------------------------------------------------------


def test_an_init_container_cannot_swap_a_subpath_for_a_symlink(node, canary):
    before = snapshot(canary)
    p = pod("swap-init", [container("main", "ls -la /data; sleep 30",
                                    volumeMounts=[{"name": "work", "mountPath": "/data",
                                                   "subPath": "data"}])],
            init=[container("plant", f"rm -rf /work/data && ln -s {canary} /work/data",
                            volumeMounts=[{"name": "work", "mountPath": "/work"}])],
            volumes=[{"name": "work", "emptyDir": {}}])
    r = node.create(create_body(p))
    assert r.status_code == 200, r.text
    waiting = waiting_reason(node, p, "main")
    assert "symlink" in waiting["message"], waiting
    mains = [c for c in pod_containers(node, p)
             if c.labels["io.interlink.container.role"] == "main"]
    assert mains == []  # never created, so it never saw the host directory
    assert snapshot(canary) == before
    node.delete(p)
    assert snapshot(canary) == before


def test_a_second_pod_sharing_a_claim_cannot_redirect_a_subpath(node, canary):
    claim = f"shared-{uuid.uuid4().hex[:6]}"
    before = snapshot(canary)
    attacker = pod("claim-attacker", [container(
        "main", f"mkdir -p /c && rm -rf /c/home && ln -s {canary} /c/home && echo planted",
        volumeMounts=[{"name": "c", "mountPath": "/c"}])],
        volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": claim}}])
    node.run(create_body(attacker), "Succeeded")
    victim = pod("claim-victim", [container(
        "main", "ls -la /home/user; sleep 30",
        volumeMounts=[{"name": "c", "mountPath": "/home/user", "subPath": "home"}])],
        volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": claim}}])
    r = node.create(create_body(victim))
    assert r.status_code == 422 and "symlink" in r.text, r.text  # found at /create already
    assert pod_containers(node, victim) == []
    assert snapshot(canary) == before
    for p in (attacker, victim):
        node.delete(p)
    assert snapshot(canary) == before


def test_a_subpath_stays_pinned_when_docker_restarts_the_container(node, canary):
    """The container is created while the subPath is a plain directory; then a sibling swaps
    it for a symlink to the host, and Docker restarts the container under its policy."""
    p = pod("swap-restart", [
        container("victim", "test -e /data/marker || touch /data/marker; echo run; "
                  "ls /data; sleep 3; exit 1",
                  volumeMounts=[{"name": "work", "mountPath": "/data", "subPath": "data"}]),
        container("attacker", f"sleep 1; mv /vol/data /vol/old && ln -s {canary} /vol/data && "
                  "echo swapped; sleep 3600",
                  volumeMounts=[{"name": "work", "mountPath": "/vol"}]),
    ], restart="Always", volumes=[{"name": "work", "emptyDir": {}}])
    node.run(create_body(p))
    deadline = time.monotonic() + 60
    while True:
        logs = node.logs(p, "victim").text
        node.container(p, "victim").reload()
        if logs.count("run") >= 2 and node.container(p, "victim").attrs["RestartCount"] >= 1:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.5)
    assert "swapped" in node.logs(p, "attacker").text
    runs = logs.split("run\n")[1:]
    assert all("marker" in r for r in runs), logs  # the directory it was given, every time
    assert "host-secret" not in logs
    node.delete(p)
    assert (canary / "host-secret").exists()


def test_deleting_a_pod_never_deletes_through_its_pinned_mounts(node, tmp_path):
    """A claim mounted by subPath is pinned below the pod's directory; removing that directory
    must leave the claim's files alone."""
    claim = f"keep-{uuid.uuid4().hex[:6]}"
    p = pod("pinned-claim", [container("main", "echo precious > /data/file; sleep 30",
                                       volumeMounts=[{"name": "c", "mountPath": "/data",
                                                      "subPath": "work"}])],
            volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": claim}}])
    node.run(create_body(p))
    stored = node.data_root / "claims" / "tests" / claim / "work" / "file"
    deadline = time.monotonic() + 20
    while not stored.exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert node.delete(p).status_code == 200
    assert stored.read_text() == "precious\n"
    pod_dir = node.data_root / "pods" / p["metadata"]["uid"]
    assert not pod_dir.exists()
    assert str(pod_dir) not in Path("/proc/self/mountinfo").read_text()


# --- 6. files on the node ----------------------------------------------------------------------


def test_a_pods_files_are_out_of_reach_of_other_host_users(node):
    p = pod("private", [container("main", "cat /secret/token; echo; touch /scratch/x; "
                                  "echo msg > /dev/termination-log; sleep 30",
                                  volumeMounts=[{"name": "s", "mountPath": "/secret"},
                                                {"name": "scratch", "mountPath": "/scratch"}])],
            securityContext={"runAsUser": 1000, "fsGroup": 100},
            volumes=[{"name": "s", "secret": {"secretName": "creds"}},
                     {"name": "scratch", "emptyDir": {}}])
    node.run(create_body(p, secrets=[secret("creds", {"token": "hunter2"})]))
    logged(node, p, "main", "hunter2")  # the pod itself reads its secret
    pod_dir = node.data_root / "pods" / p["metadata"]["uid"]
    files = {
        "secret": pod_dir / "volumes" / "s" / "token",
        "request": pod_dir / "request.json",
        "termination": pod_dir / "termination" / "main",
        "emptyDir": pod_dir / "volumes" / "scratch" / "x",
    }
    for what, path in files.items():
        assert path.exists(), what
        # The host user that has the pod's uid and group, and an unrelated one.
        for uid, gid in ((1000, 100), (65534, 65534)):
            read = run_as(uid, gid, "cat", str(path))
            assert read.returncode != 0 and "Permission denied" in read.stderr, (what, read)
            write = run_as(uid, gid, "sh", "-c", f"echo x >> {path}")
            assert write.returncode != 0, (what, write)
    planted = run_as(1000, 100, "touch", str(pod_dir / "volumes" / "scratch" / "planted"))
    assert planted.returncode != 0
    for d in (node.data_root / "pods", node.data_root / "claims", pod_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    node.delete(p)


# --- 1. recovery checks what it finds on disk --------------------------------------------------


def test_recovery_touches_nothing_it_did_not_make(own_sidecar, canary, tmp_path):
    sc = own_sidecar
    before = snapshot(canary)
    pods_root = sc.data_root / "pods"
    (pods_root / "not-a-pod").symlink_to(canary)
    (pods_root / "escape").mkdir()
    # A directory named like a pod whose stored request names another pod (a path as UID).
    liar = pods_root / str(uuid.uuid4())
    liar.mkdir()
    forged = pod("liar", [container("main", "sleep 1")])
    forged["metadata"]["uid"] = str(canary)
    (liar / "request.json").write_text(json.dumps(create_body(forged)))
    sc.respawn(tmp_path)
    assert snapshot(canary) == before
    assert (pods_root / "not-a-pod").is_symlink() and (pods_root / "escape").is_dir()
    assert "not a pod directory" in sc.proc.output()


def test_pins_a_host_reboot_dropped_are_made_again(own_sidecar, tmp_path):
    """A reboot empties the host's mount table but Docker keeps, and restarts, the containers:
    the restarted sidecar pins their mounts again and restarts them, so that a subPath shows
    its data rather than an empty staging directory (where writes would be lost)."""
    sc = own_sidecar
    claim = f"reboot-{uuid.uuid4().hex[:6]}"
    data = sc.data_root / "claims" / "tests" / claim / "work"
    p = pod("rebooted", [container("main", "echo start; ls /data; sleep 3600",
                                   volumeMounts=[{"name": "c", "mountPath": "/data",
                                                  "subPath": "work"}])],
            restart="Always",
            volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": claim}}])
    data.mkdir(parents=True)
    (data / "users-file").write_text("x")
    sc.run(create_body(p))
    pod_dir = sc.data_root / "pods" / p["metadata"]["uid"]
    sc.proc.stop(signal.SIGKILL)
    assert unpin_below(pod_dir / "mounts") == []  # what a reboot does to the pins
    main = sc.container(p, "main")
    main.restart(timeout=1)  # and what Docker does after it
    deadline = time.monotonic() + 20
    while main.logs().decode().count("start") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "users-file" not in main.logs().decode().split("start")[-1]
    sc.respawn(tmp_path)
    deadline = time.monotonic() + 30
    while main.logs().decode().count("start") < 3:
        assert time.monotonic() < deadline, sc.proc.output()[-2000:]
        time.sleep(0.2)
    time.sleep(0.5)
    assert "users-file" in main.logs().decode().split("start")[-1]
    assert "pinned the mounts of container main again" in sc.proc.output()
    sc.delete(p)
    assert (data / "users-file").exists()


def test_a_subpath_may_still_name_one_file_of_a_claim(node):
    claim = f"file-{uuid.uuid4().hex[:6]}"
    stored = node.data_root / "claims" / "tests" / claim
    stored.mkdir(parents=True)
    (stored / "app.ini").write_text("colour=blue\n")
    p = pod("file-subpath", [container("main", "cat /etc/app.ini; sleep 30",
                                       volumeMounts=[{"name": "c", "mountPath": "/etc/app.ini",
                                                      "subPath": "app.ini"}])],
            volumes=[{"name": "c", "persistentVolumeClaim": {"claimName": claim}}])
    node.run(create_body(p))
    logged(node, p, "main", "colour=blue")
    node.delete(p)
    assert (stored / "app.ini").read_text() == "colour=blue\n"


def test_a_huge_grace_period_cannot_wedge_a_deletion(node):
    p = pod("forever", [container("main", "trap 'exit 0' TERM; sleep 3600 & wait")],
            grace=10**12)
    node.run(create_body(p))
    p["metadata"]["deletionGracePeriodSeconds"] = 10**12
    r = node.delete(p)
    assert r.status_code == 200, r.text
    assert pod_containers(node, p) == []
