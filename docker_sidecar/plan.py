"""Pure translation of a pod (as the API sends it) into Docker container plans.

Nothing here talks to Docker or touches the filesystem: the same pod always gives the same plan,
and a pod we cannot honour raises ``PlanError`` naming the field and the fix before anything is
created.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlink_common.identity import check_pod_identity
from interlink_common.wire import ConfigMap, RetrievedPodData, Secret

from . import host_fs
from . import labels as L

from .admission import AdmissionError, admit, container_security, pod_sysctls
from .defaults import default_limits
from .env import EnvError, EnvSources, container_env, entrypoint_and_cmd
from .fields import FieldError, PodFacts
from .pod_shape import ShapeError, check_pod_shape
from .policy import SidecarPolicy
from .quantity import QuantityError, byte_count, cpu_millis
from .volumes import (
    DirSpec,
    MountSpec,
    PodVolumes,
    VolumeError,
    VolumePolicy,
    container_mounts,
    plan_volumes,
)

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# Set by upstream interLink's virtual kubelet (its Network.WstunnelCommand, filled in): one
# shell command line that starts the in-pod end of the pod's tunnel.
TUNNEL_ANNOTATION = "interlink.eu/wstunnel-client-commands"
TUNNEL_COMMAND_MAX = 64 * 1024


class PlanError(ValueError):
    """The pod cannot be run as asked; the message names the field and what to do."""


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    role: str  # "init" or "main"
    index: int
    docker_name: str
    image: str
    pull_policy: str
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[tuple[str, str]]
    working_dir: str | None
    mounts: list[MountSpec]
    mount_dirs: list[DirSpec]
    user: str | None
    group_add: list[str]
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    read_only_rootfs: bool
    # Docker's --security-opt values: no-new-privileges, seccomp, apparmor, label, systempaths.
    security_opt: list[str]
    nano_cpus: int | None
    mem_limit: int | None
    mem_reservation: int | None
    cpu_shares: int | None
    restart_policy: dict[str, Any] | None
    tty: bool
    stdin_open: bool
    gpus: int
    labels: dict[str, str]
    spec: dict[str, Any]  # the container as sent, for probes, hooks and ports by name
    pid_mode: str | None = None  # "host" (hostPID) or "pod" (shareProcessNamespace)
    # Host file bind-mounted at terminationMessagePath; read when the container stops.
    termination_file: Path | None = None
    # seccompProfile type Localhost: the profile's path under Sidecar.SeccompProfileRoot.
    seccomp_localhost: str | None = None
    # runAsNonRoot without runAsUser: the image's user is checked when the container is made.
    run_as_non_root: bool = False


@dataclass(frozen=True)
class HostPort:
    container_port: int
    protocol: str  # tcp, udp or sctp
    host_ip: str  # "" for every address
    host_port: int
    # Published by Sidecar.PublishPorts (node port = containerPort), not asked as hostPort.
    published: bool = False

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class InfraPlan:
    docker_name: str
    image: str
    hostname: str
    ports: list[HostPort]
    extra_hosts: dict[str, str]
    network_mode: str | None  # "host" with hostNetwork, else Docker's default bridge
    pid_mode: str | None
    ipc_mode: str | None
    labels: dict[str, str]
    sysctls: dict[str, str] = field(default_factory=dict)


@dataclass
class PodPlan:
    uid: str
    namespace: str
    name: str
    restart_policy: str
    grace_period: int
    infra: InfraPlan
    init: list[ContainerPlan]
    main: list[ContainerPlan]
    volumes: PodVolumes
    registry_auth: dict[str, dict[str, str]] = field(default_factory=dict)
    # The tunnel companion; not one of the pod's containers (never in its status).
    tunnel: ContainerPlan | None = None

    @property
    def containers(self) -> list[ContainerPlan]:
        return self.init + self.main

    @property
    def gpus(self) -> int:
        """GPUs the pod holds at once: init containers run one at a time, before the mains."""
        return max([c.gpus for c in self.init] + [sum(c.gpus for c in self.main)])

    @property
    def job_id(self) -> str:
        return self.infra.docker_name

    def gpu_assignment(self, uuids: list[str]) -> dict[str, list[str]]:
        """Which of the pod's GPUs each container gets: main containers split them, each its
        own; init containers, which run one at a time before the mains, reuse the first ones."""
        out: dict[str, list[str]] = {}
        for c in self.init:
            if c.gpus:
                out[c.name] = uuids[:c.gpus]
        offset = 0
        for c in self.main:
            if c.gpus:
                out[c.name] = uuids[offset:offset + c.gpus]
                offset += c.gpus
        return out


@dataclass(frozen=True)
class NodeFacts:
    cpus: int = 1
    memory: int = 0
    name: str = ""
    host_ip: str = ""


# An image reference as the Docker Engine parses it (the distribution "reference" grammar):
# [registry[:port]/]path[:tag][@digest], path components lower case.
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?", re.ASCII)
IMAGE_NAME_MAX = 255


def check_image(image: Any, where: str) -> str:
    """The image reference, stripped; one Docker could not parse is refused here, naming the
    field, instead of failing the pod later (Kubernetes: InvalidImageName)."""
    if image is None or (isinstance(image, str) and not image.strip()):
        raise PlanError(f"{where}.image is empty; set the image to run")
    if not isinstance(image, str):
        raise PlanError(f"{where}.image must be a string, such as busybox:1.36")
    image = image.strip()
    name = image.split("@", 1)[0]
    if len(name) > IMAGE_NAME_MAX or not IMAGE_REFERENCE.fullmatch(image):
        shown = repr(image) if len(image) <= 80 else repr(image[:77]) + "..."
        raise PlanError(f"{where}.image {shown} is not a valid image reference: write "
                        "[registry/]name[:tag][@digest] with a lower-case name, such as "
                        "busybox:1.36 or registry.example.com/team/app@sha256:...")
    return image


def default_pull_policy(image: str) -> str:
    """Kubernetes: ``Always`` for ``:latest`` or untagged images (a digest alone counts as a
    tag), else ``IfNotPresent``."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if tag == "latest" or (not tag and not digest):
        return "Always"
    return "IfNotPresent"


def registry_of(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def collect_objects(data: RetrievedPodData) -> tuple[dict[str, ConfigMap], dict[str, Secret],
                                                     dict[str, ConfigMap]]:
    config_maps: dict[str, ConfigMap] = {}
    secrets: dict[str, Secret] = {}
    projected: dict[str, ConfigMap] = {}
    for c in data.container or []:
        for cm in c.configMaps or []:
            config_maps.setdefault(cm.metadata.name, cm)
        for s in c.secrets or []:
            secrets.setdefault(s.metadata.name, s)
        for pm in c.projectedvolumemaps or []:
            projected.setdefault(pm.metadata.name, pm)
    return config_maps, secrets, projected


def plan_pod(data: RetrievedPodData, policy: SidecarPolicy, *, data_root: Path,
             node: NodeFacts, pod_ip: str = "") -> PodPlan:
    """Plan every Docker object of the pod; raises ``IdentityError`` for a UID or name that
    Kubernetes would not allow, ``PlanError`` for anything else we cannot honour."""
    pod = data.pod.to_wire()
    check_pod_identity(pod)
    try:
        check_pod_shape(pod)
        return _plan(data, policy, data_root=data_root, node=node, pod_ip=pod_ip)
    except (EnvError, VolumeError, FieldError, QuantityError, AdmissionError, ShapeError) as exc:
        raise PlanError(str(exc)) from None


def _plan(data: RetrievedPodData, policy: SidecarPolicy, *, data_root: Path, node: NodeFacts,
          pod_ip: str) -> PodPlan:
    pod = data.pod.to_wire()
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
    if not spec.get("containers"):
        raise PlanError("spec.containers is empty; a pod needs at least one container")
    count = len(spec.get("containers") or []) + len(spec.get("initContainers") or [])
    if count > policy.MaxContainersPerPod:
        # Every container gets its own pids limit, log files and writable layer: the
        # pod's share of the node grows with their number.
        raise PlanError(f"the pod has {count} containers (init included); this node runs at "
                        f"most {policy.MaxContainersPerPod} per pod: use fewer containers, or "
                        "raise Sidecar.MaxContainersPerPod in the sidecar config")
    admit(pod, policy)

    restart = spec.get("restartPolicy") or "Always"
    if restart not in RESTART_POLICIES:
        raise PlanError(f"spec.restartPolicy {restart!r} is not one of {', '.join(RESTART_POLICIES)}")

    config_maps, secrets, projected = collect_objects(data)
    facts = PodFacts.from_pod(pod, node_name=node.name, pod_ip=pod_ip, host_ip=node.host_ip)
    pod_sc = spec.get("securityContext") or {}
    volumes = plan_volumes(
        pod, config_maps=config_maps, secrets=secrets, projected_maps=projected, facts=facts,
        pod_dir=host_fs.pod_dir(data_root, uid), claims_root=host_fs.claims_root(data_root),
        policy=VolumePolicy(tuple(policy.HostPathPrefixes)), volume_prefix=L.volume_prefix(uid),
        run_as_uid=_int_or_none(pod_sc.get("runAsUser"), "spec.securityContext.runAsUser"),
        fs_group=_int_or_none(pod_sc.get("fsGroup"), "spec.securityContext.fsGroup"),
        node_cpu=node.cpus, node_memory=node.memory)
    sources = EnvSources.from_objects(config_maps.values(), secrets.values())

    seen: set[str] = set()
    plans: dict[str, list[ContainerPlan]] = {"init": [], "main": []}
    for role, key in (("init", "initContainers"), ("main", "containers")):
        for i, container in enumerate(spec.get(key) or []):
            where = f"spec.{key}[{i}]"
            if not isinstance(container, dict):
                raise PlanError(f"{where}: expected a container object")
            cname = container["name"]  # a DNS-1123 label: check_pod_identity
            if cname in seen:
                raise PlanError(f"{where}.name {cname!r} is used twice in the pod")
            seen.add(cname)
            plans[role].append(_plan_container(
                container, role, i, where, pod=pod, facts=facts, sources=sources,
                volumes=volumes, policy=policy, node=node, restart=restart,
                data_root=data_root))

    host_ports = _host_ports(spec)
    if policy.PublishPorts:
        host_ports += _published_ports(spec, policy.PublishAddress, host_ports,
                                       policy.PublishPortRange)
    infra = InfraPlan(
        docker_name=L.infra_name(namespace, name, uid),
        image=policy.InfraImage,
        # Cut as the kubelet does: 63 characters, no trailing '-' or '.'.
        hostname=(spec.get("hostname") or name)[:63].rstrip("-."),
        ports=host_ports,
        extra_hosts=_host_aliases(spec),
        network_mode="host" if spec.get("hostNetwork") else None,
        pid_mode="host" if spec.get("hostPID") else None,
        ipc_mode="host" if spec.get("hostIPC") else "shareable",
        labels={**L.pod_labels(policy.Instance, uid, namespace, name), L.ROLE: L.ROLE_INFRA,
                L.CONTAINER: "POD"},
        # Pod-level: they tune the sandbox's network and IPC namespaces, which every
        # container joins (admission allowed each one).
        sysctls=pod_sysctls(pod),
    )
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds")
    if grace is None:
        grace = policy.DefaultGracePeriodSeconds
    return PodPlan(uid=uid, namespace=namespace, name=name, restart_policy=restart,
                   grace_period=min(max(0, int(grace)), policy.MaxGracePeriodSeconds),
                   infra=infra, init=plans["init"],
                   main=plans["main"], volumes=volumes,
                   registry_auth=_registry_auth(spec, secrets),
                   tunnel=_tunnel_plan(pod, policy))


def _tunnel_plan(pod: dict[str, Any], policy: SidecarPolicy) -> ContainerPlan | None:
    """The tunnel companion of a pod whose VK asked for one (``TUNNEL_ANNOTATION``): the
    annotation's command under ``sh -c``, in the pod's network namespace, with nothing the
    pod's own containers could not have: no capabilities, no privilege escalation, the pod's
    user and seccomp profile."""
    meta, spec = pod["metadata"], pod["spec"]
    command = (meta.get("annotations") or {}).get(TUNNEL_ANNOTATION)
    if command is None:
        return None
    where = f"metadata.annotations[{TUNNEL_ANNOTATION}]"
    if not isinstance(command, str) or not command.strip():
        raise PlanError(f"{where} must be a shell command line (the VK's "
                        "Network.WstunnelCommand, filled in); it is empty")
    if len(command) > TUNNEL_COMMAND_MAX or "\0" in command:
        raise PlanError(f"{where} is longer than {TUNNEL_COMMAND_MAX} characters or holds a "
                        "NUL character; set a shorter Network.WstunnelCommand in the VK")
    if not policy.TunnelImage:
        raise PlanError(f"{where} asks for a tunnel companion, but this node has no image "
                        "for it: set Sidecar.TunnelImage in the sidecar config (an image with "
                        "/bin/sh and what the command runs; see docs/DEPLOYMENT.md), or turn "
                        "the VK's tunnel off")
    pod_sc = spec.get("securityContext") or {}
    run_as_user = _int_or_none(pod_sc.get("runAsUser"), "spec.securityContext.runAsUser")
    run_as_group = _int_or_none(pod_sc.get("runAsGroup"), "spec.securityContext.runAsGroup")
    # restricted asks every container to run as non-root; the companion too.
    non_root = pod_sc.get("runAsNonRoot") is True or policy.PodSecurity == "restricted"
    if non_root and run_as_user == 0:
        raise PlanError("spec.securityContext: runAsUser 0 breaks runAsNonRoot, which the "
                        "tunnel companion follows; run the pod as another user")
    user = None if run_as_user is None else (
        f"{run_as_user}:{run_as_group}" if run_as_group is not None else str(run_as_user))
    # Judged as a container that asks for the least: drop every capability, no escalation.
    security = container_security(pod, {"name": L.TUNNEL_NAME, "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}})
    uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
    image = policy.TunnelImage
    return ContainerPlan(
        name=L.TUNNEL_NAME, role=L.ROLE_TUNNEL, index=0,
        docker_name=L.container_name(namespace, name, L.TUNNEL_NAME, uid),
        image=image, pull_policy=default_pull_policy(image),
        # The VK's default command ends in '&' (it was written for a job script): the shell
        # waits for what it started, so the container lives as long as the tunnel.
        entrypoint=["/bin/sh", "-c"], cmd=[f"{command}\nwait"],
        env=[("HOME", "/tmp")], working_dir="/tmp",  # it downloads there, as any user
        mounts=[], mount_dirs=[], user=user, group_add=[],
        cap_add=security.cap_add, cap_drop=security.cap_drop, privileged=False,
        read_only_rootfs=False, security_opt=security.security_opt,
        seccomp_localhost=security.seccomp_localhost,
        run_as_non_root=non_root and run_as_user is None,
        # Its own bounds (Sidecar.Tunnel*Limit): the command is the pod author's, and runs
        # beside the pod's containers, outside their limits.
        nano_cpus=cpu_millis(policy.TunnelCPULimit) * 1_000_000
        if policy.TunnelCPULimit else None,
        mem_limit=byte_count(policy.TunnelMemoryLimit) if policy.TunnelMemoryLimit else None,
        mem_reservation=None, cpu_shares=None,
        # Whatever the pod's restartPolicy: without its tunnel the pod cannot be reached.
        restart_policy={"Name": "always"},
        tty=False, stdin_open=False, gpus=0,
        pid_mode="pod" if spec.get("shareProcessNamespace") else None,
        labels={**L.pod_labels(policy.Instance, uid, namespace, name),
                L.CONTAINER: L.TUNNEL_NAME, L.ROLE: L.ROLE_TUNNEL, L.INDEX: "0"},
        spec={"name": L.TUNNEL_NAME, "image": image},
    )


def _int_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PlanError(f"{where} must be a non-negative integer, got {value!r}")
    return value


def _plan_container(container: dict[str, Any], role: str, index: int, where: str, *,
                    pod: dict[str, Any], facts: PodFacts, sources: EnvSources,
                    volumes: PodVolumes, policy: SidecarPolicy, node: NodeFacts,
                    restart: str, data_root: Path) -> ContainerPlan:
    meta, spec = pod["metadata"], pod["spec"]
    image = check_image(container.get("image"), where)
    pull = container.get("imagePullPolicy") or default_pull_policy(image)
    if pull not in PULL_POLICIES:
        raise PlanError(f"{where}.imagePullPolicy {pull!r} is not one of {', '.join(PULL_POLICIES)}")

    env_pairs = container_env(container, facts, sources, field_prefix=where,
                              node_cpu=node.cpus, node_memory=node.memory)
    entrypoint, cmd = entrypoint_and_cmd(container, dict(env_pairs))
    mounts, mount_dirs = container_mounts(container, volumes, field_prefix=where,
                                          env=dict(env_pairs))
    message_path = container.get("terminationMessagePath") or "/dev/termination-log"
    if not message_path.startswith("/") or ".." in message_path.split("/"):
        raise PlanError(f"{where}.terminationMessagePath {message_path!r} must be an absolute "
                        "path without '..'")
    termination_file = host_fs.pod_dir(data_root, meta["uid"]) / "termination" / container["name"]
    if not any(m.target.rstrip("/") == message_path.rstrip("/") for m in mounts):
        mounts = [*mounts, MountSpec(source=str(termination_file), target=message_path,
                                     read_only=False, kind="bind")]

    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    run_as_user = _int_or_none(sc.get("runAsUser", pod_sc.get("runAsUser")),
                               f"{where}.securityContext.runAsUser")
    run_as_group = _int_or_none(sc.get("runAsGroup", pod_sc.get("runAsGroup")),
                                f"{where}.securityContext.runAsGroup")
    if run_as_group is not None and run_as_user is None:
        raise PlanError(f"{where}.securityContext.runAsGroup needs runAsUser on this node "
                        "(Docker sets a group only together with a user)")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
    if non_root and run_as_user == 0:
        raise PlanError(f"{where}.securityContext: runAsUser 0 breaks the runAsNonRoot policy "
                        "of the container; run it as another user or drop runAsNonRoot")
    user = None if run_as_user is None else (
        f"{run_as_user}:{run_as_group}" if run_as_group is not None else str(run_as_user))
    groups = [str(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(str(pod_sc["fsGroup"]))
    privileged = bool(sc.get("privileged"))  # admission refused it unless allowed
    security = container_security(pod, container)

    limits = (container.get("resources") or {}).get("limits") or {}
    requests = (container.get("resources") or {}).get("requests") or {}
    gpus = _gpu_count(limits, requests, where, policy.GPU.ResourceName)
    limits = default_limits(limits, requests, policy)
    nano_cpus = cpu_millis(limits["cpu"]) * 1_000_000 if limits.get("cpu") is not None else None
    mem_limit = byte_count(limits["memory"]) if limits.get("memory") is not None else None
    if mem_limit is not None and mem_limit < 6 * 1024 * 1024:
        raise PlanError(f"{where}.resources.limits.memory {limits['memory']!r} is below "
                        "Docker's minimum of 6Mi")
    cpu_request = requests.get("cpu")
    shares = max(2, cpu_millis(cpu_request) * 1024 // 1000) if cpu_request is not None else None
    mem_request = requests.get("memory")

    docker_restart = None
    if role == "main" and restart == "Always":
        docker_restart = {"Name": "always"}
    elif role == "main" and restart == "OnFailure":
        docker_restart = {"Name": "on-failure"}

    uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
    return ContainerPlan(
        name=container["name"], role=role, index=index,
        docker_name=L.container_name(namespace, name, container["name"], uid),
        image=image, pull_policy=pull, entrypoint=entrypoint, cmd=cmd, env=env_pairs,
        working_dir=container.get("workingDir") or None, mounts=mounts, mount_dirs=mount_dirs,
        user=user, group_add=groups,
        cap_add=security.cap_add, cap_drop=security.cap_drop,
        privileged=privileged, read_only_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        security_opt=security.security_opt, seccomp_localhost=security.seccomp_localhost,
        run_as_non_root=non_root and run_as_user is None,
        nano_cpus=nano_cpus, mem_limit=mem_limit,
        mem_reservation=byte_count(mem_request) if mem_request is not None else None,
        cpu_shares=shares, restart_policy=docker_restart,
        tty=bool(container.get("tty")), stdin_open=bool(container.get("stdin")), gpus=gpus,
        pid_mode="host" if spec.get("hostPID") else "pod" if spec.get("shareProcessNamespace")
        else None,
        termination_file=termination_file,
        labels={**L.pod_labels(policy.Instance, uid, namespace, name),
                L.CONTAINER: container["name"],
                L.ROLE: role, L.INDEX: str(index)},
        spec=container,
    )


def _gpu_count(limits: dict[str, Any], requests: dict[str, Any], where: str,
               resource: str) -> int:
    raw_limit, raw_request = limits.get(resource), requests.get(resource)
    if raw_limit is None and raw_request is None:
        return 0
    if raw_limit is None:
        raise PlanError(f"{where}.resources.limits.{resource} must be set when requests "
                        f"ask for GPUs (Kubernetes requires requests to equal limits)")
    try:
        count = int(str(raw_limit))
    except ValueError:
        raise PlanError(f"{where}.resources.limits.{resource} {raw_limit!r} must be a "
                        "whole number") from None
    if raw_request is not None and str(raw_request) != str(raw_limit):
        raise PlanError(f"{where}.resources: requests.{resource} ({raw_request}) must "
                        f"equal limits.{resource} ({raw_limit})")
    if count < 0:
        raise PlanError(f"{where}.resources.limits.{resource} must not be negative")
    return count


def _host_ports(spec: dict[str, Any]) -> list[HostPort]:
    ports: list[HostPort] = []
    used: dict[tuple[int, str], str] = {}
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or []):
            for j, port in enumerate((container or {}).get("ports") or []):
                host_port = port.get("hostPort")
                if not host_port:
                    continue
                where = f"spec.{key}[{i}].ports[{j}]"
                protocol = (port.get("protocol") or "TCP").lower()
                if protocol not in ("tcp", "udp", "sctp"):
                    raise PlanError(f"{where}.protocol {port.get('protocol')!r} is not TCP, UDP "
                                    "or SCTP")
                container_port = port.get("containerPort")
                if not isinstance(container_port, int) or not 0 < container_port < 65536:
                    raise PlanError(f"{where}.containerPort must be a port number")
                if not isinstance(host_port, int) or not 0 < host_port < 65536:
                    raise PlanError(f"{where}.hostPort must be a port number")
                host_ip = port.get("hostIP") or ""
                try:
                    if host_ip:
                        ipaddress.ip_address(host_ip)
                except ValueError:
                    raise PlanError(f"{where}.hostIP {host_ip!r} is not an IP address; give "
                                    "one of this node's addresses, or leave it out") from None
                # Any two bindings of one host port clash, whatever addresses they name:
                # "" and 0.0.0.0 overlap every specific address on the host.
                clash = used.get((host_port, protocol))
                if clash:
                    raise PlanError(f"{where}.hostPort {host_port}/{protocol} is already used "
                                    f"by {clash} in the same pod")
                used[(host_port, protocol)] = where
                ports.append(HostPort(container_port, protocol,
                                      "" if host_ip == "0.0.0.0" else host_ip, host_port))
    return ports


def _published_ports(spec: dict[str, Any], address: str, taken: list[HostPort],
                     port_range: str = "1-65535") -> list[HostPort]:
    """Sidecar.PublishPorts: every declared containerPort without a hostPort, published on
    the node's node port of the same number (what makes pod-IP:port reachable when the pod's
    IP is the node's), if it lies in ``port_range``. The pod's hostPorts are ``taken``."""
    if spec.get("hostNetwork"):
        return []  # its ports are the node's already
    low, high = (int(n) for n in port_range.split("-", 1))
    used = {(p.host_port, p.protocol): p for p in taken}
    out: list[HostPort] = []
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or []):
            for j, port in enumerate((container or {}).get("ports") or []):
                if not isinstance(port, dict) or port.get("hostPort"):
                    continue
                where = f"spec.{key}[{i}].ports[{j}]"
                protocol = (port.get("protocol") or "TCP")
                protocol = protocol.lower() if isinstance(protocol, str) else protocol
                if protocol not in ("tcp", "udp", "sctp"):
                    raise PlanError(f"{where}.protocol {port.get('protocol')!r} is not TCP, UDP "
                                    "or SCTP")
                container_port = port.get("containerPort")
                if isinstance(container_port, bool) or not isinstance(container_port, int) \
                        or not 0 < container_port < 65536:
                    raise PlanError(f"{where}.containerPort must be a port number")
                if not low <= container_port <= high:
                    raise PlanError(f"{where}.containerPort {container_port} would be published "
                                    f"on the node port of the same number, outside "
                                    f"{port_range} (Sidecar.PublishPortRange); declare a port "
                                    "in that range, or widen the key in the sidecar config")
                clash = used.get((container_port, protocol))
                if clash is not None:
                    if clash.published:
                        continue  # declared twice in the pod: one namespace, one binding
                    raise PlanError(f"{where}.containerPort {container_port}/{protocol} is "
                                    "published on the node port of the same number "
                                    "(Sidecar.PublishPorts), which a hostPort of the same pod "
                                    "already uses; change that hostPort")
                binding = HostPort(container_port, protocol, address, container_port,
                                   published=True)
                used[(container_port, protocol)] = binding
                out.append(binding)
    return out


def _host_aliases(spec: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for alias in spec.get("hostAliases") or []:
        for host in alias.get("hostnames") or []:
            out[host] = alias.get("ip", "")
    return out


def _registry_auth(spec: dict[str, Any], secrets: dict[str, Secret]) -> dict[str, dict[str, str]]:
    """Registry credentials from ``imagePullSecrets`` of type dockerconfigjson."""
    auths: dict[str, dict[str, str]] = {}
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        secret = secrets.get((ref or {}).get("name", ""))
        if secret is None:
            continue  # the VK only sends secrets it was asked for; the pull may still work
        try:
            auths.update(_docker_config_auths(secret))
        except (ValueError, TypeError, AttributeError, binascii.Error):
            raise PlanError(f"spec.imagePullSecrets[{i}]: secret {secret.metadata.name!r} has "
                            "no valid .dockerconfigjson (expected {\"auths\": {\"registry\": "
                            "{\"username\": ..., \"password\": ...}}})") from None
    return auths


def _docker_config_auths(secret: Secret) -> dict[str, dict[str, str]]:
    raw = secret.values().get(".dockerconfigjson", b"")
    if not raw:
        return {}
    auths: dict[str, dict[str, str]] = {}
    for registry, entry in (json.loads(raw.decode()).get("auths") or {}).items():
        username, password = entry.get("username", ""), entry.get("password", "")
        if not username and entry.get("auth"):
            username, _, password = base64.b64decode(entry["auth"], validate=True).decode(
            ).partition(":")
        host = registry.split("://", 1)[-1].split("/", 1)[0]
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = "docker.io"
        auths[host] = {"username": str(username), "password": str(password)}
    return auths
