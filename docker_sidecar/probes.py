"""Probe and lifecycle-hook handlers, run by the sidecar itself (no kubelet on this node).

httpGet and tcpSocket handlers connect to the pod's IP, that is into the pod's network
namespace; exec handlers run inside the container through the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

Exec = Callable[[list[str], float], Awaitable[int]]

# One client for every httpGet handler: its TLS context is built once, not per probe. No
# connection is kept between probes (as the kubelet's prober): each probe is a new connection,
# so a container that stops accepting them fails its probe.
_client: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None


def _http_client() -> httpx.AsyncClient:
    global _client
    loop = asyncio.get_running_loop()
    if _client is None or _client[0] is not loop:
        _client = (loop, httpx.AsyncClient(
            verify=False, trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0)))
    return _client[1]


async def aclose_client() -> None:
    """Close the shared client (at shutdown)."""
    global _client
    if _client is not None and _client[0] is asyncio.get_running_loop():
        await _client[1].aclose()
    _client = None


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


async def run_handler(handler: dict[str, Any], container: dict[str, Any], pod_ip: str, *,
                      timeout: float, exec_in: Exec) -> tuple[bool, str]:
    """Run a probe or lifecycle handler once: (success, what happened)."""
    try:
        if "httpGet" in handler:
            spec = handler["httpGet"] or {}
            scheme = (spec.get("scheme") or "HTTP").lower()
            host = spec.get("host") or pod_ip
            port = resolve_port(spec.get("port"), container)
            path = spec.get("path") or "/"
            headers = {h["name"]: h.get("value", "") for h in spec.get("httpHeaders") or []}
            resp = await _http_client().get(f"{scheme}://{host}:{port}{path}",
                                            headers=headers, timeout=timeout)
            ok = 200 <= resp.status_code < 400
            return ok, f"HTTP GET {path} on port {port}: {resp.status_code}"
        if "tcpSocket" in handler:
            spec = handler["tcpSocket"] or {}
            port = resolve_port(spec.get("port"), container)
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(spec.get("host") or pod_ip, port), timeout)
            writer.close()
            return True, f"TCP port {port} open"
        if "exec" in handler:
            command = list((handler["exec"] or {}).get("command") or [])
            code = await asyncio.wait_for(exec_in(command, timeout), timeout)
            return code == 0, f"command {command!r} exited with {code}"
        if "sleep" in handler:
            await asyncio.sleep(float((handler["sleep"] or {}).get("seconds") or 0))
            return True, "slept"
    except asyncio.TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except (OSError, httpx.HTTPError, ProbeError) as exc:
        return False, str(exc) or type(exc).__name__
    return False, f"unsupported handler {sorted(handler)}; use httpGet, tcpSocket or exec"
