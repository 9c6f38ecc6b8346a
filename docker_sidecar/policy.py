"""The sidecar's own keys in InterLinkConfig.yaml, under ``Sidecar:``."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .quantity import QuantityError, byte_count, cpu_millis


class GPUSettings(BaseModel):
    """``Sidecar: GPU:`` -- NVIDIA GPUs handed to pods (see docker_sidecar/gpus.py)."""

    model_config = ConfigDict(extra="forbid")

    # auto: use GPUs when NVML finds some; on: no usable GPU is a startup error; off: never.
    Enabled: Literal["auto", "on", "off"] = "auto"
    # Extended resource pods ask for and the node reports as accelerator.
    ResourceName: str = Field(default="nvidia.com/gpu", min_length=1)
    # Allow-list of GPU UUIDs, MIG device UUIDs or NVML indices; empty = every GPU.
    Devices: list[str] = Field(default_factory=list)
    # Hand out the MIG devices of GPUs in MIG mode (otherwise such GPUs are not used).
    MIG: bool = False
    # Too few free GPUs for a pod: refuse its creation, or queue it (first come first served).
    WhenFull: Literal["refuse", "queue"] = "refuse"
    # Path of libnvidia-ml.so.1; empty = the system's library lookup.
    NVMLLibrary: str = ""

    @field_validator("Enabled", mode="before")
    @classmethod
    def _yaml_bool(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare on/off as a boolean.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value.lower() if isinstance(value, str) else value

    @field_validator("Devices", mode="before")
    @classmethod
    def _device_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        elif isinstance(value, int):
            value = [value]
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return value


class SidecarPolicy(BaseModel):
    model_config = ConfigDict(extra="allow")

    # Name of this sidecar on its Docker Engine: it only sees and touches objects labelled
    # with it, so two sidecars (two virtual nodes) can share one engine.
    Instance: str = Field(default="default", pattern=r"^[a-zA-Z0-9_.-]+$")
    # Image of the per-pod infra container that holds the pod's network namespace.
    InfraImage: str = "registry.k8s.io/pause:3.10"
    # --- Reachability (docs/DEPLOYMENT.md: tunnel, published ports, hostPort) --------------
    # Image of the tunnel companion that runs the command of a pod's
    # interlink.eu/wstunnel-client-commands annotation in the pod's network namespace. It
    # needs /bin/sh, and whatever that command runs (curl and tar for the VK's default
    # command, or the wstunnel binary). Empty: pods with the annotation are refused.
    TunnelImage: str = ""
    # The companion's own bounds: it runs a command any pod author writes, outside the pod's
    # containers and their limits. Its writable layer over the storage limit evicts the pod.
    TunnelCPULimit: str = "500m"
    TunnelMemoryLimit: str = "256Mi"
    TunnelEphemeralStorageLimit: str = "256Mi"
    # Publish every declared containerPort of every pod on the node's address, node port =
    # containerPort (for sites that set interlink.eu/pod-ip to the node's IP). Off by default.
    PublishPorts: bool = False
    # Host address published ports are bound to; empty = every address of the node.
    PublishAddress: str = ""
    # The node ports published ports may take (containerPorts outside are refused at /create):
    # ports below 1024 belong to the node's own services.
    PublishPortRange: str = Field(default="1024-65535", pattern=r"^\d{1,5}-\d{1,5}$")
    # What a pod spec from the cluster may ask for. Off by default: a pod must not get root on
    # the GPU node just because someone could create it in the cluster.
    AllowPrivileged: bool = False
    AllowHostNetwork: bool = False
    AllowHostPID: bool = False
    AllowHostIPC: bool = False
    # hostPath volumes only under these directories (none by default).
    HostPathPrefixes: list[str] = Field(default_factory=list)
    # Kubernetes' Pod Security Standards level applied to every pod (docker_sidecar/admission.py);
    # the Allow* keys above and below exempt single controls.
    PodSecurity: Literal["privileged", "baseline", "restricted"] = "baseline"
    # Capabilities pods may add beyond Kubernetes' default set (e.g. ["SYS_PTRACE"]).
    AllowedCapabilities: list[str] = Field(default_factory=list)
    # Host ports pods may bind: numbers or "low-high" ranges; none by default, as in baseline.
    AllowedHostPorts: list[int | str] = Field(default_factory=list)
    AllowUnconfinedSeccomp: bool = False
    AllowUnconfinedAppArmor: bool = False
    # seLinuxOptions beyond the container types baseline allows (user, role, other types).
    AllowSELinuxOptions: bool = False
    AllowUnmaskedProcMount: bool = False
    # Sysctls outside Kubernetes' safe set that pods may set; fnmatch patterns ("net.core.*").
    AllowedUnsafeSysctls: list[str] = Field(default_factory=list)
    # Where seccompProfile type Localhost finds its localhostProfile files.
    SeccompProfileRoot: str = "/etc/interlink/seccomp"
    # Node capacity reported on ping; empty = detected from this machine.
    CPU: str = ""
    Memory: str = ""
    Pods: int = Field(default=110, ge=1)
    NodeName: str = ""
    # Back-off of init container re-runs under restartPolicy OnFailure/Always.
    BackoffInitialSeconds: float = Field(default=10.0, gt=0)
    BackoffMaxSeconds: float = Field(default=300.0, gt=0)
    # Used when neither the pod nor its deletion carries a grace period.
    DefaultGracePeriodSeconds: int = Field(default=30, ge=0)
    # The longest grace period a pod or a deletion may ask for: beyond, a pod could hold its
    # deletion (and its GPUs) for as long as it likes.
    MaxGracePeriodSeconds: int = Field(default=3600, ge=0)
    # Docker pulls can be slow; a pull that takes longer is reported as ErrImagePull.
    PullTimeoutSeconds: float = Field(default=600.0, gt=0)
    # NVIDIA GPUs: discovery through NVML, allocation to pods.
    GPU: GPUSettings = Field(default_factory=GPUSettings)
    # Listen on an address other than loopback or a unix socket. Also needs a credential
    # (PluginTokenFile, or PluginTLS with a client CA): it runs containers for whoever calls.
    AllowRemoteListen: bool = False
    # --- Resource floors: what a pod cannot take from the node, whatever it asks for ---------
    # Most processes (and threads) one container may have: a fork bomb stops there. No pod
    # field can raise it; 0 leaves containers unlimited (not recommended on a shared node).
    PidsLimit: int = Field(default=4096, ge=0)
    # json-file log rotation of every container (the kubelet's containerLogMaxSize and
    # containerLogMaxFiles): a chatty pod keeps at most LogMaxFiles files of LogMaxSize.
    LogMaxSize: str = "10Mi"
    LogMaxFiles: int = Field(default=5, ge=1, le=100)
    # Disk-backed emptyDirs with a sizeLimit are measured this often; a pod over a limit is
    # evicted as the kubelet would (docker_sidecar/eviction.py). 0 turns the scan off.
    EvictionIntervalSeconds: float = Field(default=10.0, ge=0)
    # Limits for containers that set none, like a LimitRange's ``default``; empty = none.
    DefaultCPULimit: str = ""
    DefaultMemoryLimit: str = ""
    # ephemeral-storage limit (writable layer + logs) of containers that set none; a
    # container over its limit gets its pod evicted (needs the engine's overlay2 layers
    # readable by the sidecar). Empty = only containers that set a limit are measured.
    DefaultEphemeralStorageLimit: str = ""
    # Request caps: body bytes of every endpoint, and pods in one /status request.
    MaxBodyBytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    MaxStatusPods: int = Field(default=5000, ge=1)
    # Containers of one pod, init included: each has its own pids limit, logs and layer.
    MaxContainersPerPod: int = Field(default=32, ge=1)
    # Concurrent /getLogs streams (follow or not): per pod, and in total on this sidecar.
    MaxLogFollowsPerPod: int = Field(default=10, ge=1)
    MaxLogFollows: int = Field(default=200, ge=1)

    @field_validator("TunnelImage")
    @classmethod
    def _tunnel_image(cls, value: str) -> str:
        value = value.strip()
        if value:
            from .plan import PlanError, check_image  # plan imports this module
            try:
                check_image(value, "Sidecar.TunnelImage")
            except PlanError as exc:
                raise ValueError(str(exc).replace("Sidecar.TunnelImage.image ", "", 1)
                                 ) from None
        return value

    @field_validator("PublishAddress")
    @classmethod
    def _publish_address(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address; give one of this node's "
                                 "addresses, or leave it empty for all of them") from None
        return "" if value in ("0.0.0.0", "::") else value

    @field_validator("LogMaxSize", "DefaultCPULimit", "DefaultMemoryLimit",
                     "DefaultEphemeralStorageLimit", "TunnelCPULimit", "TunnelMemoryLimit",
                     "TunnelEphemeralStorageLimit")
    @classmethod
    def _quantity(cls, value: str, info: ValidationInfo) -> str:
        # Refuse a bad quantity at startup, naming the key, rather than at every /create.
        value = str(value).strip()
        if not value:
            if info.field_name == "LogMaxSize":
                raise ValueError("must be a size such as 10Mi")
            return value
        try:
            amount = cpu_millis(value) if info.field_name.endswith("CPULimit") \
                else byte_count(value)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        if amount <= 0:
            raise ValueError(f"must be positive, got {value!r}")
        return value
