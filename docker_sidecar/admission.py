"""Admission: the Kubernetes Pod Security Standards, applied to every pod before it is planned.

``Sidecar.PodSecurity`` picks the level (``privileged``, ``baseline`` — the default —, or
``restricted``); each control is checked on every container, init containers included, as
Kubernetes' PodSecurity admission does, and every violation is reported at once in its words,
with the field path and the config key that would exempt it. Pure: no Docker, no filesystem.

What a pod may ask for and gets (seccomp and AppArmor profiles, SELinux type and level,
sysctls, capability changes) is turned here into the Docker settings that enforce it, so that
what admission allowed is what runs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .policy import SidecarPolicy

# Kubernetes' baseline: capabilities a container may add (the runtime's default set).
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Sysctls Kubernetes considers safe (namespaced, and isolated from other pods).
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                     "persistentVolumeClaim", "projected", "secret"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_SYSCTL_NAME = re.compile(r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?([./][a-z0-9]([-_a-z0-9]*[a-z0-9])?)*")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_SELINUX_LEVEL = re.compile(r"[A-Za-z0-9:,.\- ]+")
# Docker reads these AppArmor names itself: "unconfined" is no profile at all.
_APPARMOR_RESERVED = ("unconfined",)


class AdmissionError(ValueError):
    """The pod violates the node's Pod Security level; the message lists every violation."""


@dataclass
class ContainerSecurity:
    """The Docker settings that carry one container's allowed security context."""

    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    # A Localhost seccomp profile, relative to Sidecar.SeccompProfileRoot; read at creation.
    seccomp_localhost: str | None = None


@dataclass(frozen=True)
class _Container:
    where: str  # spec.containers[0]
    name: str
    spec: dict[str, Any]

    @property
    def sc(self) -> dict[str, Any]:
        sc = self.spec.get("securityContext")
        return sc if isinstance(sc, dict) else {}


class _Violations:
    def __init__(self, level: str) -> None:
        self.level = level
        self.items: list[str] = []

    def add(self, control: str, detail: str, field_path: str, allow: str | None) -> None:
        fix = f"an operator can allow it with {allow}" if allow else \
            f"the node's level {self.level!r} has no exemption for this control"
        self.items.append(f"{control} ({field_path}: {detail}; {fix})")

    def raise_if_any(self) -> None:
        if self.items:
            raise AdmissionError(f"violates PodSecurity \"{self.level}\": " + "; ".join(self.items))


def admit(pod: dict[str, Any], policy: SidecarPolicy) -> None:
    """Check the pod against ``Sidecar.PodSecurity``; raise ``AdmissionError`` naming each
    violated control, the field and the exemption key."""
    level = policy.PodSecurity
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    found = _Violations(level)
    containers = list(_containers(spec))
    if level != "privileged":
        _baseline(pod, spec, containers, policy, found)
    if level == "restricted":
        _restricted(spec, containers, found)
    found.raise_if_any()


def _containers(spec: dict[str, Any]) -> Iterable[_Container]:
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            if isinstance(c, dict):
                yield _Container(f"spec.{key}[{i}]", str(c.get("name", "")), c)


def _pod_sc(spec: dict[str, Any]) -> dict[str, Any]:
    sc = spec.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def normalize_capability(value: Any) -> str:
    """Docker's reading of a capability name: upper case, without ``CAP_``."""
    name = str(value).strip().upper()
    return name[4:] if name.startswith("CAP_") else name


def _baseline(pod: dict[str, Any], spec: dict[str, Any], containers: list[_Container],
              policy: SidecarPolicy, found: _Violations) -> None:
    pod_sc = _pod_sc(spec)
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.add("hostProcess", "pod must not set securityContext.windowsOptions.hostProcess="
                  "true", "spec.securityContext.windowsOptions.hostProcess", None)
    for key, allowed, config_key in (("hostNetwork", policy.AllowHostNetwork, "AllowHostNetwork"),
                                     ("hostPID", policy.AllowHostPID, "AllowHostPID"),
                                     ("hostIPC", policy.AllowHostIPC, "AllowHostIPC")):
        if spec.get(key) and not allowed:
            found.add("host namespaces", f"{key}=true", f"spec.{key}",
                      f"Sidecar.{config_key}: true")
    for i, volume in enumerate(spec.get("volumes") or []):
        # Exempted by naming directories; volumes.py then keeps every hostPath under them.
        if isinstance(volume, dict) and volume.get("hostPath") is not None \
                and not policy.HostPathPrefixes:
            found.add("hostPath volumes", f"volume {volume.get('name')!r} uses hostPath",
                      f"spec.volumes[{i}].hostPath",
                      "Sidecar.HostPathPrefixes (a list of directories pods may mount)")
    _check_seccomp(pod_sc.get("seccompProfile"), "pod", "spec.securityContext.seccompProfile",
                   policy, found)
    _check_apparmor(pod_sc.get("appArmorProfile"), "pod",
                    "spec.securityContext.appArmorProfile", policy, found)
    _check_selinux(pod_sc.get("seLinuxOptions"), "pod", "spec.securityContext.seLinuxOptions",
                   policy, found)
    for i, sysctl in enumerate(pod_sc.get("sysctls") or []):
        name = (sysctl or {}).get("name") if isinstance(sysctl, dict) else None
        if not _sysctl_allowed(name, policy):
            found.add("forbidden sysctls", f"{name!r} is not a safe sysctl",
                      f"spec.securityContext.sysctls[{i}].name",
                      f"Sidecar.AllowedUnsafeSysctls: [{name!r}]")
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    for key, value in annotations.items() if isinstance(annotations, dict) else ():
        if not str(key).startswith(APPARMOR_ANNOTATION) or value in ("runtime/default", ""):
            continue
        if value == "unconfined" and not policy.AllowUnconfinedAppArmor:
            found.add("forbidden AppArmor profile", f"annotation {key}=unconfined",
                      f"metadata.annotations[{key!r}]", "Sidecar.AllowUnconfinedAppArmor: true")
        elif value != "unconfined" and not (
                isinstance(value, str) and value.startswith("localhost/")
                and _apparmor_name_ok(value[len("localhost/"):], policy)):
            found.add("forbidden AppArmor profile", f"annotation {key}={value!r} is not "
                      "runtime/default or localhost/<a profile loaded on the node>",
                      f"metadata.annotations[{key!r}]", None)
    for c in containers:
        sc = c.sc
        if sc.get("privileged") and not policy.AllowPrivileged:
            found.add("privileged", f"container {c.name!r} must not set "
                      "securityContext.privileged=true", f"{c.where}.securityContext.privileged",
                      "Sidecar.AllowPrivileged: true (JupyterHub: or set singleuser."
                      "cloudMetadata.blockWithIptables: false to drop its privileged init "
                      "container)")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.add("hostProcess", f"container {c.name!r} must not set hostProcess=true",
                      f"{c.where}.securityContext.windowsOptions.hostProcess", None)
        allowed_caps = BASELINE_CAPABILITIES | {normalize_capability(x)
                                                for x in policy.AllowedCapabilities}
        for j, cap in enumerate(_capabilities(sc, "add")):
            if normalize_capability(cap) not in allowed_caps:
                found.add("non-default capabilities", f"container {c.name!r} must not include "
                          f"{cap!r} in securityContext.capabilities.add",
                          f"{c.where}.securityContext.capabilities.add[{j}]",
                          f"Sidecar.AllowedCapabilities: [{normalize_capability(cap)!r}]")
        for j, port in enumerate(c.spec.get("ports") or []):
            host_port = port.get("hostPort") if isinstance(port, dict) else None
            # Malformed ports are refused by the planner, with their own message.
            if isinstance(host_port, int) and 0 < host_port < 65536 and \
                    not _host_port_allowed(host_port, policy.AllowedHostPorts):
                found.add("hostPort", f"container {c.name!r} uses hostPort {host_port}",
                          f"{c.where}.ports[{j}].hostPort",
                          f"Sidecar.AllowedHostPorts: [{host_port}]")
        _check_seccomp(sc.get("seccompProfile"), f"container {c.name!r}",
                       f"{c.where}.securityContext.seccompProfile", policy, found)
        _check_apparmor(sc.get("appArmorProfile"), f"container {c.name!r}",
                        f"{c.where}.securityContext.appArmorProfile", policy, found)
        _check_selinux(sc.get("seLinuxOptions"), f"container {c.name!r}",
                       f"{c.where}.securityContext.seLinuxOptions", policy, found)
        proc_mount = sc.get("procMount")
        if proc_mount not in (None, "", "Default"):
            if proc_mount != "Unmasked":
                found.add("procMount", f"{proc_mount!r} is not Default or Unmasked",
                          f"{c.where}.securityContext.procMount", None)
            elif not policy.AllowUnmaskedProcMount:
                found.add("procMount", f"container {c.name!r} must not set "
                          "securityContext.procMount to \"Unmasked\"",
                          f"{c.where}.securityContext.procMount",
                          "Sidecar.AllowUnmaskedProcMount: true")


def _capabilities(sc: dict[str, Any], key: str) -> list[Any]:
    caps = sc.get("capabilities")
    listed = caps.get(key) if isinstance(caps, dict) else None
    return listed if isinstance(listed, list) else []


def _host_port_allowed(port: Any, allowed: Iterable[int | str]) -> bool:
    for entry in allowed:
        low, _, high = str(entry).partition("-")
        try:
            if int(low) <= int(port) <= int(high or low):
                return True
        except (TypeError, ValueError):
            continue
    return False


def _sysctl_allowed(name: Any, policy: SidecarPolicy) -> bool:
    if not isinstance(name, str) or not _SYSCTL_NAME.fullmatch(name):
        return False
    return name in SAFE_SYSCTLS or any(fnmatch.fnmatchcase(name, pattern)
                                       for pattern in policy.AllowedUnsafeSysctls)


def _check_seccomp(profile: Any, who: str, where: str, policy: SidecarPolicy,
                   found: _Violations) -> None:
    if not isinstance(profile, dict):
        return
    kind = profile.get("type")
    if kind == "Unconfined" and not policy.AllowUnconfinedSeccomp:
        found.add("seccompProfile", f"{who} must not set securityContext.seccompProfile.type to "
                  "\"Unconfined\"", f"{where}.type", "Sidecar.AllowUnconfinedSeccomp: true")
    elif kind not in ("RuntimeDefault", "Localhost", "Unconfined"):
        found.add("seccompProfile", f"type {kind!r} is not RuntimeDefault, Localhost or "
                  "Unconfined", f"{where}.type", None)
    elif kind == "Localhost" and _localhost_path(profile.get("localhostProfile")) is None:
        found.add("seccompProfile", "localhostProfile must be a relative path without '..' "
                  "under the node's seccomp profile directory (Sidecar.SeccompProfileRoot)",
                  f"{where}.localhostProfile", None)


def _check_apparmor(profile: Any, who: str, where: str, policy: SidecarPolicy,
                    found: _Violations) -> None:
    if not isinstance(profile, dict):
        return
    kind = profile.get("type")
    if kind == "Unconfined" and not policy.AllowUnconfinedAppArmor:
        found.add("forbidden AppArmor profile", f"{who} must not set appArmorProfile.type to "
                  "\"Unconfined\"", f"{where}.type", "Sidecar.AllowUnconfinedAppArmor: true")
    elif kind not in ("RuntimeDefault", "Localhost", "Unconfined"):
        found.add("forbidden AppArmor profile", f"type {kind!r} is not RuntimeDefault, "
                  "Localhost or Unconfined", f"{where}.type", None)
    elif kind == "Localhost" and not _apparmor_name_ok(profile.get("localhostProfile"), policy):
        found.add("forbidden AppArmor profile", "localhostProfile must name a profile loaded on "
                  "the node (\"unconfined\" is none)", f"{where}.localhostProfile",
                  "Sidecar.AllowUnconfinedAppArmor: true" if profile.get("localhostProfile")
                  in _APPARMOR_RESERVED else None)


def _apparmor_name_ok(name: Any, policy: SidecarPolicy) -> bool:
    if not isinstance(name, str) or not _PROFILE_NAME.fullmatch(name):
        return False
    return name not in _APPARMOR_RESERVED or policy.AllowUnconfinedAppArmor


def _check_selinux(options: Any, who: str, where: str, policy: SidecarPolicy,
                   found: _Violations) -> None:
    if not isinstance(options, dict) or policy.AllowSELinuxOptions:
        return
    kind = options.get("type") or ""
    if kind not in SELINUX_TYPES:
        found.add("seLinuxOptions", f"{who} set forbidden securityContext.seLinuxOptions: "
                  f"type {kind!r}", f"{where}.type", "Sidecar.AllowSELinuxOptions: true")
    for key in ("user", "role"):
        if options.get(key):
            found.add("seLinuxOptions", f"{who} set forbidden securityContext.seLinuxOptions: "
                      f"{key} {options[key]!r}", f"{where}.{key}",
                      "Sidecar.AllowSELinuxOptions: true")
    level = options.get("level")
    if level and not _SELINUX_LEVEL.fullmatch(str(level)):
        found.add("seLinuxOptions", f"level {level!r} is not an SELinux level",
                  f"{where}.level", None)


def _restricted(spec: dict[str, Any], containers: list[_Container], found: _Violations) -> None:
    pod_sc = _pod_sc(spec)
    for i, volume in enumerate(spec.get("volumes") or []):
        if not isinstance(volume, dict):
            continue
        kinds = [k for k, v in volume.items() if k != "name" and v is not None]
        for kind in kinds:
            if kind not in RESTRICTED_VOLUME_TYPES:
                found.add("restricted volume types", f"volume {volume.get('name')!r} uses "
                          f"restricted volume type {kind!r}", f"spec.volumes[{i}].{kind}", None)
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault",
                                                                       "Localhost")
    if pod_sc.get("runAsUser") == 0:
        found.add("runAsUser=0", "pod must not set runAsUser=0",
                  "spec.securityContext.runAsUser", None)
    for c in containers:
        sc = c.sc
        if sc.get("allowPrivilegeEscalation") is not False:
            found.add("allowPrivilegeEscalation != false", f"container {c.name!r} must set "
                      "securityContext.allowPrivilegeEscalation=false",
                      f"{c.where}.securityContext.allowPrivilegeEscalation", None)
        drops = {normalize_capability(x) for x in _capabilities(sc, "drop")}
        if "ALL" not in drops:
            found.add("unrestricted capabilities", f"container {c.name!r} must set "
                      "securityContext.capabilities.drop=[\"ALL\"]",
                      f"{c.where}.securityContext.capabilities.drop", None)
        for j, cap in enumerate(_capabilities(sc, "add")):
            if normalize_capability(cap) not in RESTRICTED_CAPABILITIES:
                found.add("unrestricted capabilities", f"container {c.name!r} must not include "
                          f"{cap!r} in securityContext.capabilities.add (only "
                          "NET_BIND_SERVICE)", f"{c.where}.securityContext.capabilities.add[{j}]",
                          None)
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is not True and not pod_non_root):
            found.add("runAsNonRoot != true", f"pod or container {c.name!r} must set "
                      "securityContext.runAsNonRoot=true",
                      f"{c.where}.securityContext.runAsNonRoot", None)
        if sc.get("runAsUser") == 0:
            found.add("runAsUser=0", f"container {c.name!r} must not set runAsUser=0",
                      f"{c.where}.securityContext.runAsUser", None)
        kind = (sc.get("seccompProfile") or {}).get("type")
        if kind not in ("RuntimeDefault", "Localhost") and not (kind is None and pod_seccomp):
            found.add("seccompProfile", f"pod or container {c.name!r} must set "
                      "securityContext.seccompProfile.type to \"RuntimeDefault\" or "
                      "\"Localhost\"", f"{c.where}.securityContext.seccompProfile.type", None)


def _localhost_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return str(path)


def container_security(pod: dict[str, Any], container: dict[str, Any]) -> ContainerSecurity:
    """The Docker settings for an admitted container: capabilities as Docker reads them, and
    the seccomp, AppArmor and SELinux profiles of the container, else of the pod."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    pod_sc = _pod_sc(spec)
    sc = container.get("securityContext")
    sc = sc if isinstance(sc, dict) else {}
    out = ContainerSecurity(
        cap_add=[normalize_capability(c) for c in _capabilities(sc, "add")],
        cap_drop=[normalize_capability(c) for c in _capabilities(sc, "drop")])
    if sc.get("allowPrivilegeEscalation") is False:
        out.security_opt.append("no-new-privileges:true")
    seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    if seccomp.get("type") == "Unconfined":
        out.security_opt.append("seccomp=unconfined")
    elif seccomp.get("type") == "Localhost":
        out.seccomp_localhost = _localhost_path(seccomp.get("localhostProfile"))
    # RuntimeDefault and unset: Docker's default profile (stricter than the kubelet's unset).
    apparmor = sc.get("appArmorProfile") or pod_sc.get("appArmorProfile") or {}
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(
        APPARMOR_ANNOTATION + str(container.get("name", "")))
    if apparmor.get("type") == "Unconfined" or (not apparmor and annotation == "unconfined"):
        out.security_opt.append("apparmor=unconfined")
    elif apparmor.get("type") == "Localhost":
        out.security_opt.append(f"apparmor={apparmor.get('localhostProfile')}")
    elif not apparmor and isinstance(annotation, str) and annotation.startswith("localhost/") \
            and _PROFILE_NAME.fullmatch(annotation[len("localhost/"):]):
        out.security_opt.append(f"apparmor={annotation[len('localhost/'):]}")
    selinux = sc.get("seLinuxOptions") or pod_sc.get("seLinuxOptions") or {}
    for key in ("user", "role", "type", "level"):
        if selinux.get(key):
            out.security_opt.append(f"label={key}:{selinux[key]}")
    if sc.get("procMount") == "Unmasked":
        out.security_opt.append("systempaths=unconfined")
    return out


def pod_sysctls(pod: dict[str, Any]) -> dict[str, str]:
    """``spec.securityContext.sysctls`` for the pod's sandbox, whose namespaces they tune."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    out: dict[str, str] = {}
    for sysctl in _pod_sc(spec).get("sysctls") or []:
        if isinstance(sysctl, dict) and isinstance(sysctl.get("name"), str):
            out[sysctl["name"]] = str(sysctl.get("value", "")).replace("\0", "")
    return out


def non_root_violation(image_user: str) -> str | None:
    """The kubelet's check for runAsNonRoot without runAsUser: the image's own user must be
    a numeric, non-zero UID (a name could be root inside the image's /etc/passwd)."""
    user = image_user.split(":", 1)[0]
    if user in ("", "0", "root"):
        return "container has runAsNonRoot and image will run as root"
    if not user.isdigit():
        return (f"container has runAsNonRoot and image has non-numeric user ({user}), cannot "
                "verify user is non-root; set securityContext.runAsUser")
    return "container has runAsNonRoot and image will run as root" if int(user) == 0 else None
