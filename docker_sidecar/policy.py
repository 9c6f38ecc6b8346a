"""The sidecar's own keys in InterLinkConfig.yaml, under ``Sidecar:``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SidecarPolicy(BaseModel):
    model_config = ConfigDict(extra="allow")

    # Name of this sidecar on its Docker Engine: it only sees and touches objects labelled
    # with it, so two sidecars (two virtual nodes) can share one engine.
    Instance: str = Field(default="default", pattern=r"^[a-zA-Z0-9_.-]+$")
    # Image of the per-pod infra container that holds the pod's network namespace.
    InfraImage: str = "registry.k8s.io/pause:3.10"
    # What a pod spec from the cluster may ask for. Off by default: a pod must not get root on
    # the GPU node just because someone could create it in the cluster.
    AllowPrivileged: bool = False
    AllowHostNetwork: bool = False
    AllowHostPID: bool = False
    AllowHostIPC: bool = False
    # hostPath volumes only under these directories (none by default).
    HostPathPrefixes: list[str] = Field(default_factory=list)
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
    # Docker pulls can be slow; a pull that takes longer is reported as ErrImagePull.
    PullTimeoutSeconds: float = Field(default=600.0, gt=0)
