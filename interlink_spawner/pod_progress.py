"""What a pod's status means to a hub: the messages a user sees while it starts, whether the
notebook is up, and how it ended.

Pure functions of the status the node reports (``interlink_common.wire.PodStatus``), so they
are tested without a hub or a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlink_common.wire import ContainerStatus, PodStatus


@dataclass(frozen=True)
class Ended:
    """The notebook container stopped for good: its exit code and why."""

    exit_code: int
    reason: str
    restarts: int = 0


def describe(status: PodStatus | None) -> list[str]:
    """One line per container saying where it is, init containers first (what a user is
    shown while the server starts)."""
    if status is None:
        return ["the node does not know the pod yet"]
    lines = [f"init container {c.name}: {_state(c)}" for c in status.initContainers or []]
    lines += [f"container {c.name}: {_state(c)}" for c in status.containers or []]
    return lines


def is_ready(status: PodStatus | None, container: str) -> bool:
    """The notebook container runs and is ready (its probes pass, or it has none)."""
    c = _find(status, container)
    return c is not None and c.state.running is not None and c.ready


def ended(status: PodStatus | None, container: str) -> Ended | None:
    """How the notebook container ended, or None while it runs or waits.

    Any terminated state counts, as in KubeSpawner's poll; a container waiting to be started
    again after a crash (back-off) is waiting, not ended.
    """
    c = _find(status, container)
    if c is None or c.state.terminated is None:
        return None
    t = c.state.terminated
    why = t.reason or "Terminated"
    if t.message:
        why = f"{why}: {t.message}"
    return Ended(t.exitCode, why, c.restartCount)


def waiting_for_gpu(status: PodStatus | None) -> str | None:
    """The node's message while the pod waits in line for GPUs (``GPU.WhenFull: queue``)."""
    for c in (status.containers or []) if status is not None else []:
        if c.state.waiting is not None and c.state.waiting.reason == "WaitingForGPU":
            return c.state.waiting.message or "waiting for a GPU"
    return None


def _find(status: PodStatus | None, name: str) -> ContainerStatus | None:
    if status is None:
        return None
    return next((c for c in status.containers or [] if c.name == name), None)


def _state(c: ContainerStatus) -> str:
    s = c.state
    if s.running is not None:
        return "running, ready" if c.ready else "running, not ready yet"
    if s.terminated is not None:
        t = s.terminated
        text = f"exited with code {t.exitCode}"
        if t.reason:
            text += f" ({t.reason})"
        return f"{text}: {t.message}" if t.message else text
    if s.waiting is not None and (s.waiting.reason or s.waiting.message):
        text = f"waiting ({s.waiting.reason})" if s.waiting.reason else "waiting"
        return f"{text}: {s.waiting.message}" if s.waiting.message else text
    return "waiting"
