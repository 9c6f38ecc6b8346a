"""Volumes, resources and security contexts on the real engine, checked from INSIDE the
containers: what a user of the pod sees with cat, stat, id, mount, df and touch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecars import start_test_sidecar
from kube import config_map, container, create_body, pod, secret, state_of, vk_phase

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# --- helpers ------------------------------------------------------------------------------------


def run_all(sc, *bodies: dict[str, Any], phase: str = "Succeeded", timeout: float = 30.0) -> None:
    """Create every pod first, then wait for each: the pods start in parallel."""
    for body in bodies:
        r = sc.create(body)
        assert r.status_code == 200, r.text
    for body in bodies:
        sc.wait_phase(body["pod"], phase, timeout)


def out(sc, p: dict[str, Any], name: str) -> list[str]:
    r = sc.logs(p, name)
    assert r.status_code == 200, r.text
    return r.text.splitlines()


def delete_all(sc, *pods: dict[str, Any]) -> None:
    for p in pods:
        assert sc.delete(p).status_code == 200


def refused(sc, body: dict[str, Any]) -> str:
    """The create is refused with 422, and nothing of the pod exists afterwards."""
    r = sc.create(body)
    assert r.status_code == 422, r.text
    uid = body["pod"]["metadata"]["uid"]
    assert sc.docker.containers.list(all=True, filters={"label": f"io.interlink.pod.uid={uid}"}) == []
    assert not (sc.data_root / "pods" / uid).exists()
    return r.text


def mount(name: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "mountPath": path, **extra}


@pytest.fixture(scope="module")
def hostpath_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostpaths")
    (root / "allowed").mkdir()
    return root


@pytest.fixture(scope="module")
def permissive(docker_client, tmp_path_factory, hostpath_root):
    """A second sidecar whose operator allows privileged pods and hostPaths under one folder."""
    sc = start_test_sidecar(tmp_path_factory.mktemp("permissive"), docker_client, policy={
        "AllowPrivileged": True, "HostPathPrefixes": [str(hostpath_root / "allowed")]})
    yield sc
    sc.proc.stop()
    sc.cleanup()


# --- 1. configMap and secret volumes ------------------------------------------------------------

APP_CONFIG = config_map("app-config", {"app.properties": "color=blue\n", "log.level": "debug",
                                       "other.conf": "other"})
DB_CREDS = {**secret("db-creds", {"password": "s3cr3t"}), "stringData": {"username": "alice"}}
KEYED_VOLUMES = [
    {"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 0o640, "items": [
        {"key": "app.properties", "path": "conf/app.properties"},
        {"key": "log.level", "path": "level", "mode": 0o600}]}},
    {"name": "plain-cfg", "configMap": {"name": "app-config"}},
    {"name": "creds", "secret": {"secretName": "db-creds"}},
    {"name": "creds-items", "secret": {"secretName": "db-creds", "defaultMode": 0o400,
                                       "items": [{"key": "username", "path": "user.txt"}]}},
]
KEYED_MOUNTS = [mount("cfg", "/cfg"), mount("plain-cfg", "/plain"), mount("creds", "/creds"),
                mount("creds-items", "/creds-items")]


def test_config_map_and_secret_files_content_and_modes(sidecar):
    p = pod("keyed", [
        container("main", "cd /cfg && find . -type f | sort; cat conf/app.properties level; echo;"
                          " stat -c '%n %a %u %g' /cfg/conf/app.properties /cfg/level"
                          " /plain/other.conf /creds/password /creds/username"
                          " /creds-items/user.txt;"
                          " cat /creds/password; echo; cat /creds/username; echo;"
                          " cat /creds-items/user.txt; echo; ls /creds-items",
                  volumeMounts=KEYED_MOUNTS),
        # Another user of the image, neither owner nor in the files' group.
        container("nobody", "cat /creds/password 2>&1 || echo DENIED;"
                            " cat /cfg/level 2>&1 || echo DENIED; cat /plain/other.conf; echo",
                  volumeMounts=KEYED_MOUNTS, securityContext={"runAsUser": 65534}),
    ], volumes=KEYED_VOLUMES)
    run_all(sidecar, create_body(p, config_maps=[APP_CONFIG], secrets=[DB_CREDS]))
    assert out(sidecar, p, "main") == [
        "./conf/app.properties", "./level",  # only the items, at their paths
        "color=blue", "debug",
        "/cfg/conf/app.properties 640 0 0",  # defaultMode
        "/cfg/level 600 0 0",  # the item's own mode wins
        "/plain/other.conf 644 0 0",  # configMap default
        "/creds/password 440 0 0",  # secret default: nothing for others
        "/creds/username 440 0 0",
        "/creds-items/user.txt 400 0 0",  # explicit defaultMode honoured
        "s3cr3t", "alice", "alice",  # base64 data and stringData
        "user.txt",
    ]
    nobody = out(sidecar, p, "nobody")
    assert nobody[0].endswith("Permission denied") and nobody[1] == "DENIED", nobody
    assert nobody[2].endswith("Permission denied") and nobody[3] == "DENIED", nobody
    assert nobody[4] == "other"  # a plain configMap file is for everyone
    delete_all(sidecar, p)


def test_non_root_pod_reads_its_secrets_through_run_as_user_and_fs_group(sidecar):
    # JupyterHub-style: user 1000, group 100. The files belong to the pod's user and its
    # fsGroup, so the user reads them, and so does another user of the pod through the group.
    p = pod("keyed-user", [
        container("main", "id -u; cat /creds/password; echo; cat /cfg/level; echo;"
                          " stat -c '%a %u %g' /creds/password /cfg/level /creds-items/user.txt",
                  volumeMounts=KEYED_MOUNTS),
        container("other", "id -u; cat /creds/password; echo; cat /creds-items/user.txt 2>&1"
                           " || echo DENIED",
                  volumeMounts=KEYED_MOUNTS, securityContext={"runAsUser": 2000}),
    ], volumes=KEYED_VOLUMES, securityContext={"runAsUser": 1000, "fsGroup": 100})
    run_all(sidecar, create_body(p, config_maps=[APP_CONFIG], secrets=[DB_CREDS]))
    main = out(sidecar, p, "main")
    assert main[:3] == ["1000", "s3cr3t", "debug"]
    assert main[3].split() == ["440", "1000", "100"]  # fsGroup adds group read
    assert main[4].split() == ["640", "1000", "100"]
    assert main[5].split()[1:] == ["1000", "100"]
    other = out(sidecar, p, "other")
    assert other[:2] == ["2000", "s3cr3t"]
    assert other[2] == "alice"  # defaultMode 0400 still gets group read with an fsGroup
    delete_all(sidecar, p)


def test_optional_missing_objects_give_empty_volumes_and_required_ones_are_refused(sidecar):
    p = pod("optional", [container("main", "ls -A /cm | wc -l; ls -A /sec | wc -l; echo ran",
                                   volumeMounts=[mount("cm", "/cm"), mount("sec", "/sec")])],
            volumes=[{"name": "cm", "configMap": {"name": "absent-cm", "optional": True}},
                     {"name": "sec", "secret": {"secretName": "absent-secret",
                                                "optional": True}}])
    run_all(sidecar, create_body(p))
    assert [line.strip() for line in out(sidecar, p, "main")] == ["0", "0", "ran"]

    cm = pod("required-cm", [container("main", "true", volumeMounts=[mount("cm", "/cm")])],
             volumes=[{"name": "cm", "configMap": {"name": "absent-cm"}}])
    text = refused(sidecar, create_body(cm))
    assert "spec.volumes[0].configMap.name" in text and "'absent-cm'" in text
    assert "optional: true" in text and "tests/required-cm" in text
    sec = pod("required-secret", [container("main", "true",
                                            volumeMounts=[mount("s", "/s")])],
              volumes=[{"name": "s", "secret": {"secretName": "absent-secret"}}])
    text = refused(sidecar, create_body(sec))
    assert "spec.volumes[0].secret.secretName" in text and "'absent-secret'" in text
    delete_all(sidecar, p)


# --- 2. projected and downwardAPI volumes -------------------------------------------------------

CA_CERT = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVzdHM6ZGVmYXVsdCJ9.sig"


def test_service_account_volume_as_the_current_vk_sends_it(sidecar):
    volume = {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt",
                                                             "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
    p = pod("sa-user", [container(
        "main", f"cd {SA_DIR} && cat token; echo; cat ca.crt namespace; echo;"
                " stat -c '%n %a' token ca.crt namespace",
        volumeMounts=[mount("kube-api-access-x7k2p", SA_DIR, readOnly=True)],
        securityContext={"runAsUser": 1000})],  # a non-root user reads them too
        volumes=[volume], serviceAccountName="default")
    # The VK's own ConfigMap for the volume: named after it, path -> content.
    projected = config_map("kube-api-access-x7k2p",
                           {"token": TOKEN, "ca.crt": CA_CERT, "namespace": "tests"})
    run_all(sidecar, create_body(p, projected=[projected]))
    assert out(sidecar, p, "main") == [
        TOKEN, *CA_CERT.splitlines(), "tests",
        "token 644", "ca.crt 644", "namespace 644"]
    delete_all(sidecar, p)


def test_downward_api_volume_with_labels_annotations_and_name(sidecar):
    p = pod("downward", [container(
        "main", "cat /info/labels; echo; cat /info/annotations; echo; cat /info/name; echo;"
                " cat /info/ns",
        volumeMounts=[mount("info", "/info")])],
        labels={"app": "web", "tier": "front"},
        volumes=[{"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}])
    run_all(sidecar, create_body(p))
    assert out(sidecar, p, "main") == [
        'app="web"', 'tier="front"', 'note="a \\"quoted\\" one"', "downward", "tests"]
    delete_all(sidecar, p)


# --- 3. emptyDir, tmpfs, subPath, readOnly ------------------------------------------------------


def test_empty_dir_is_shared_between_the_containers_of_a_pod(sidecar):
    p = pod("shared-dir", [
        container("writer", "echo hello-from-writer > /shared/msg; id -u > /shared/writer-uid",
                  volumeMounts=[mount("shared", "/shared")],
                  securityContext={"runAsUser": 1000}),
        container("reader", "until [ -f /data/writer-uid ]; do sleep 0.1; done;"
                            " cat /data/msg; stat -c '%U' /data/msg",
                  volumeMounts=[mount("shared", "/data")]),
    ], volumes=[{"name": "shared", "emptyDir": {}}])
    run_all(sidecar, create_body(p))
    assert out(sidecar, p, "reader") == ["hello-from-writer", "user"]
    delete_all(sidecar, p)


def test_memory_empty_dir_is_a_sized_tmpfs_shared_by_the_pod(sidecar):
    p = pod("ram-disk", [
        container("a", "mount | grep ' /cache '; df -k /cache | tail -1;"
                       " echo from-a > /cache/note;"
                       " dd if=/dev/zero of=/cache/big bs=1M count=40 2>&1 | grep -c 'No space left';"
                       " rm -f /cache/big; until [ -f /cache/done ]; do sleep 0.1; done",
                  volumeMounts=[mount("cache", "/cache")]),
        container("b", "until [ -f /mem/note ]; do sleep 0.1; done; cat /mem/note;"
                       " mount | grep -c ' /mem type tmpfs'; touch /mem/done",
                  volumeMounts=[mount("cache", "/mem")]),
    ], volumes=[{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}}])
    run_all(sidecar, create_body(p))
    a = out(sidecar, p, "a")
    assert " on /cache type tmpfs " in a[0]
    assert a[1].split()[1] == "32768"  # 1K blocks: the sizeLimit
    assert a[2] == "1"  # writing 40Mi into it fails: the limit is real
    assert out(sidecar, p, "b") == ["from-a", "1"]
    uid = p["metadata"]["uid"]
    assert len(sidecar.docker.volumes.list(filters={"label": f"io.interlink.pod.uid={uid}"})) == 1
    delete_all(sidecar, p)
    assert sidecar.docker.volumes.list(filters={"label": f"io.interlink.pod.uid={uid}"}) == []


def test_sub_path_mounts_only_that_file_or_directory(sidecar):
    p = pod("sub-path", [
        container("a", "echo top > /work/top; mkdir -p /work/b-only;"
                       " echo from-a > /work/b-only/from-a;"
                       " until [ -f /work/b-only/from-b ]; do sleep 0.1; done;"
                       " cat /work/b-only/from-b",
                  volumeMounts=[mount("work", "/work")]),
        container("b", "until [ -f /mine/from-a ]; do sleep 0.1; done; ls -A /mine;"
                       " echo from-b > /mine/from-b; cat /opt/app.conf; echo;"
                       " ls /opt; [ -f /opt/app.conf ] && echo is-a-file",
                  volumeMounts=[mount("work", "/mine", subPath="b-only"),
                                mount("cfg", "/opt/app.conf", subPath="app.properties")]),
    ], volumes=[{"name": "work", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "app-config"}}])
    run_all(sidecar, create_body(p, config_maps=[APP_CONFIG]))
    assert out(sidecar, p, "a") == ["from-b"]
    # Only the sub-directory: no 'top'; only the one key: no other.conf/log.level.
    assert out(sidecar, p, "b") == ["from-a", "color=blue", "", "app.conf", "is-a-file"]
    delete_all(sidecar, p)


def test_read_only_mounts_and_config_map_and_secret_volumes_are_read_only(sidecar):
    check = ("for d in /rw /ro /cfg /sec /claim; do"
             " touch $d/new 2>/dev/null && echo $d writable || echo $d read-only; done;"
             " (echo changed > /cfg/log.level) 2>/dev/null || echo cfg-file-unchanged;"
             " cat /cfg/log.level; echo")
    p = pod("read-only", [container("main", check, volumeMounts=[
        mount("scratch", "/rw"), mount("scratch", "/ro", readOnly=True),
        mount("cfg", "/cfg"), mount("sec", "/sec"), mount("claim", "/claim")])],
        volumes=[{"name": "scratch", "emptyDir": {}},
                 {"name": "cfg", "configMap": {"name": "app-config"}},
                 {"name": "sec", "secret": {"secretName": "db-creds"}},
                 {"name": "claim", "persistentVolumeClaim": {"claimName": "ro-claim",
                                                             "readOnly": True}}])
    run_all(sidecar, create_body(p, config_maps=[APP_CONFIG], secrets=[DB_CREDS]))
    # Root inside, so only the mount itself can say no.
    assert out(sidecar, p, "main") == [
        "/rw writable", "/ro read-only", "/cfg read-only", "/sec read-only",
        "/claim read-only", "cfg-file-unchanged", "debug"]
    delete_all(sidecar, p)


# --- 4. persistentVolumeClaim -------------------------------------------------------------------


def test_claim_outlives_the_pod_like_a_jupyterhub_home(sidecar):
    jovyan = {"runAsUser": 1000, "fsGroup": 100}
    home = [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}]
    first = pod("jupyter-alice", [container(
        "notebook", "echo 'print(1)' > /home/jovyan/nb.py; mkdir /home/jovyan/.cache",
        volumeMounts=[mount("home", "/home/jovyan")])], volumes=home, securityContext=jovyan)
    run_all(sidecar, create_body(first))
    claim = sidecar.data_root / "claims" / "tests" / "claim-alice"
    pod_dir = sidecar.data_root / "pods" / first["metadata"]["uid"]
    assert (claim / "nb.py").read_text() == "print(1)\n"
    assert (claim / "nb.py").stat().st_uid == 1000
    assert pod_dir.is_dir()
    delete_all(sidecar, first)
    assert not pod_dir.exists()
    assert (claim / "nb.py").exists()

    again = pod("jupyter-alice", [container(
        "notebook", "cat /home/jovyan/nb.py; echo 'print(2)' >> /home/jovyan/nb.py && echo ok;"
                    " ls -d /home/jovyan/.cache",
        volumeMounts=[mount("home", "/home/jovyan")])], volumes=home, securityContext=jovyan)
    # The same claim name in another namespace is another claim.
    elsewhere = pod("jupyter-alice", [container(
        "notebook", "ls -A /home/jovyan | wc -l", volumeMounts=[mount("home", "/home/jovyan")])],
        volumes=home, namespace="other", securityContext=jovyan)
    run_all(sidecar, create_body(again), create_body(elsewhere))
    assert out(sidecar, again, "notebook") == ["print(1)", "ok", "/home/jovyan/.cache"]
    assert (claim / "nb.py").read_text() == "print(1)\nprint(2)\n"
    assert out(sidecar, elsewhere, "notebook")[0].strip() == "0"
    assert (sidecar.data_root / "claims" / "other" / "claim-alice").is_dir()
    delete_all(sidecar, again, elsewhere)


# --- 5. hostPath --------------------------------------------------------------------------------


def test_host_path_is_refused_by_default(sidecar, hostpath_root):
    p = pod("host-default", [container("main", "true", volumeMounts=[mount("h", "/h")])],
            volumes=[{"name": "h", "hostPath": {"path": str(hostpath_root / "allowed")}}])
    text = refused(sidecar, create_body(p))
    assert "spec.volumes[0].hostPath" in text and "Sidecar.HostPathPrefixes" in text


def test_host_path_under_an_allowed_prefix(permissive, hostpath_root):
    allowed = hostpath_root / "allowed"
    target = allowed / "datasets" / "run-1"
    assert not target.exists()
    p = pod("host-ok", [container("main", "echo written-in-pod > /data/out; ls /data",
                                  volumeMounts=[mount("data", "/data")])],
            volumes=[{"name": "data", "hostPath": {"path": str(target),
                                                   "type": "DirectoryOrCreate"}}])
    run_all(permissive, create_body(p))
    assert (target / "out").read_text() == "written-in-pod\n"  # created, then written through
    assert out(permissive, p, "main") == ["out"]
    delete_all(permissive, p)
    assert (target / "out").exists()  # the node's data is not the pod's to delete


@pytest.mark.parametrize("case, message", [
    ("missing-file", "hostPath type File needs an existing regular file"),
    ("outside", "outside the directories this node allows"),
    ("dotdot", "contains '..'"),
    ("symlink", "is a symlink"),
])
def test_host_path_refusals_on_a_permissive_node(permissive, hostpath_root, case, message):
    allowed = hostpath_root / "allowed"
    link = allowed / "escape-link"
    if case == "symlink" and not link.is_symlink():
        link.symlink_to(hostpath_root)
    path, kind = {
        "missing-file": (str(allowed / "no-such-file"), "File"),
        "outside": (str(hostpath_root / "elsewhere"), "DirectoryOrCreate"),
        "dotdot": (f"{allowed}/../elsewhere", "DirectoryOrCreate"),
        "symlink": (str(link / "inside-link"), "DirectoryOrCreate"),
    }[case]
    p = pod(f"host-{case}", [container("main", "true", volumeMounts=[mount("h", "/h")])],
            volumes=[{"name": "h", "hostPath": {"path": path, "type": kind}}])
    text = refused(permissive, create_body(p))
    assert message in text and "spec.volumes[0].hostPath" in text, text
    assert not (hostpath_root / "elsewhere").exists()
    assert not (hostpath_root / "inside-link").exists()
    assert not (allowed / "no-such-file").exists()


# --- 6. escapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("volume, mnt, message", [
    ({"configMap": {"name": "app-config", "items": [{"key": "log.level", "path": "../x"}]}},
     {}, "spec.volumes[0].configMap.items[0].path '../x' contains '..'"),
    ({"configMap": {"name": "app-config", "items": [{"key": "log.level",
                                                     "path": "/etc/passwd"}]}},
     {}, "spec.volumes[0].configMap.items[0].path '/etc/passwd' is absolute"),
    ({"emptyDir": {}}, {"subPath": "../../etc"},
     "spec.containers[0].volumeMounts[0].subPath '../../etc' contains '..'"),
])
def test_escape_attempts_are_refused_and_nothing_is_created(sidecar, volume, mnt, message):
    passwd = Path("/etc/passwd").read_bytes()
    p = pod("escape", [container("main", "echo pwned > /v/x",
                                 volumeMounts=[mount("v", "/v", **mnt)])],
            volumes=[{"name": "v", **volume}])
    text = refused(sidecar, create_body(p, config_maps=[APP_CONFIG]))
    assert message in text, text
    assert not (sidecar.data_root / "pods" / "x").exists()
    assert Path("/etc/passwd").read_bytes() == passwd


# --- 7. resources -------------------------------------------------------------------------------


def test_cpu_and_memory_limits_are_enforced(sidecar):
    cgroup = ("for f in /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max"
              " /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max; do"
              " [ -f $f ] && echo $f $(cat $f); done; true")
    p = pod("limited", [container("main", cgroup, resources={
        "limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m",
                                                                   "memory": "32Mi"}})])
    run_all(sidecar, create_body(p))
    host = sidecar.container(p, "main").attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000  # half a core, not a whole one
    assert host["Memory"] == 64 * 2**20 and host["MemorySwap"] == 64 * 2**20
    assert host["CpuShares"] == 256
    assert host["MemoryReservation"] == 32 * 2**20
    seen = dict(line.split(" ", 1) for line in out(sidecar, p, "main"))
    memory = seen.get("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                      seen.get("/sys/fs/cgroup/memory.max"))
    assert memory == str(64 * 2**20), seen
    if "/sys/fs/cgroup/cpu.max" in seen:
        assert seen["/sys/fs/cgroup/cpu.max"] == "50000 100000"
    else:
        assert seen["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] == "50000", seen
    delete_all(sidecar, p)


# --- 8. security contexts -----------------------------------------------------------------------


def test_users_groups_capabilities_read_only_root_and_no_new_privileges(sidecar):
    ids = pod("ids", [container("main", "id -u; id -g; id -G")],
              securityContext={"runAsUser": 1000, "runAsGroup": 3000,
                               "supplementalGroups": [4000], "fsGroup": 2000})
    probe = ("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status;"
             " touch /rootfs-test 2>/dev/null && echo root-writable || echo root-read-only;"
             " touch /tmp/x 2>/dev/null && echo tmp-writable || echo tmp-read-only")
    locked = pod("locked", [
        container("locked", probe, securityContext={
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}),
        container("plain", probe),  # the same probe without a security context
    ])
    run_all(sidecar, create_body(ids), create_body(locked))
    assert out(sidecar, ids, "main")[:2] == ["1000", "3000"]
    assert set(out(sidecar, ids, "main")[2].split()) == {"3000", "2000", "4000"}
    assert [line.split() for line in out(sidecar, locked, "locked")] == [
        ["CapEff:", "0000000000000400"],  # only CAP_NET_BIND_SERVICE (bit 10)
        ["NoNewPrivs:", "1"], ["root-read-only"], ["tmp-read-only"]]
    plain = [line.split() for line in out(sidecar, locked, "plain")]
    assert plain[0][0] == "CapEff:" and int(plain[0][1], 16) & ~0x400  # Docker's default set
    assert plain[1:] == [["NoNewPrivs:", "0"], ["root-writable"], ["tmp-writable"]]
    delete_all(sidecar, ids, locked)


def test_privileged_is_refused_by_default(sidecar):
    p = pod("priv", [container("main", "true", securityContext={"privileged": True})])
    text = refused(sidecar, create_body(p))
    assert "spec.containers[0].securityContext.privileged" in text
    assert "Sidecar.AllowPrivileged" in text


def test_privileged_is_allowed_when_the_operator_says_so(permissive):
    p = pod("priv-ok", [container(
        "main", "grep -E '^Cap(Eff|Bnd)' /proc/self/status; mount -t tmpfs none /mnt"
                " && echo mounted", securityContext={"privileged": True})])
    r = permissive.create(create_body(p))
    assert r.status_code == 200, r.text
    status = permissive.wait(p, lambda s: "terminated" in state_of(s, "main")["state"])
    assert permissive.container(p, "main").attrs["HostConfig"]["Privileged"] is True
    term = state_of(status, "main")["state"]["terminated"]
    if term["exitCode"] != 0 and "unable to apply caps" in (term.get("message") or ""):
        # An engine that itself runs inside a restricted container cannot grant every
        # capability: the pod must then fail with the engine's reason, not hang or lie.
        assert term["reason"] == "StartError" and vk_phase(status) == "Failed"
        delete_all(permissive, p)
        return
    assert term["exitCode"] == 0, status
    lines = [line.split() for line in out(permissive, p, "main")]
    assert lines[0][0] == "CapEff:" and lines[0][1] == lines[1][1]  # every capability
    assert int(lines[0][1], 16) & (1 << 21)  # CAP_SYS_ADMIN
    assert lines[2] == ["mounted"]
    delete_all(permissive, p)
