"""Readiness probes, run by the sidecar itself (there is no kubelet on this node).

httpGet and tcpSocket probes connect to the pod's IP, which is the pod's network namespace;
exec probes run inside the container through the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("interlink.sidecar.probes")

Exec = Callable[[list[str], float], Awaitable[int]]


class ProbeError(ValueError):
    pass


@dataclass(frozen=True)
class ProbeSettings:
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_spec(cls, probe: dict[str, Any]) -> "ProbeSettings":
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3))


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """A probe port by number, or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ProbeError(f"probe port {port!r} names no port of container "
                     f"{container.get('name')!r}")


async def run_once(probe: dict[str, Any], container: dict[str, Any], pod_ip: str,
                   timeout: float, exec_: Exec) -> bool:
    """One probe attempt; True on success."""
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            scheme = (spec.get("scheme") or "HTTP").lower()
            host = spec.get("host") or pod_ip
            port = resolve_port(spec.get("port"), container)
            path = spec.get("path") or "/"
            headers = {h["name"]: h.get("value", "") for h in spec.get("httpHeaders") or []}
            async with httpx.AsyncClient(verify=False, timeout=timeout, trust_env=False) as c:
                resp = await c.get(f"{scheme}://{host}:{port}{path}", headers=headers)
            return 200 <= resp.status_code < 400
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            port = resolve_port(spec.get("port"), container)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(spec.get("host") or pod_ip, port), timeout)
            writer.close()
            return True
        if "exec" in probe:
            command = list((probe["exec"] or {}).get("command") or [])
            return await asyncio.wait_for(exec_(command, timeout), timeout) == 0
    except (OSError, httpx.HTTPError, asyncio.TimeoutError, ProbeError) as exc:
        log.debug("probe failed: %s", exc)
        return False
    return False


class ReadinessProbes:
    """One task per probed container; verdicts are read by status without waiting."""

    def __init__(self) -> None:
        self._ready: dict[tuple[str, str], bool] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def ready(self, uid: str, name: str) -> bool | None:
        return self._ready.get((uid, name))

    def start(self, uid: str, container: dict[str, Any], pod_ip: str, exec_: Exec) -> None:
        probe = container.get("readinessProbe")
        key = (uid, container["name"])
        if not probe or key in self._tasks:
            return
        self._ready[key] = False
        self._tasks[key] = asyncio.create_task(self._loop(key, probe, container, pod_ip, exec_))

    def stop(self, uid: str) -> None:
        for key in [k for k in self._tasks if k[0] == uid]:
            self._tasks.pop(key).cancel()
            self._ready.pop(key, None)

    async def _loop(self, key: tuple[str, str], probe: dict[str, Any],
                    container: dict[str, Any], pod_ip: str, exec_: Exec) -> None:
        settings = ProbeSettings.from_spec(probe)
        await asyncio.sleep(settings.initial_delay)
        successes = failures = 0
        while True:
            ok = await run_once(probe, container, pod_ip, settings.timeout, exec_)
            if ok:
                successes, failures = successes + 1, 0
                if successes >= settings.success_threshold:
                    self._ready[key] = True
            else:
                successes, failures = 0, failures + 1
                if failures >= settings.failure_threshold:
                    self._ready[key] = False
            await asyncio.sleep(settings.period)
