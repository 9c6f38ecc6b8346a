"""Pod volumes on disk: what a container would find at its mount paths (contents, modes, owners),
and every way a pod could try to get out of its volumes."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from docker_sidecar.fields import PodFacts
from docker_sidecar.volumes import (
    _FileSet,
    DirSpec,
    MountSpec,
    PodVolumes,
    TmpfsVolume,
    VolumeError,
    VolumePolicy,
    container_mounts,
    materialize,
    plan_volumes,
    remove_pod_dir,
)
from interlink_common.wire import ConfigMap, Secret

FIXTURES = Path(__file__).parent.parent / "fixtures"
UID = "5d3e2c1b-6a7f-4e8d-9c0b-1a2b3c4d5e6f"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


# --- helpers ------------------------------------------------------------------------------------


def make_pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None, *,
             namespace: str = "team-a", labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None,
             resources: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": namespace, "uid": UID,
                     "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "busybox",
                                 "volumeMounts": mounts or [], "resources": resources or {}}],
                 "volumes": volumes},
    }


def config_map(name: str, data: dict[str, str] | None = None,
               binary: dict[str, bytes] | None = None) -> ConfigMap:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": "team-a"}, "data": data}
    if binary:
        body["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    return ConfigMap.model_validate(body)


def secret(name: str, data: dict[str, bytes], string_data: dict[str, str] | None = None) -> Secret:
    return Secret.model_validate({
        "metadata": {"name": name, "namespace": "team-a"}, "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        "stringData": string_data})


def plan(tmp_path: Path, pod: dict[str, Any], *, cms: tuple[ConfigMap, ...] = (),
         secrets: tuple[Secret, ...] = (), projected: tuple[ConfigMap, ...] = (),
         policy: VolumePolicy = VolumePolicy(), run_as_uid: int | None = None,
         fs_group: int | None = None) -> PodVolumes:
    return plan_volumes(
        pod, config_maps={c.metadata.name: c for c in cms},
        secrets={s.metadata.name: s for s in secrets},
        projected_maps={p.metadata.name: p for p in projected},
        facts=PodFacts.from_pod(pod, pod_ip="10.0.0.7"), pod_dir=tmp_path / "pods" / UID,
        claims_root=tmp_path / "claims", policy=policy, volume_prefix="il_pod_",
        run_as_uid=run_as_uid, fs_group=fs_group)


def mounted(tmp_path: Path, pod: dict[str, Any], **kwargs: Any) -> dict[str, MountSpec]:
    """Plan, materialize, and return the first container's mounts by target."""
    volumes = plan(tmp_path, pod, **kwargs)
    mounts, dirs = container_mounts(pod["spec"]["containers"][0], volumes,
                                    field_prefix="spec.containers[0]")
    materialize(volumes, dirs, root=tmp_path)
    return {m.target: m for m in mounts}


def mode_of(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def listing(root: str | Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), as a container would see the mount."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            out[str(full.relative_to(root))] = full.read_bytes()
    return out


# --- configMap ----------------------------------------------------------------------------------


def test_config_map_without_items_gives_every_key_as_a_read_only_file(tmp_path):
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}],
                   [{"name": "cfg", "mountPath": "/etc/app"}])
    cm = config_map("app", {"settings.ini": "[main]\ncolour = blue\n", "level": "debug"},
                    binary={"logo.png": b"\x89PNG\x00\xff"})
    m = mounted(tmp_path, pod, cms=(cm,))["/etc/app"]
    assert m.kind == "bind" and m.read_only  # configMaps are read-only even without readOnly
    assert listing(m.source) == {"settings.ini": b"[main]\ncolour = blue\n", "level": b"debug",
                                 "logo.png": b"\x89PNG\x00\xff"}
    assert mode_of(Path(m.source) / "level") == 0o644
    assert Path(m.source) == tmp_path / "pods" / UID / "volumes" / "cfg"


def test_config_map_items_pick_keys_paths_and_modes(tmp_path):
    pod = make_pod([{"name": "cfg", "configMap": {
        "name": "app", "defaultMode": 0o600,
        "items": [{"key": "settings", "path": "conf/app.ini"},
                  {"key": "run", "path": "bin/run.sh", "mode": 0o755}]}}],
        [{"name": "cfg", "mountPath": "/etc/app"}])
    cm = config_map("app", {"settings": "a=1\n", "run": "#!/bin/sh\n", "unused": "x"})
    root = Path(mounted(tmp_path, pod, cms=(cm,))["/etc/app"].source)
    assert listing(root) == {"conf/app.ini": b"a=1\n", "bin/run.sh": b"#!/bin/sh\n"}
    assert mode_of(root / "conf/app.ini") == 0o600
    assert mode_of(root / "bin/run.sh") == 0o755


def test_missing_config_map_is_an_error_unless_optional(tmp_path):
    pod = make_pod([{"name": "cfg", "configMap": {"name": "absent"}}])
    with pytest.raises(VolumeError, match=r"spec\.volumes\[0\]\.configMap\.name.*'absent'.*"
                                          r"optional: true"):
        plan(tmp_path, pod)

    pod = make_pod([{"name": "cfg", "configMap": {"name": "absent", "optional": True}}],
                   [{"name": "cfg", "mountPath": "/etc/app"}])
    root = mounted(tmp_path, pod)["/etc/app"].source
    assert os.path.isdir(root) and listing(root) == {}


def test_missing_key_is_an_error_unless_optional(tmp_path):
    cm = config_map("app", {"present": "yes"})
    items = [{"key": "gone", "path": "gone.txt"}, {"key": "present", "path": "p.txt"}]
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app", "items": items}}])
    with pytest.raises(VolumeError,
                       match=r"spec\.volumes\[0\]\.configMap\.items\[0\]\.key.*'gone'"):
        plan(tmp_path, pod, cms=(cm,))

    pod = make_pod([{"name": "cfg", "configMap": {"name": "app", "items": items,
                                                 "optional": True}}],
                   [{"name": "cfg", "mountPath": "/etc/app"}])
    assert listing(mounted(tmp_path, pod, cms=(cm,))["/etc/app"].source) == {"p.txt": b"yes"}


def test_two_items_on_one_path_are_refused(tmp_path):
    cm = config_map("app", {"a": "1", "b": "2"})
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app", "items": [
        {"key": "a", "path": "conf"}, {"key": "b", "path": "conf/b"}]}}])
    with pytest.raises(VolumeError, match=r"items\[1\].*collides"):
        plan(tmp_path, pod, cms=(cm,))


# --- secret -------------------------------------------------------------------------------------


def test_secret_files_are_decoded_and_not_world_readable(tmp_path):
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}],
                   [{"name": "creds", "mountPath": "/etc/creds"}])
    s = secret("db", {"username": b"admin", "password": b"old"}, {"password": "s3cret pass\n"})
    root = Path(mounted(tmp_path, pod, secrets=(s,))["/etc/creds"].source)
    # stringData wins over data, as the API server merges them
    assert listing(root) == {"username": b"admin", "password": b"s3cret pass\n"}
    assert mode_of(root / "password") == 0o440
    assert not mode_of(root / "password") & 0o007


@as_root
def test_secret_owned_by_run_as_user_and_fs_group(tmp_path):
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}}],
                   [{"name": "creds", "mountPath": "/etc/creds"}])
    s = secret("db", {"token": b"t0k"})
    root = Path(mounted(tmp_path, pod, secrets=(s,), run_as_uid=1000,
                        fs_group=2000)["/etc/creds"].source)
    st = os.stat(root / "token")
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    # fsGroup adds group-read, so a user in the group can read an 0400 secret
    assert stat.S_IMODE(st.st_mode) == 0o440


@as_root
def test_secret_without_fs_group_is_owned_by_run_as_user_only(tmp_path):
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}],
                   [{"name": "creds", "mountPath": "/etc/creds"}])
    root = Path(mounted(tmp_path, pod, secrets=(secret("db", {"k": b"v"}),),
                        run_as_uid=1000)["/etc/creds"].source)
    st = os.stat(root / "k")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 0, 0o440)


def test_explicit_secret_modes_are_honoured(tmp_path):
    pod = make_pod([{"name": "creds", "secret": {
        "secretName": "db", "defaultMode": 0o644,
        "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "b", "mode": 0o600}]}}],
        [{"name": "creds", "mountPath": "/etc/creds"}])
    root = Path(mounted(tmp_path, pod, secrets=(secret("db", {"a": b"1", "b": b"2"}),))
                ["/etc/creds"].source)
    assert mode_of(root / "a") == 0o644
    assert mode_of(root / "b") == 0o600


def test_legacy_fixture_secret_with_default_mode_0400(tmp_path):
    body = json.loads((FIXTURES / "legacy_create_configmap_secret.json").read_text())
    pod = body["pod"]
    m = mounted(tmp_path, pod,
                cms=tuple(ConfigMap.model_validate(c) for c in body["configmaps"]),
                secrets=tuple(Secret.model_validate(s) for s in body["secrets"]))
    assert listing(m["/etc/app"].source) == {"settings.ini": b'[main]\ncolour = "blue"\n'}
    assert listing(m["/etc/creds"].source) == {"user": b"admin"}
    assert mode_of(Path(m["/etc/creds"].source) / "user") == 0o400


def test_secret_with_bad_base64_names_the_key(tmp_path):
    bad = Secret.model_validate({"metadata": {"name": "db"}, "data": {"pw": "not base64!"}})
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db"}}])
    with pytest.raises(VolumeError, match=r"secret 'db' data\['pw'\] is not valid base64"):
        plan(tmp_path, pod, secrets=(bad,))


# --- escapes ------------------------------------------------------------------------------------

ESCAPES = ["../x", "/etc/passwd", "a/../../b"]


@pytest.mark.parametrize("path", ESCAPES)
def test_item_paths_that_escape_are_refused(tmp_path, path):
    pod = make_pod([{"name": "creds", "secret": {"secretName": "db",
                                                 "items": [{"key": "k", "path": path}]}}])
    with pytest.raises(VolumeError, match=r"spec\.volumes\[0\]\.secret\.items\[0\]\.path"):
        plan(tmp_path, pod, secrets=(secret("db", {"k": b"v"}),))


@pytest.mark.parametrize("key", ESCAPES)
def test_keys_that_are_not_file_names_are_refused(tmp_path, key):
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}])
    with pytest.raises(VolumeError, match="not a valid key"):
        plan(tmp_path, pod, cms=(config_map("app", {key: "pwned"}),))
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app",
                                                 "items": [{"key": key, "path": "ok"}]}}])
    with pytest.raises(VolumeError, match=r"items\[0\]\.key"):
        plan(tmp_path, pod, cms=(config_map("app", {key: "pwned"}),))


@pytest.mark.parametrize("sub", ESCAPES)
def test_sub_paths_that_escape_are_refused(tmp_path, sub):
    pod = make_pod([{"name": "scratch", "emptyDir": {}}],
                   [{"name": "scratch", "mountPath": "/data", "subPath": sub}])
    volumes = plan(tmp_path, pod)
    with pytest.raises(VolumeError, match=r"spec\.containers\[0\]\.volumeMounts\[0\]\.subPath"):
        container_mounts(pod["spec"]["containers"][0], volumes, field_prefix="spec.containers[0]")


@pytest.mark.parametrize("path", ESCAPES)
def test_downward_api_paths_that_escape_are_refused(tmp_path, path):
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": path, "fieldRef": {"fieldPath": "metadata.name"}}]}}])
    with pytest.raises(VolumeError, match=r"downwardAPI\.items\[0\]\.path"):
        plan(tmp_path, pod)


def test_sub_path_through_a_symlink_out_of_a_claim_is_refused(tmp_path):
    pod = make_pod([{"name": "home", "persistentVolumeClaim": {"claimName": "alice"}}],
                   [{"name": "home", "mountPath": "/home/alice", "subPath": "etc"}])
    claim = tmp_path / "claims" / "team-a" / "alice"
    claim.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (claim / "etc").symlink_to(outside)  # left there by an earlier pod
    with pytest.raises(VolumeError, match="is a symlink"):
        mounted(tmp_path, pod)


def test_planning_does_not_touch_the_filesystem(tmp_path):
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "home", "persistentVolumeClaim": {"claimName": "alice"}}],
                   [{"name": "scratch", "mountPath": "/s", "subPath": "x/y"}])
    volumes = plan(tmp_path, pod, cms=(config_map("app", {"a": "1"}),))
    container_mounts(pod["spec"]["containers"][0], volumes, field_prefix="spec.containers[0]")
    assert list(tmp_path.iterdir()) == []


# --- projected and downwardAPI ------------------------------------------------------------------


def test_service_account_volume_uses_the_vk_precomputed_files(tmp_path):
    body = json.loads((FIXTURES / "current_create_serviceaccount.json").read_text())
    pod = body["pod"]
    pm = ConfigMap.model_validate(body["projectedvolumesmaps"][0])
    m = mounted(tmp_path, pod, projected=(pm,),
                cms=tuple(ConfigMap.model_validate(c) for c in body["configmaps"]))
    mount = m["/var/run/secrets/kubernetes.io/serviceaccount"]
    assert mount.read_only
    files = listing(mount.source)
    assert files == {k: v.encode() for k, v in pm.data.items()}
    assert set(files) == {"token", "ca.crt", "namespace"}
    assert mode_of(Path(mount.source) / "token") == 0o644  # defaultMode 420 sent by the VK


def test_projected_sources_resolved_here_when_the_vk_sent_no_map(tmp_path):
    pod = make_pod([{"name": "bundle", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}},
        {"configMap": {"name": "app", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"secret": {"name": "db", "items": [{"key": "pw", "path": "creds/pw"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}], [{"name": "bundle", "mountPath": "/var/run/bundle"}])
    root = Path(mounted(tmp_path, pod, cms=(config_map("app", {"ca.crt": "PEM"}),),
                        secrets=(secret("db", {"pw": b"hunter2"}),))["/var/run/bundle"].source)
    # no cluster to mint a token from: the token file is simply absent
    assert listing(root) == {"ca.crt": b"PEM", "creds/pw": b"hunter2", "namespace": b"team-a"}
    assert mode_of(root / "ca.crt") == 0o644
    assert mode_of(root / "creds/pw") == 0o440


def test_projected_map_data_wins_and_config_map_fills_the_rest(tmp_path):
    pod = make_pod([{"name": "bundle", "projected": {"sources": [
        {"configMap": {"name": "app"}},
        {"serviceAccountToken": {"path": "token"}},
    ]}}], [{"name": "bundle", "mountPath": "/b"}])
    pm = config_map("bundle", {"token": "jwt", "a": "from-vk"})
    cm = config_map("app", {"a": "from-configmap", "b": "only-in-configmap"})
    root = mounted(tmp_path, pod, cms=(cm,), projected=(pm,))["/b"].source
    assert listing(root) == {"token": b"jwt", "a": b"from-vk", "b": b"only-in-configmap"}


def test_projected_config_map_missing_is_an_error_only_without_a_vk_map(tmp_path):
    volume = {"name": "bundle", "projected": {"sources": [
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}
    with pytest.raises(VolumeError, match=r"sources\[0\]\.configMap\.name.*'kube-root-ca\.crt'"):
        plan(tmp_path, make_pod([volume]))
    pm = config_map("bundle", {"ca.crt": "PEM"})
    volumes = plan(tmp_path, make_pod([volume]), projected=(pm,))
    assert [(f.path.name, f.content) for f in volumes.files] == [("ca.crt", b"PEM")]


def test_legacy_vk_service_account_volume_without_its_objects_still_plans(tmp_path):
    """The legacy VK sends neither the kube-root-ca.crt ConfigMap nor a token for the volume the
    cluster adds to every pod: the pod runs without those files instead of being refused."""
    volume = {"name": "kube-api-access-x7k2p", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    volumes = plan(tmp_path, make_pod([volume]))
    assert [(f.path.name, f.content) for f in volumes.files] == [("namespace", b"team-a")]


def test_downward_api_labels_annotations_and_resources(tmp_path):
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app",
                                             "resource": "limits.memory", "divisor": "1Mi"}},
    ]}}], [{"name": "info", "mountPath": "/etc/podinfo"}],
        labels={"tier": "db", "app": "web"}, annotations={"note": 'say "hi"'},
        resources={"limits": {"memory": "512Mi"}})
    root = mounted(tmp_path, pod)["/etc/podinfo"].source
    assert listing(root) == {
        "labels": b'app="web"\ntier="db"',  # sorted, quoted, no trailing newline
        "annotations": b'note="say \\"hi\\""',
        "tier": b"db", "name": b"web", "mem": b"512"}


def test_downward_api_unknown_container_and_field_are_refused(tmp_path):
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "cpu", "resourceFieldRef": {"containerName": "nope",
                                             "resource": "limits.cpu"}}]}}])
    with pytest.raises(VolumeError, match=r"items\[0\]\.resourceFieldRef\.containerName.*app"):
        plan(tmp_path, pod)
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "x", "fieldRef": {"fieldPath": "spec.nothing"}}]}}])
    with pytest.raises(VolumeError, match=r"items\[0\]\.fieldRef\.fieldPath"):
        plan(tmp_path, pod)


def test_downward_api_uses_the_vk_map_when_present(tmp_path):
    pod = make_pod([{"name": "info", "downwardAPI": {"items": [
        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}])
    volumes = plan(tmp_path, pod, projected=(config_map("info", {"ip": "10.1.2.3"}),))
    assert [f.content for f in volumes.files] == [b"10.1.2.3"]


# --- emptyDir -----------------------------------------------------------------------------------


def test_empty_dir_is_world_writable_and_shared_by_containers(tmp_path):
    pod = make_pod([{"name": "shared", "emptyDir": {}}],
                   [{"name": "shared", "mountPath": "/shared"}])
    pod["spec"]["containers"].append({"name": "side", "image": "busybox", "volumeMounts": [
        {"name": "shared", "mountPath": "/in", "readOnly": True}]})
    volumes = plan(tmp_path, pod)
    main, _ = container_mounts(pod["spec"]["containers"][0], volumes, field_prefix="c0")
    side, _ = container_mounts(pod["spec"]["containers"][1], volumes, field_prefix="c1")
    materialize(volumes, root=tmp_path)
    assert main[0].source == side[0].source
    assert not main[0].read_only and side[0].read_only
    assert mode_of(main[0].source) == 0o777


@as_root
def test_empty_dir_with_fs_group_belongs_to_the_group(tmp_path):
    pod = make_pod([{"name": "shared", "emptyDir": {}}], [{"name": "shared", "mountPath": "/s"}])
    path = mounted(tmp_path, pod, fs_group=2000)["/s"].source
    st = os.stat(path)
    assert st.st_gid == 2000 and stat.S_IMODE(st.st_mode) == 0o777 | stat.S_ISGID


def test_memory_empty_dir_is_a_sized_tmpfs_volume(tmp_path):
    pod = make_pod([{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
                   [{"name": "cache", "mountPath": "/cache"}])
    volumes = plan(tmp_path, pod)
    assert volumes.tmpfs == [TmpfsVolume("il_pod_cache", 64 * 2**20)]
    mounts, dirs = container_mounts(pod["spec"]["containers"][0], volumes, field_prefix="c")
    assert mounts == [MountSpec("il_pod_cache", "/cache", False, "volume")] and dirs == []
    materialize(volumes, root=tmp_path)
    assert not (tmp_path / "pods" / UID / "volumes" / "cache").exists()


def test_memory_empty_dir_is_capped_by_the_pod_memory_limit(tmp_path):
    pod = make_pod([{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                    {"name": "shm", "emptyDir": {"medium": "Memory"}}],
                   resources={"limits": {"memory": "1Gi"}})
    assert plan(tmp_path, pod).tmpfs == [TmpfsVolume("il_pod_cache", 2**30),
                                         TmpfsVolume("il_pod_shm", 2**30)]
    no_limit = make_pod([{"name": "shm", "emptyDir": {"medium": "Memory"}}])
    assert plan(tmp_path, no_limit).tmpfs == [TmpfsVolume("il_pod_shm", None)]


def test_sub_path_on_memory_empty_dir_is_refused(tmp_path):
    pod = make_pod([{"name": "cache", "emptyDir": {"medium": "Memory"}}],
                   [{"name": "cache", "mountPath": "/cache", "subPath": "a"}])
    with pytest.raises(VolumeError, match=r"volumeMounts\[0\]\.subPath.*medium: Memory"):
        container_mounts(pod["spec"]["containers"][0], plan(tmp_path, pod), field_prefix="c")


def test_bad_empty_dir_medium_and_size(tmp_path):
    with pytest.raises(VolumeError, match=r"emptyDir\.medium 'HugePages'"):
        plan(tmp_path, make_pod([{"name": "h", "emptyDir": {"medium": "HugePages"}}]))
    with pytest.raises(VolumeError, match=r"emptyDir\.sizeLimit"):
        plan(tmp_path, make_pod([{"name": "h", "emptyDir": {"medium": "Memory",
                                                           "sizeLimit": "lots"}}]))


# --- subPath ------------------------------------------------------------------------------------


def test_sub_path_to_a_config_map_file_mounts_just_that_file(tmp_path):
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}],
                   [{"name": "cfg", "mountPath": "/etc/app.ini", "subPath": "settings.ini"}])
    volumes = plan(tmp_path, pod, cms=(config_map("app", {"settings.ini": "a=1"}),))
    mounts, dirs = container_mounts(pod["spec"]["containers"][0], volumes, field_prefix="c")
    assert dirs == []  # the file is planned already; nothing to create
    materialize(volumes, dirs, root=tmp_path)
    assert mounts[0].read_only and Path(mounts[0].source).read_bytes() == b"a=1"


def test_sub_path_directory_is_created_like_its_volume(tmp_path):
    pod = make_pod([{"name": "scratch", "emptyDir": {}}],
                   [{"name": "scratch", "mountPath": "/work", "subPath": "users/alice"}])
    volumes = plan(tmp_path, pod)
    mounts, dirs = container_mounts(pod["spec"]["containers"][0], volumes, field_prefix="c")
    root = tmp_path / "pods" / UID / "volumes" / "scratch"
    assert mounts[0].source == str(root / "users" / "alice")
    assert [d.path for d in dirs] == [root / "users" / "alice"]
    materialize(volumes, dirs, root=tmp_path)
    assert os.path.isdir(mounts[0].source) and mode_of(mounts[0].source) == 0o777


def test_sub_path_expr_expands_the_container_env_or_is_refused(tmp_path):
    pod = make_pod([{"name": "scratch", "emptyDir": {}}],
                   [{"name": "scratch", "mountPath": "/w", "subPathExpr": "logs/$(POD_NAME)"}])
    volumes = plan(tmp_path, pod)
    container = pod["spec"]["containers"][0]
    with pytest.raises(VolumeError, match=r"subPathExpr is not supported"):
        container_mounts(container, volumes, field_prefix="c")
    mounts, _ = container_mounts(container, volumes, field_prefix="c", env={"POD_NAME": "web"})
    assert mounts[0].source.endswith("/volumes/scratch/logs/web")
    with pytest.raises(VolumeError, match=r"subPathExpr.*'\.\.'"):
        container_mounts(container, volumes, field_prefix="c", env={"POD_NAME": "../../x"})


# --- persistentVolumeClaim ----------------------------------------------------------------------


@as_root
def test_claim_lives_outside_the_pod_dir_and_survives_its_removal(tmp_path):
    pod = make_pod([{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}],
                   [{"name": "home", "mountPath": "/home/jovyan"}])
    m = mounted(tmp_path, pod, run_as_uid=1000, fs_group=100)["/home/jovyan"]
    claim = tmp_path / "claims" / "team-a" / "claim-alice"
    assert m.source == str(claim) and not m.read_only
    st = os.stat(claim)
    assert (st.st_uid, st.st_gid) == (1000, 100)
    assert stat.S_IMODE(st.st_mode) & 0o777 == 0o775
    (claim / "notebook.ipynb").write_text("{}")

    remove_pod_dir(tmp_path, tmp_path / "pods" / UID)
    assert not (tmp_path / "pods" / UID).exists()
    assert (claim / "notebook.ipynb").read_text() == "{}"

    # the next pod for the same user finds its data
    mounted(tmp_path, pod, run_as_uid=1000, fs_group=100)
    assert (claim / "notebook.ipynb").read_text() == "{}"


@as_root
def test_existing_claim_keeps_its_owner_but_gets_the_fs_group(tmp_path):
    claim = tmp_path / "claims" / "team-a" / "data"
    claim.mkdir(parents=True)
    os.chown(claim, 1234, 0)
    os.chmod(claim, 0o700)
    pod = make_pod([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                   [{"name": "d", "mountPath": "/d"}])
    mounted(tmp_path, pod, run_as_uid=1000, fs_group=100)
    st = os.stat(claim)
    assert (st.st_uid, st.st_gid) == (1234, 100)
    assert stat.S_IMODE(st.st_mode) & 0o070 == 0o070


def test_claim_read_only_is_honoured(tmp_path):
    pod = make_pod([{"name": "d", "persistentVolumeClaim": {"claimName": "data",
                                                           "readOnly": True}}],
                   [{"name": "d", "mountPath": "/d"}])
    assert mounted(tmp_path, pod)["/d"].read_only


def test_bad_claim_name_is_refused(tmp_path):
    pod = make_pod([{"name": "d", "persistentVolumeClaim": {"claimName": "../other-ns"}}])
    with pytest.raises(VolumeError, match=r"persistentVolumeClaim\.claimName"):
        plan(tmp_path, pod)


# --- hostPath -----------------------------------------------------------------------------------


def test_host_path_is_refused_by_default_naming_the_config_key(tmp_path):
    pod = make_pod([{"name": "h", "hostPath": {"path": "/etc"}}])
    with pytest.raises(VolumeError,
                       match=r"spec\.volumes\[0\]\.hostPath.*Sidecar\.HostPathPrefixes"):
        plan(tmp_path, pod)


@pytest.mark.parametrize("path", ["/etc", "/data-other/x", "/data/../etc", "data/x"])
def test_host_path_outside_the_prefixes_is_refused(tmp_path, path):
    pod = make_pod([{"name": "h", "hostPath": {"path": path}}])
    with pytest.raises(VolumeError, match=r"spec\.volumes\[0\]\.hostPath\.path"):
        plan(tmp_path, pod, policy=VolumePolicy(("/data",)))


def test_host_path_directory_or_create_creates_it(tmp_path):
    allowed = tmp_path / "host"
    target = allowed / "datasets" / "imagenet"
    pod = make_pod([{"name": "h", "hostPath": {"path": str(target) + "/",
                                               "type": "DirectoryOrCreate"}}],
                   [{"name": "h", "mountPath": "/data"}])
    m = mounted(tmp_path, pod, policy=VolumePolicy((str(allowed),)))["/data"]
    assert m.source == str(target) and m.kind == "bind" and not m.read_only
    assert target.is_dir() and mode_of(target) == 0o755


def test_host_path_directory_must_exist(tmp_path):
    allowed = tmp_path / "host"
    pod = make_pod([{"name": "h", "hostPath": {"path": str(allowed / "missing"),
                                               "type": "Directory"}}])
    volumes = plan(tmp_path, pod, policy=VolumePolicy((str(allowed),)))
    with pytest.raises(VolumeError, match="type Directory needs an existing directory"):
        materialize(volumes, root=tmp_path)


def test_host_path_files(tmp_path):
    allowed = tmp_path / "host"
    allowed.mkdir()
    (allowed / "present.cfg").write_text("x")
    policy = VolumePolicy((str(allowed),))
    pod = make_pod([
        {"name": "f", "hostPath": {"path": str(allowed / "present.cfg"), "type": "File"}},
        {"name": "g", "hostPath": {"path": str(allowed / "new" / "log.txt"),
                                   "type": "FileOrCreate"}},
    ])
    materialize(plan(tmp_path, pod, policy=policy), root=tmp_path)
    created = allowed / "new" / "log.txt"
    assert created.read_bytes() == b"" and mode_of(created) == 0o644

    missing = make_pod([{"name": "f", "hostPath": {"path": str(allowed / "nope"),
                                                   "type": "File"}}])
    with pytest.raises(VolumeError, match="type File needs an existing regular file"):
        materialize(plan(tmp_path, missing, policy=policy), root=tmp_path)
    not_file = make_pod([{"name": "f", "hostPath": {"path": str(allowed / "new"),
                                                    "type": "FileOrCreate"}}])
    with pytest.raises(VolumeError, match="not a regular file"):
        materialize(plan(tmp_path, not_file, policy=policy), root=tmp_path)


def test_host_path_socket(tmp_path):
    allowed = tmp_path / "host"
    allowed.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(allowed / "agent.sock"))
        pod = make_pod([{"name": "s", "hostPath": {"path": str(allowed / "agent.sock"),
                                                   "type": "Socket"}}])
        materialize(plan(tmp_path, pod, policy=VolumePolicy((str(allowed),))), root=tmp_path)
    finally:
        sock.close()
    pod = make_pod([{"name": "s", "hostPath": {"path": str(allowed), "type": "Socket"}}])
    with pytest.raises(VolumeError, match="type Socket"):
        materialize(plan(tmp_path, pod, policy=VolumePolicy((str(allowed),))), root=tmp_path)


def test_host_path_devices_are_refused(tmp_path):
    pod = make_pod([{"name": "d", "hostPath": {"path": "/dev/sda", "type": "BlockDevice"}}])
    with pytest.raises(VolumeError, match=r"hostPath\.type BlockDevice"):
        plan(tmp_path, pod, policy=VolumePolicy(("/",)))


def test_host_path_symlink_out_of_the_prefix_is_refused(tmp_path):
    allowed = tmp_path / "host"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    pod = make_pod([{"name": "h", "hostPath": {"path": str(allowed / "escape"),
                                               "type": "Directory"}}])
    volumes = plan(tmp_path, pod, policy=VolumePolicy((str(allowed),)))
    with pytest.raises(VolumeError, match="Sidecar.HostPathPrefixes"):
        materialize(volumes, root=tmp_path)


def test_relative_host_path_prefix_is_a_config_error():
    with pytest.raises(VolumeError, match="Sidecar.HostPathPrefixes"):
        VolumePolicy(("data",))


# --- mounts and types ---------------------------------------------------------------------------


def test_mount_of_an_unknown_volume_lists_the_pod_volumes(tmp_path):
    pod = make_pod([{"name": "cfg", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
                   [{"name": "cfg", "mountPath": "/a"}, {"name": "dta", "mountPath": "/b"}])
    with pytest.raises(VolumeError, match=r"spec\.containers\[0\]\.volumeMounts\[1\]\.name.*"
                                          r"'dta'.*cfg, data"):
        container_mounts(pod["spec"]["containers"][0], plan(tmp_path, pod),
                         field_prefix="spec.containers[0]")


def test_bad_mount_paths_are_refused(tmp_path):
    volumes = plan(tmp_path, make_pod([{"name": "v", "emptyDir": {}}]))
    for mounts, pattern in (
        ([{"name": "v", "mountPath": "relative"}], r"mountPath must be an absolute path"),
        ([{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/a/"}],
         r"volumeMounts\[1\]\.mountPath '/a' is already used"),
    ):
        with pytest.raises(VolumeError, match=pattern):
            container_mounts({"volumeMounts": mounts}, volumes, field_prefix="c")


@pytest.mark.parametrize("kind", ["nfs", "csi", "ephemeral", "iscsi"])
def test_unsupported_volume_types_are_refused(tmp_path, kind):
    pod = make_pod([{"name": "ok", "emptyDir": {}}, {"name": "remote", kind: {"server": "x"}}])
    with pytest.raises(VolumeError, match=rf"spec\.volumes\[1\]\.{kind}: volume 'remote'.*"
                                          r"supported volume types: configMap, secret"):
        plan(tmp_path, pod)


def test_bad_or_duplicate_volume_names_are_refused(tmp_path):
    with pytest.raises(VolumeError, match=r"spec\.volumes\[0\]\.name '\.\./x'"):
        plan(tmp_path, make_pod([{"name": "../x", "emptyDir": {}}]))
    with pytest.raises(VolumeError, match=r"spec\.volumes\[1\]\.name 'a' is used by two"):
        plan(tmp_path, make_pod([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]))


def test_bad_mode_is_refused(tmp_path):
    pod = make_pod([{"name": "c", "configMap": {"name": "app", "defaultMode": 0o1777}}])
    with pytest.raises(VolumeError, match=r"configMap\.defaultMode must be a file mode"):
        plan(tmp_path, pod, cms=(config_map("app", {"a": "1"}),))


# --- lifecycle ----------------------------------------------------------------------------------


def test_materialize_leaves_no_temporary_files_and_can_run_twice(tmp_path):
    pod = make_pod([{"name": "cfg", "configMap": {"name": "app"}}],
                   [{"name": "cfg", "mountPath": "/etc/app"}])
    volumes = plan(tmp_path, pod, cms=(config_map("app", {"a": "1", "b": "2"}),))
    materialize(volumes, root=tmp_path)
    materialize(volumes, root=tmp_path)
    root = tmp_path / "pods" / UID / "volumes" / "cfg"
    assert sorted(os.listdir(root)) == ["a", "b"]


def test_remove_pod_dir_is_idempotent(tmp_path):
    pod = make_pod([{"name": "scratch", "emptyDir": {}}])
    materialize(plan(tmp_path, pod), root=tmp_path)
    pod_dir = tmp_path / "pods" / UID
    (pod_dir / "volumes" / "scratch" / "out.txt").write_text("x")
    remove_pod_dir(tmp_path, pod_dir)
    remove_pod_dir(tmp_path, pod_dir)
    assert not pod_dir.exists()


def test_extra_dirs_are_applied_after_the_volumes(tmp_path):
    target = tmp_path / "pods" / UID / "volumes" / "scratch" / "deep"
    pod = make_pod([{"name": "scratch", "emptyDir": {}}])
    materialize(plan(tmp_path, pod), [DirSpec(target, 0o750, None, None)], root=tmp_path)
    assert mode_of(target) == 0o750


def test_many_keys_plan_in_linear_time():
    """A ConfigMap with 20,000 keys must not stall the sidecar (collisions are set lookups)."""
    files = _FileSet()
    for i in range(20000):
        files.add(PurePosixPath(f"k{i}"), b"", 0o644, f"key {i}")
    with pytest.raises(ValueError, match="collides"):
        files.add(PurePosixPath("k7/x"), b"", 0o644, "nested")
    files.add(PurePosixPath("d/a"), b"", 0o644, "a")
    with pytest.raises(ValueError, match="collides with 'd/a'"):
        files.add(PurePosixPath("d"), b"", 0o644, "d")
