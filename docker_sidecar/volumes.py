"""Pod volumes as host directories, files and Docker named volumes.

Two halves, kept apart on purpose:

* planning (``plan_volumes``, ``container_mounts``): pure. It turns ``spec.volumes`` and the
  objects the VK sent into a ``PodVolumes`` description (directories, files with their bytes,
  modes and owners, tmpfs volumes, hostPath checks) and Docker mounts. A pod we cannot honour
  raises ``VolumeError`` naming the field and the fix, before anything exists on disk.
* side effects (``materialize``, ``remove_pod_dir``): filesystem only, and only through
  ``host_fs`` (below a trusted root, never through a symlink). Docker named volumes are created
  by the engine layer, and subPath/hostPath mounts are pinned by ``pinned_mounts``, not here.

Layout: ``<pod_dir>/volumes/<volume name>/`` for everything that belongs to the pod, and
``<claims_root>/<namespace>/<claimName>/`` for persistentVolumeClaims, which outlive the pod.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from interlink_common.identity import is_dns1123_label, is_dns1123_subdomain
from interlink_common.wire import ConfigMap, Secret, WireError

from . import host_fs
from .env import expand
from .fields import FieldError, PodFacts, resolve_field_ref, resolve_resource_field_ref
from .quantity import QuantityError, byte_count

SUPPORTED_TYPES = ("configMap", "secret", "projected", "downwardAPI", "emptyDir", "hostPath",
                   "persistentVolumeClaim")
PROJECTED_SOURCES = ("configMap", "secret", "downwardAPI", "serviceAccountToken")
HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket")
HOST_PATH_PREFIXES_KEY = "Sidecar.HostPathPrefixes"

CONFIG_MAP_FILE_MODE = 0o644
# Tighter than Kubernetes' 0644 on purpose: a secret should not be readable by every user of
# the image. Owner and fsGroup can still read it.
SECRET_FILE_MODE = 0o440
DIR_MODE = 0o755
EMPTY_DIR_MODE = 0o777  # Kubernetes emptyDirs are world-writable, whatever user the image runs as
CLAIM_DIR_MODE = 0o775
HOST_FILE_MODE = 0o644  # what the kubelet gives FileOrCreate
MAX_VOLUME_MOUNTS = 256

_KEY = re.compile(r"[-._a-zA-Z0-9]+")


class VolumeError(ValueError):
    """A volume we cannot honour; the message names the field path and the fix."""


# --- plan types ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumePolicy:
    """What the node operator allows. hostPath is refused unless it lies under a prefix."""

    host_path_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        prefixes = tuple(self.host_path_prefixes)
        for prefix in prefixes:
            if not isinstance(prefix, str) or not os.path.isabs(prefix):
                raise VolumeError(f"{HOST_PATH_PREFIXES_KEY} entry {prefix!r} must be an "
                                  "absolute path, e.g. /data")
        object.__setattr__(self, "host_path_prefixes", prefixes)


@dataclass(frozen=True)
class FileWrite:
    """One file to write atomically, with its final mode and owner (None: leave as root)."""

    path: Path
    content: bytes
    mode: int
    uid: int | None
    gid: int | None


@dataclass(frozen=True)
class DirSpec:
    """A directory to create.

    ``keep_existing``: an existing directory is not re-owned (claims and subPaths hold user
    data); only the fsGroup is applied to it, as the kubelet does on every mount.
    ``within``: the trusted root it is created below (a hostPath prefix); None: the data root.
    """

    path: Path
    mode: int
    uid: int | None
    gid: int | None
    keep_existing: bool = False
    within: Path | None = None


@dataclass(frozen=True)
class TmpfsVolume:
    """A Docker named volume (driver local, type tmpfs) for an emptyDir with medium Memory."""

    name: str
    size_bytes: int | None


@dataclass(frozen=True)
class HostPathCheck:
    """A hostPath to verify (or create) at materialize time; ``prefix`` is the allowed root it
    must still resolve under once symlinks are followed."""

    path: Path
    type: str
    prefix: Path | None = None
    field: str = ""


@dataclass(frozen=True)
class VolumeSource:
    """Where a pod volume lives on the host."""

    kind: Literal["bind", "volume"]  # bind: host path; volume: Docker named volume
    source: str
    read_only: bool
    # hostPath: the allowed prefix it lies under, which its mounts are pinned below.
    beneath: str = ""


@dataclass
class PodVolumes:
    """Everything ``materialize`` needs, plus where each pod volume lives."""

    dirs: list[DirSpec] = field(default_factory=list)
    files: list[FileWrite] = field(default_factory=list)
    tmpfs: list[TmpfsVolume] = field(default_factory=list)
    host_paths: list[HostPathCheck] = field(default_factory=list)
    sources: dict[str, VolumeSource] = field(default_factory=dict)


@dataclass(frozen=True)
class MountSpec:
    """One Docker mount. A bind source already includes the subPath (subPath on a named tmpfs
    volume is refused). With ``beneath``, the source lies in a directory a pod can write to:
    it is not given to Docker as a path but pinned (``pinned_mounts``) below that root at
    each container creation, so that no symlink planted on the way can redirect it."""

    source: str
    target: str
    read_only: bool
    kind: Literal["bind", "volume"]
    beneath: str = ""


# --- validation helpers -------------------------------------------------------------------------


def _relative_path(value: Any, where: str) -> PurePosixPath:
    """A file path inside a volume (items[].path, downwardAPI path): relative, no '..'."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise VolumeError(f"{where} must be a non-empty relative path, got {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise VolumeError(f"{where} {value!r} is absolute; give a path relative to the volume, "
                          f"e.g. {path.name or 'file'!r}")
    if ".." in path.parts:
        raise VolumeError(f"{where} {value!r} contains '..'; a path must stay inside its volume")
    if not path.parts:
        raise VolumeError(f"{where} {value!r} names the volume itself; give a file name")
    if path.parts[0].startswith(".."):
        # The kubelet reserves '..'-prefixed names for its own bookkeeping.
        raise VolumeError(f"{where} {value!r} must not start with '..'")
    return path


def _sub_path(value: str, where: str) -> PurePosixPath | None:
    """A subPath: relative, no '..'; empty or '.' means the whole volume."""
    if "\0" in value:
        raise VolumeError(f"{where} must not contain NUL bytes")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise VolumeError(f"{where} {value!r} is absolute; give a path relative to the volume")
    if ".." in path.parts:
        raise VolumeError(f"{where} {value!r} contains '..'; a subPath must stay inside its "
                          "volume")
    return path if path.parts else None


def _key(value: Any, where: str) -> str:
    """A ConfigMap/Secret key, which must be a plain file name."""
    if (not isinstance(value, str) or not _KEY.fullmatch(value) or value in (".", "..")
            or len(value) > 253):
        raise VolumeError(f"{where} {value!r} is not a valid key: use letters, digits, '-', '_' "
                          "and '.', as a single file name (no '/', not '.' or '..')")
    return value


def _mode(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise VolumeError(f"{where} must be a file mode between 0 and 0777 (JSON carries it in "
                          f"decimal: 420 is 0644, 256 is 0400), got {value!r}")
    return value


def _values(obj: ConfigMap | Secret) -> dict[str, bytes]:
    try:
        return obj.values()
    except WireError as exc:
        raise VolumeError(str(exc)) from None


# --- planning -----------------------------------------------------------------------------------


@dataclass
class _Ctx:
    pod: dict[str, Any]
    config_maps: Mapping[str, ConfigMap]
    secrets: Mapping[str, Secret]
    projected_maps: Mapping[str, ConfigMap]
    facts: PodFacts
    pod_dir: Path
    claims_root: Path
    policy: VolumePolicy
    volume_prefix: str
    run_as_uid: int | None
    fs_group: int | None
    node_cpu: int
    node_memory: int
    out: PodVolumes = field(default_factory=PodVolumes)

    @property
    def namespace(self) -> str:
        return self.facts.namespace or "default"

    def file_mode(self, explicit: int | None, default: int) -> int:
        mode = default if explicit is None else explicit
        # fsGroup exists so that a non-root user can read its volumes: give the group read.
        return mode | 0o040 if self.fs_group is not None else mode


class _FileSet:
    """The files of one volume by relative path, refusing two items on one path."""

    def __init__(self) -> None:
        self.files: dict[PurePosixPath, tuple[bytes, int, str]] = {}
        # Every directory the files need, and one file that needs it: a collision is a set
        # lookup, so a ConfigMap with thousands of keys plans in linear time.
        self._parents: dict[PurePosixPath, PurePosixPath] = {}

    def add(self, rel: PurePosixPath, content: bytes, mode: int, where: str) -> None:
        parents = rel.parents[:-1]  # a/b/c -> a/b, a (not '.')
        other = rel if rel in self.files else self._parents.get(rel) or next(
            (p for p in parents if p in self.files), None)
        if other is not None:
            raise VolumeError(f"{where}: path {str(rel)!r} collides with {str(other)!r} from "
                              f"{self.files[other][2]}; give each item its own path")
        self.files[rel] = (content, mode, where)
        for parent in parents:
            self._parents.setdefault(parent, rel)

    def __contains__(self, rel: PurePosixPath) -> bool:
        return rel in self.files


def plan_volumes(pod: dict[str, Any], *, config_maps: Mapping[str, ConfigMap],
                 secrets: Mapping[str, Secret], projected_maps: Mapping[str, ConfigMap],
                 facts: PodFacts, pod_dir: Path, claims_root: Path, policy: VolumePolicy,
                 volume_prefix: str, run_as_uid: int | None, fs_group: int | None,
                 node_cpu: int = 1, node_memory: int = 0) -> PodVolumes:
    """Plan every volume in ``pod.spec.volumes``; touches nothing on disk.

    ``node_cpu``/``node_memory`` stand in for unset limits in downwardAPI resourceFieldRefs.
    """
    ctx = _Ctx(pod=pod, config_maps=config_maps, secrets=secrets, projected_maps=projected_maps,
               facts=facts, pod_dir=pod_dir, claims_root=claims_root, policy=policy,
               volume_prefix=volume_prefix, run_as_uid=run_as_uid, fs_group=fs_group,
               node_cpu=node_cpu, node_memory=node_memory)
    volumes = (pod.get("spec") or {}).get("volumes") or []
    for i, volume in enumerate(volumes):
        where = f"spec.volumes[{i}]"
        if not isinstance(volume, dict):
            raise VolumeError(f"{where}: expected a volume object")
        name = _volume_name(volume.get("name"), where, ctx.out.sources)
        kind, spec = _volume_type(volume, name, where)
        _PLANNERS[kind](ctx, name, spec, f"{where}.{kind}")
    return ctx.out


def _volume_name(name: Any, where: str, seen: Mapping[str, VolumeSource]) -> str:
    # The name becomes a directory and part of a Docker volume name, so it must be a DNS label.
    if not is_dns1123_label(name):
        raise VolumeError(f"{where}.name {name!r} is not a valid volume name: use at most 63 "
                          "lowercase letters, digits and '-'")
    if name in seen:
        raise VolumeError(f"{where}.name {name!r} is used by two volumes; rename one")
    return name


def _volume_type(volume: dict[str, Any], name: str, where: str) -> tuple[str, dict[str, Any]]:
    kinds = [k for k, v in volume.items() if k != "name" and v is not None]
    if not kinds:
        return "emptyDir", {}  # the API server's default for a volume without a source
    if len(kinds) > 1:
        raise VolumeError(f"{where}: volume {name!r} sets several sources ({', '.join(kinds)}); "
                          "keep exactly one")
    kind = kinds[0]
    if kind not in SUPPORTED_TYPES:
        raise VolumeError(f"{where}.{kind}: volume {name!r} is of type {kind}, which this node "
                          f"does not support; supported volume types: {', '.join(SUPPORTED_TYPES)}")
    spec = volume[kind]
    if not isinstance(spec, dict):
        raise VolumeError(f"{where}.{kind} must be an object")
    return kind, spec


def _volume_dir(ctx: _Ctx, name: str) -> Path:
    return ctx.pod_dir / "volumes" / name


def _emit_files(ctx: _Ctx, name: str, files: _FileSet) -> None:
    """Record a read-only file volume: its directory tree and files, owned by the pod's user."""
    root = _volume_dir(ctx, name)
    uid, gid = ctx.run_as_uid, ctx.fs_group
    ctx.out.dirs.append(DirSpec(root, DIR_MODE, uid, gid))
    made: set[PurePosixPath] = set()
    for rel, (content, mode, _) in files.files.items():
        for parent in reversed(rel.parents[:-1]):  # a/b/c -> a, a/b (not '.')
            if parent not in made:
                made.add(parent)
                ctx.out.dirs.append(DirSpec(root / parent, DIR_MODE, uid, gid))
        ctx.out.files.append(FileWrite(root / rel, content, mode, uid, gid))
    ctx.out.sources[name] = VolumeSource("bind", str(root), True)


def _add_keyed(ctx: _Ctx, files: _FileSet, *, values: Mapping[str, bytes] | None, noun: str,
               obj_name: str, name_field: str, spec: dict[str, Any], where: str,
               default_mode: int, precomputed: Mapping[PurePosixPath, bytes],
               tolerate_missing: bool = False) -> None:
    """Files from a ConfigMap or Secret, honouring items, mode and optional."""
    optional = spec.get("optional") is True
    if values is None and not (optional or tolerate_missing) and not spec.get("items"):
        raise _missing_object(ctx, noun, obj_name, f"{where}.{name_field}", where)
    items = spec.get("items")
    if items:
        if not isinstance(items, list):
            raise VolumeError(f"{where}.items must be a list")
        for k, item in enumerate(items):
            iw = f"{where}.items[{k}]"
            if not isinstance(item, dict):
                raise VolumeError(f"{iw}: expected an object with key and path")
            key = _key(item.get("key"), f"{iw}.key")
            rel = _relative_path(item.get("path"), f"{iw}.path")
            mode = ctx.file_mode(_mode(item.get("mode"), f"{iw}.mode"), default_mode)
            content = precomputed.get(rel)
            if content is None and values is not None:
                content = values.get(key)
            if content is None:
                if optional or (values is None and tolerate_missing):
                    continue
                if values is None:
                    raise _missing_object(ctx, noun, obj_name, f"{where}.{name_field}", where)
                raise VolumeError(f"{iw}.key: {noun} {obj_name!r} has no key {key!r}; add the "
                                  f"key, fix the item, or set {where}.optional: true")
            files.add(rel, content, mode, iw)
        return
    for key, content in sorted((values or {}).items()):
        rel = PurePosixPath(_key(key, f"{noun} {obj_name!r} key (used as a file name by {where})"))
        files.add(rel, precomputed.get(rel, content), ctx.file_mode(None, default_mode), where)


def _missing_object(ctx: _Ctx, noun: str, obj_name: str, name_where: str,
                    where: str) -> VolumeError:
    return VolumeError(f"{name_where}: {noun} {obj_name!r} was not sent with the pod; create it "
                       f"in namespace {ctx.namespace!r}, or set {where}.optional: true")


def _object_name(spec: dict[str, Any], key: str, where: str) -> str:
    name = spec.get(key)
    if not isinstance(name, str) or not name:
        raise VolumeError(f"{where}.{key} is empty; name the object to mount")
    return name


def _config_map_source(ctx: _Ctx, files: _FileSet, spec: dict[str, Any], where: str,
                       default_mode: int | None, precomputed: Mapping[PurePosixPath, bytes],
                       tolerate_missing: bool = False) -> None:
    name = _object_name(spec, "name", where)
    cm = ctx.config_maps.get(name)
    values = _values(cm) if cm is not None else None
    _add_keyed(ctx, files, values=values, noun="configmap", obj_name=name, name_field="name",
               spec=spec, where=where,
               default_mode=CONFIG_MAP_FILE_MODE if default_mode is None else default_mode,
               precomputed=precomputed, tolerate_missing=tolerate_missing)


def _secret_source(ctx: _Ctx, files: _FileSet, spec: dict[str, Any], where: str, name_key: str,
                   default_mode: int | None, precomputed: Mapping[PurePosixPath, bytes],
                   tolerate_missing: bool = False) -> None:
    name = _object_name(spec, name_key, where)
    secret = ctx.secrets.get(name)
    values = _values(secret) if secret is not None else None
    _add_keyed(ctx, files, values=values, noun="secret", obj_name=name, name_field=name_key,
               spec=spec, where=where,
               default_mode=SECRET_FILE_MODE if default_mode is None else default_mode,
               precomputed=precomputed, tolerate_missing=tolerate_missing)


def _plan_config_map(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    files = _FileSet()
    _config_map_source(ctx, files, spec, where,
                       _mode(spec.get("defaultMode"), f"{where}.defaultMode"), {})
    _emit_files(ctx, name, files)


def _plan_secret(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    files = _FileSet()
    _secret_source(ctx, files, spec, where, "secretName",
                   _mode(spec.get("defaultMode"), f"{where}.defaultMode"), {})
    _emit_files(ctx, name, files)


def _precomputed(ctx: _Ctx, name: str) -> dict[PurePosixPath, bytes]:
    """What the VK already resolved for a projected/downwardAPI volume: path -> content."""
    cm = ctx.projected_maps.get(name)
    if cm is None:
        return {}
    what = f"projected volume map {name!r}"
    out: dict[PurePosixPath, bytes] = {}
    for path, content in _values(cm).items():
        out[_relative_path(path, f"{what} path")] = content
    return out


def _add_precomputed_rest(ctx: _Ctx, name: str, files: _FileSet,
                          precomputed: Mapping[PurePosixPath, bytes],
                          default_mode: int | None) -> None:
    # Paths the VK computed that no source names (newer source kinds): still give them to the pod.
    for rel, content in precomputed.items():
        if rel not in files:
            files.add(rel, content, ctx.file_mode(default_mode, CONFIG_MAP_FILE_MODE),
                      f"projected volume map {name!r}")


def _plan_projected(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    default = _mode(spec.get("defaultMode"), f"{where}.defaultMode")
    pre = _precomputed(ctx, name)
    # When the VK sent a map for this volume it has resolved the sources itself; an object it
    # did not forward is then not an error of the pod. Nor is it in the service-account volume
    # that the cluster adds to every pod (kube-api-access-*): a legacy VK never sends its
    # kube-root-ca.crt, and refusing would refuse every pod it sends.
    sources = [s for s in spec.get("sources") or [] if isinstance(s, dict)]
    from_vk = name in ctx.projected_maps or any("serviceAccountToken" in s for s in sources)
    files = _FileSet()
    for j, source in enumerate(spec.get("sources") or []):
        sw = f"{where}.sources[{j}]"
        if not isinstance(source, dict):
            raise VolumeError(f"{sw}: expected a projection source object")
        if isinstance(source.get("configMap"), dict):
            _config_map_source(ctx, files, source["configMap"], f"{sw}.configMap", default, pre,
                               tolerate_missing=from_vk)
        elif isinstance(source.get("secret"), dict):
            _secret_source(ctx, files, source["secret"], f"{sw}.secret", "name", default, pre,
                           tolerate_missing=from_vk)
        elif isinstance(source.get("downwardAPI"), dict):
            _add_downward(ctx, files, source["downwardAPI"].get("items"), f"{sw}.downwardAPI",
                          default, pre)
        elif isinstance(source.get("serviceAccountToken"), dict):
            rel = _relative_path(source["serviceAccountToken"].get("path"),
                                 f"{sw}.serviceAccountToken.path")
            # Only the VK can mint a token (there is no cluster here): no entry, no file.
            if rel in pre:
                files.add(rel, pre[rel], ctx.file_mode(default, SECRET_FILE_MODE),
                          f"{sw}.serviceAccountToken")
        else:
            _other_projection(ctx, files, source, sw, default, pre)
    _add_precomputed_rest(ctx, name, files, pre, default)
    _emit_files(ctx, name, files)


def _other_projection(ctx: _Ctx, files: _FileSet, source: dict[str, Any], where: str,
                      default: int | None, pre: Mapping[PurePosixPath, bytes]) -> None:
    """clusterTrustBundle, podCertificate, ...: usable only when the VK computed the file."""
    kind = next(iter(source), "(empty)")
    body = source.get(kind)
    path = body.get("path") if isinstance(body, dict) else None
    if isinstance(path, str) and path:
        rel = _relative_path(path, f"{where}.{kind}.path")
        if rel in pre:
            files.add(rel, pre[rel], ctx.file_mode(default, CONFIG_MAP_FILE_MODE),
                      f"{where}.{kind}")
            return
    raise VolumeError(f"{where}.{kind}: projection source {kind!r} is not supported on this node; "
                      f"supported sources: {', '.join(PROJECTED_SOURCES)}")


def _add_downward(ctx: _Ctx, files: _FileSet, items: Any, where: str, default: int | None,
                  pre: Mapping[PurePosixPath, bytes]) -> None:
    if items is not None and not isinstance(items, list):
        raise VolumeError(f"{where}.items must be a list")
    for k, item in enumerate(items or []):
        iw = f"{where}.items[{k}]"
        if not isinstance(item, dict):
            raise VolumeError(f"{iw}: expected an object with path and fieldRef")
        rel = _relative_path(item.get("path"), f"{iw}.path")
        explicit = _mode(item.get("mode"), f"{iw}.mode")
        mode = ctx.file_mode(default if explicit is None else explicit, CONFIG_MAP_FILE_MODE)
        content = pre[rel] if rel in pre else _downward_value(ctx, item, iw).encode()
        files.add(rel, content, mode, iw)


def _downward_value(ctx: _Ctx, item: dict[str, Any], where: str) -> str:
    if isinstance(item.get("fieldRef"), dict):
        try:
            return resolve_field_ref(ctx.facts, item["fieldRef"].get("fieldPath") or "")
        except FieldError as exc:
            raise VolumeError(f"{where}.fieldRef.fieldPath: {exc}") from None
    if isinstance(item.get("resourceFieldRef"), dict):
        ref = item["resourceFieldRef"]
        container = _named_container(ctx.pod, ref.get("containerName"),
                                     f"{where}.resourceFieldRef.containerName")
        try:
            return resolve_resource_field_ref(container, ref.get("resource") or "",
                                              ref.get("divisor"), node_cpu=ctx.node_cpu,
                                              node_memory=ctx.node_memory)
        except FieldError as exc:
            raise VolumeError(f"{where}.resourceFieldRef: {exc}") from None
    raise VolumeError(f"{where} needs fieldRef or resourceFieldRef")


def _named_container(pod: dict[str, Any], name: Any, where: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or []
                  if isinstance(c, dict)]
    for container in containers:
        if container.get("name") == name:
            return container
    known = ", ".join(str(c.get("name")) for c in containers) or "(none)"
    raise VolumeError(f"{where}: no container named {name!r} in the pod (a downwardAPI volume "
                      f"must name the container whose resources it reads); containers: {known}")


def _plan_downward_api(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    default = _mode(spec.get("defaultMode"), f"{where}.defaultMode")
    pre = _precomputed(ctx, name)
    files = _FileSet()
    _add_downward(ctx, files, spec.get("items"), where, default, pre)
    _add_precomputed_rest(ctx, name, files, pre, default)
    _emit_files(ctx, name, files)


def _plan_empty_dir(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    medium = spec.get("medium") or ""
    if medium == "Memory":
        size = _tmpfs_size(ctx.pod, spec.get("sizeLimit"), f"{where}.sizeLimit")
        volume = f"{ctx.volume_prefix}{name}"
        ctx.out.tmpfs.append(TmpfsVolume(volume, size))
        ctx.out.sources[name] = VolumeSource("volume", volume, False)
        return
    if medium != "":
        raise VolumeError(f"{where}.medium {medium!r} is not supported on this node; use \"\" "
                          "(node disk) or Memory (tmpfs)")
    path = _volume_dir(ctx, name)
    # With fsGroup, setgid makes files created by one container readable by the others.
    mode = EMPTY_DIR_MODE | (stat.S_ISGID if ctx.fs_group is not None else 0)
    ctx.out.dirs.append(DirSpec(path, mode, None, ctx.fs_group))
    ctx.out.sources[name] = VolumeSource("bind", str(path), False)


def _tmpfs_size(pod: dict[str, Any], size_limit: Any, where: str) -> int | None:
    """sizeLimit, capped by the pod's memory limit when every container has one (the kubelet's
    rule), so that a tmpfs cannot promise more memory than the pod may use."""
    limits = [_pod_memory_limit(pod)]
    if size_limit is not None:
        try:
            size = byte_count(size_limit)
        except QuantityError as exc:
            raise VolumeError(f"{where}: {exc}") from None
        if size <= 0:
            raise VolumeError(f"{where} must be positive (e.g. 1Gi), or left out")
        limits.append(size)
    known = [n for n in limits if n is not None]
    return min(known) if known else None


def _pod_memory_limit(pod: dict[str, Any]) -> int | None:
    spec = pod.get("spec") or {}

    def limit(c: Any) -> int | None:
        raw = (((c or {}).get("resources") or {}).get("limits") or {}).get("memory")
        try:
            return byte_count(raw) if raw is not None else None
        except QuantityError:
            return None  # reported where container resources are planned

    main = [limit(c) for c in spec.get("containers") or []]
    init = [limit(c) for c in spec.get("initContainers") or []]
    if not main or None in main or None in init:
        return None
    return max([sum(n for n in main if n is not None)] + [n for n in init if n is not None])


def _plan_host_path(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    kind = spec.get("type") or ""
    supported = ", ".join(repr(t) for t in HOST_PATH_TYPES)
    if kind in ("CharDevice", "BlockDevice"):
        raise VolumeError(f"{where}.type {kind}: devices cannot be mounted as hostPath volumes on "
                          f"this node; supported types: {supported}")
    if kind not in HOST_PATH_TYPES:
        raise VolumeError(f"{where}.type {kind!r} is not a hostPath type; use one of {supported}")
    if not ctx.policy.host_path_prefixes:
        raise VolumeError(f"{where}: hostPath volumes are disabled on this node; an operator can "
                          f"allow directories with {HOST_PATH_PREFIXES_KEY} (e.g. [\"/data\"]) in "
                          "the sidecar config, or use an emptyDir or persistentVolumeClaim volume")
    raw = spec.get("path")
    if not isinstance(raw, str) or not raw.startswith("/") or "\0" in raw:
        raise VolumeError(f"{where}.path must be an absolute path, got {raw!r}")
    if ".." in PurePosixPath(raw).parts:
        raise VolumeError(f"{where}.path {raw!r} contains '..'; write the path without it")
    path = "/" + os.path.normpath(raw).lstrip("/")  # normpath keeps a leading '//'
    prefix = _matching_prefix(path, ctx.policy.host_path_prefixes)
    if prefix is None:
        raise VolumeError(f"{where}.path {raw!r} is outside the directories this node allows for "
                          f"hostPath ({', '.join(ctx.policy.host_path_prefixes)}); use a path "
                          f"under one of them, or ask the operator to extend "
                          f"{HOST_PATH_PREFIXES_KEY}")
    ctx.out.host_paths.append(HostPathCheck(Path(path), kind, Path(prefix), where))
    ctx.out.sources[name] = VolumeSource("bind", path, False, beneath=prefix)


def _matching_prefix(path: str, prefixes: Iterable[str]) -> str | None:
    for prefix in prefixes:
        norm = "/" + os.path.normpath(prefix).lstrip("/")
        if _is_within(path, norm):
            return norm
    return None


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _plan_claim(ctx: _Ctx, name: str, spec: dict[str, Any], where: str) -> None:
    claim = spec.get("claimName")
    if not is_dns1123_subdomain(claim):
        raise VolumeError(f"{where}.claimName {claim!r} is not a valid claim name (lowercase "
                          "letters, digits, '-' and '.')")
    if not is_dns1123_label(ctx.namespace):
        raise VolumeError(f"metadata.namespace {ctx.namespace!r} is not a valid namespace")
    path = ctx.claims_root / ctx.namespace / claim
    mode = CLAIM_DIR_MODE | (stat.S_ISGID if ctx.fs_group is not None else 0)
    ctx.out.dirs.append(DirSpec(path, mode, ctx.run_as_uid, ctx.fs_group, keep_existing=True))
    ctx.out.sources[name] = VolumeSource("bind", str(path), spec.get("readOnly") is True)


_PLANNERS = {
    "configMap": _plan_config_map,
    "secret": _plan_secret,
    "projected": _plan_projected,
    "downwardAPI": _plan_downward_api,
    "emptyDir": _plan_empty_dir,
    "hostPath": _plan_host_path,
    "persistentVolumeClaim": _plan_claim,
}


# --- mounts -------------------------------------------------------------------------------------


def container_mounts(container: dict[str, Any], volumes: PodVolumes, *, field_prefix: str,
                     env: Mapping[str, str] | None = None) -> tuple[list[MountSpec], list[DirSpec]]:
    """Docker mounts for one container's volumeMounts, and the subPath directories to create.

    ``env`` is the container's resolved environment, for subPathExpr; without it subPathExpr
    is refused.
    """
    mounts: list[MountSpec] = []
    dirs: list[DirSpec] = []
    targets: dict[str, str] = {}
    listed = container.get("volumeMounts") or []
    if len(listed) > MAX_VOLUME_MOUNTS:
        # Each may become a bind mount in the host's mount table, for every attempt.
        raise VolumeError(f"{field_prefix}.volumeMounts has {len(listed)} entries; this node "
                          f"mounts at most {MAX_VOLUME_MOUNTS} per container")
    for i, mount in enumerate(listed):
        where = f"{field_prefix}.volumeMounts[{i}]"
        if not isinstance(mount, dict):
            raise VolumeError(f"{where}: expected a volumeMount object")
        name = mount.get("name")
        source = volumes.sources.get(name) if isinstance(name, str) else None
        if source is None:
            known = ", ".join(sorted(volumes.sources)) or "(none)"
            raise VolumeError(f"{where}.name: the pod has no volume named {name!r}; add it to "
                              f"spec.volumes or use one of: {known}")
        target = _mount_path(mount.get("mountPath"), f"{where}.mountPath")
        if target in targets:
            raise VolumeError(f"{where}.mountPath {target!r} is already used by {targets[target]}; "
                              "mount each volume on its own path")
        targets[target] = where
        read_only = mount.get("readOnly") is True or source.read_only
        sub = _mount_sub_path(mount, where, env)
        if sub is None:
            mounts.append(MountSpec(source.source, target, read_only, source.kind,
                                    beneath=source.beneath))
            continue
        if source.kind == "volume":
            raise VolumeError(f"{where}.subPath: volume {name!r} is a memory-backed emptyDir (a "
                              "Docker tmpfs volume), which cannot be mounted by subPath on this "
                              "node; mount the whole volume, or drop medium: Memory")
        root = Path(source.source)
        path = root / sub
        mounts.append(MountSpec(str(path), target, read_only, "bind",
                                beneath=source.beneath or str(root)))
        if not _planned(volumes, path):
            dirs.append(_sub_path_dir(volumes, root, path,
                                      Path(source.beneath) if source.beneath else None))
    return mounts, dirs


def _mount_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise VolumeError(f"{where} must be an absolute path in the container, got {value!r}")
    path = PurePosixPath(value)
    if ".." in path.parts:
        raise VolumeError(f"{where} {value!r} contains '..'; write the path without it")
    if str(path) == "/":
        raise VolumeError(f"{where} must not be '/'; mount the volume on a directory")
    return str(path)


def _mount_sub_path(mount: dict[str, Any], where: str,
                    env: Mapping[str, str] | None) -> PurePosixPath | None:
    sub, expr = mount.get("subPath") or "", mount.get("subPathExpr") or ""
    if sub and expr:
        raise VolumeError(f"{where}: subPath and subPathExpr are mutually exclusive; keep one")
    if expr:
        if env is None:
            raise VolumeError(f"{where}.subPathExpr is not supported here; use subPath")
        return _sub_path(expand(str(expr), env), f"{where}.subPathExpr")
    return _sub_path(str(sub), f"{where}.subPath")


def _planned(volumes: PodVolumes, path: Path) -> bool:
    return any(f.path == path for f in volumes.files) or any(d.path == path
                                                            for d in volumes.dirs)


def _sub_path_dir(volumes: PodVolumes, root: Path, path: Path, within: Path | None) -> DirSpec:
    # A subPath directory gets its volume's mode and owners, so that an emptyDir or claim
    # subdirectory is as writable for the pod's user as the volume itself.
    base = next((d for d in volumes.dirs if d.path == root), None)
    if base is None:
        return DirSpec(path, DIR_MODE, None, None, keep_existing=True, within=within)
    return DirSpec(path, base.mode, base.uid, base.gid, keep_existing=True, within=within)


# --- side effects -------------------------------------------------------------------------------


def materialize(volumes: PodVolumes, extra_dirs: Iterable[DirSpec] = (), *, root: Path) -> None:
    """Create the pod's directories and files below the data root ``root`` and check its
    hostPaths below their prefixes (not Docker volumes); no symlink is ever followed."""
    for spec in sorted(volumes.dirs, key=lambda d: len(d.path.parts)):
        ensure_dir(spec, root)
    for write in volumes.files:
        _write_file(write, root)
    for check in volumes.host_paths:
        _prepare_host_path(check)
    for spec in sorted(extra_dirs, key=lambda d: len(d.path.parts)):
        ensure_dir(spec, root)


def remove_pod_dir(root: Path, pod_dir: Path) -> None:
    """Delete everything the pod owned on disk (claims live elsewhere); a no-op when gone.
    Pinned mounts below it are detached first; were one left, nothing is deleted, so that a
    claim's or host path's contents never go with the pod."""
    try:
        host_fs.remove_tree(root, pod_dir)
    except OSError as exc:
        raise _os_error(f"cannot remove pod directory {pod_dir}", exc) from None


def _os_error(what: str, exc: OSError) -> VolumeError:
    hint = ""
    if isinstance(exc, PermissionError):
        hint = "; the sidecar needs to run as root to give volume files to the pod's user"
    return VolumeError(f"{what}: {exc.strerror or exc}{hint}")


def ensure_dir(spec: DirSpec, root: Path) -> None:
    """One planned directory, below ``spec.within`` or else ``root``."""
    try:
        host_fs.ensure_dir(spec.within or root, spec.path, spec.mode, spec.uid, spec.gid,
                           keep_existing=spec.keep_existing)
    except host_fs.UnsafePath as exc:
        raise VolumeError(f"cannot create volume directory {spec.path}: {exc.strerror}; remove "
                          "the symlink or use another path") from None
    except NotADirectoryError:
        if not spec.keep_existing:  # a subPath may name an existing file
            raise VolumeError(f"{spec.path} exists and is not a directory") from None
    except OSError as exc:
        raise _os_error(f"cannot create volume directory {spec.path}", exc) from None


def _write_file(write: FileWrite, root: Path) -> None:
    try:
        host_fs.write_file(root, write.path, write.content, write.mode, write.uid, write.gid)
    except OSError as exc:
        raise _os_error(f"cannot write volume file {write.path}", exc) from None


def _prepare_host_path(check: HostPathCheck) -> None:
    where = f"{check.field}.path {str(check.path)!r}" if check.field else str(check.path)
    prefix = check.prefix or Path("/")
    try:
        rel = host_fs.relative_to_root(check.path, prefix)
        st = host_fs.stat_entry(prefix, rel)
    except host_fs.UnsafePath as exc:
        # Name the pod's field, as every other hostPath refusal does.
        raise VolumeError(f"{where}: {exc.strerror}; give the real path below "
                          f"{HOST_PATH_PREFIXES_KEY}") from None
    except OSError as exc:
        raise _os_error(f"{where}: cannot inspect", exc) from None
    try:
        _HOST_PATH_CHECKS[check.type](check, st, where)
    except host_fs.UnsafePath as exc:
        raise VolumeError(f"{where}: {exc.strerror}") from None
    except OSError as exc:
        raise _os_error(f"{where}: cannot create", exc) from None


def _host_any(check: HostPathCheck, st: os.stat_result | None, where: str) -> None:
    """type "": no check, as in Kubernetes."""


def _host_directory(check: HostPathCheck, st: os.stat_result | None, where: str) -> None:
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise VolumeError(f"{where}: hostPath type Directory needs an existing directory on the "
                          "node and there is none; create it, or use type DirectoryOrCreate")


def _host_directory_or_create(check: HostPathCheck, st: os.stat_result | None,
                              where: str) -> None:
    if st is None:
        prefix = check.prefix or Path("/")
        prefix.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the operator's directory
        host_fs.ensure_dir(prefix, check.path, DIR_MODE, None, None, keep_existing=True)
    elif not stat.S_ISDIR(st.st_mode):
        raise VolumeError(f"{where}: hostPath type DirectoryOrCreate found something that is "
                          "not a directory there; remove it or fix the path")


def _host_file(check: HostPathCheck, st: os.stat_result | None, where: str) -> None:
    if st is None or not stat.S_ISREG(st.st_mode):
        raise VolumeError(f"{where}: hostPath type File needs an existing regular file on the "
                          "node and there is none; create it, or use type FileOrCreate")


def _host_file_or_create(check: HostPathCheck, st: os.stat_result | None, where: str) -> None:
    if st is None:
        prefix = check.prefix or Path("/")
        prefix.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the operator's directory
        host_fs.create_file(prefix, check.path, HOST_FILE_MODE)
    elif not stat.S_ISREG(st.st_mode):
        raise VolumeError(f"{where}: hostPath type FileOrCreate found something that is not a "
                          "regular file there; remove it or fix the path")


def _host_socket(check: HostPathCheck, st: os.stat_result | None, where: str) -> None:
    if st is None or not stat.S_ISSOCK(st.st_mode):
        raise VolumeError(f"{where}: hostPath type Socket needs an existing unix socket on the "
                          "node and there is none; start the service that creates it first")


_HOST_PATH_CHECKS = {
    "": _host_any,
    "Directory": _host_directory,
    "DirectoryOrCreate": _host_directory_or_create,
    "File": _host_file,
    "FileOrCreate": _host_file_or_create,
    "Socket": _host_socket,
}
