"""A typed view of a Docker container: its inspect answer, read in one place.

Like docker-py's models, a ``Container`` wraps the raw dict Docker returns (``raw``) and names
what the sidecar reads in it: the pod identity in its labels, its state, its files. Nothing
here calls Docker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import labels as L

_ZERO_TIME = "0001"  # Go's zero time: the container never started, or never finished


@dataclass(frozen=True)
class State:
    """``State`` of an inspect answer."""

    raw: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.raw.get("Status") or "")

    @property
    def running(self) -> bool:
        return bool(self.raw.get("Running"))

    @property
    def restarting(self) -> bool:
        return bool(self.raw.get("Restarting"))

    @property
    def exit_code(self) -> int | None:
        """None when Docker gave none."""
        code = self.raw.get("ExitCode")
        return None if code is None else int(code)

    @property
    def error(self) -> str:
        return str(self.raw.get("Error") or "")

    @property
    def oom_killed(self) -> bool:
        return bool(self.raw.get("OOMKilled"))

    @property
    def started_at(self) -> str:
        return str(self.raw.get("StartedAt") or "")

    @property
    def finished_at(self) -> str:
        return str(self.raw.get("FinishedAt") or "")

    @property
    def finished(self) -> bool:
        """It has a real FinishedAt (it ran and ended at least once)."""
        return bool(self.finished_at) and not self.finished_at.startswith(_ZERO_TIME)

    @property
    def pid(self) -> int:
        return int(self.raw.get("Pid") or 0)

    @property
    def created_only(self) -> bool:
        """Created and never started, without an error: it may still start."""
        return self.status == "created" and not self.error

    @property
    def start_failed(self) -> bool:
        """Docker kept it "created" with the error of a start that failed: it never runs."""
        return self.status == "created" and bool(self.error)


class _Labelled:
    """What the sidecar's labels say of a container, in an inspect or a list entry alike."""

    @property
    def labels(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def pod_uid(self) -> str:
        return self.labels.get(L.POD_UID, "")

    @property
    def role(self) -> str:
        return self.labels.get(L.ROLE, "")

    @property
    def name(self) -> str:
        """The container's name in its pod ("" for the sandbox, which has none)."""
        return self.labels.get(L.CONTAINER, "")

    @property
    def attempt(self) -> int:
        """Which re-creation of the Kubernetes container this is (0: the first)."""
        return int(self.labels.get(L.ATTEMPT, "0"))

    @property
    def is_infra(self) -> bool:
        return self.role == L.ROLE_INFRA


@dataclass(frozen=True)
class Container(_Labelled):
    """One Docker container of a pod, as Docker last described it."""

    raw: dict[str, Any]

    @classmethod
    def of(cls, info: Container | dict[str, Any] | None) -> Container | None:
        """A view of ``info`` (a raw inspect answer, or already a view)."""
        if info is None or isinstance(info, Container):
            return info
        return cls(info)

    @property
    def id(self) -> str:
        return str(self.raw["Id"])

    @property
    def docker_name(self) -> str:
        """The Docker name, without its leading slash."""
        return str(self.raw.get("Name") or "").lstrip("/")

    @property
    def labels(self) -> dict[str, str]:
        return (self.raw.get("Config") or {}).get("Labels") or {}


    @property
    def state(self) -> State:
        return State(self.raw.get("State") or {})

    @property
    def has_stopped(self) -> bool:
        """Exited for good: not running, not about to be restarted, not yet started."""
        s = self.state
        return not (s.running or s.restarting or s.created_only)

    @property
    def restart_count(self) -> int:
        """Docker's own restarts of this container (its restart policy)."""
        return int(self.raw.get("RestartCount") or 0)

    @property
    def image(self) -> str:
        return str(self.raw.get("Image") or "")

    @property
    def tty(self) -> bool:
        return bool((self.raw.get("Config") or {}).get("Tty"))

    @property
    def log_path(self) -> str:
        return str(self.raw.get("LogPath") or "")

    @property
    def upper_dir(self) -> str:
        """The writable layer on the host ("" when the storage driver has none)."""
        return str(((self.raw.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
                   or "")

    @property
    def ip(self) -> str:
        """The address of its network namespace; 127.0.0.1 on the host's network."""
        settings = self.raw.get("NetworkSettings") or {}
        if settings.get("IPAddress"):
            return settings["IPAddress"]
        for net in (settings.get("Networks") or {}).values():
            if net.get("IPAddress"):
                return net["IPAddress"]
        return "127.0.0.1"


def attempts(containers: Iterable[Container], role: str, name: str) -> list[Container]:
    """The Docker containers of one Kubernetes container, oldest attempt first."""
    return sorted((c for c in containers if c.role == role and c.name == name),
                  key=lambda c: c.attempt)


def latest_attempts(containers: Iterable[Container]) -> dict[tuple[str, str], Container]:
    """The latest attempt of each Kubernetes container, by (role, name)."""
    out: dict[tuple[str, str], Container] = {}
    for c in sorted(containers, key=lambda c: c.attempt):
        out[(c.role, c.name)] = c
    return out


@dataclass(frozen=True)
class Summary(_Labelled):
    """One entry of Docker's container list: less than an inspect, and shaped otherwise
    (labels and a state word at the top)."""

    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["Id"])

    @property
    def labels(self) -> dict[str, str]:
        return self.raw.get("Labels") or {}


    @property
    def running(self) -> bool:
        return self.raw.get("State") == "running"
