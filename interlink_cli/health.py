"""``interlink health``: a container's health check, one call to the service's own probe.

``api`` asks the API server's ``/readyz`` (it listens and its plugin answers), ``sidecar`` the
sidecar's ``/healthz`` (recovery done, listening), each where the config says it listens.
Without a service named, the one this container runs is read from PID 1's command line, so
one image-wide ``HEALTHCHECK`` serves both. Exit 0 healthy, 1 not (the reason on stdout, which
``docker inspect`` keeps), 2 when the config or the service cannot be told.
An API that requires client certificates (``TLS.CACertFile``) refuses this check, which has
none: use a TCP check for it instead.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from .commands import say, sidecar_get
from .endpoints import api_url, api_verify, http_client, read_config, sidecar
from .errors import USAGE, CLIFailure

SERVICES = ("api", "sidecar")
PROGRAMS = {"interlink-api": "api", "docker-sidecar": "sidecar"}
# Docker's own check timeout is 30 s by default; answer well inside it.
TIMEOUT_S = 10.0


def service_of(cmdline: bytes) -> str | None:
    """Which service a command line runs: ``docker-sidecar`` or ``interlink-api`` as any
    argument's last path component (the console script, behind ``python`` or an init)."""
    for arg in cmdline.split(b"\0"):
        name = Path(arg.decode("utf-8", "replace")).name
        if name in PROGRAMS:
            return PROGRAMS[name]
        if name in ("docker_sidecar", "interlink_api"):  # python -m docker_sidecar
            return "sidecar" if name == "docker_sidecar" else "api"
    return None


def detect_service(proc_cmdline: Path = Path("/proc/1/cmdline")) -> str:
    try:
        found = service_of(proc_cmdline.read_bytes())
    except OSError as exc:
        raise CLIFailure(f"cannot read {proc_cmdline} ({exc}); name the service: "
                         "interlink health api|sidecar", USAGE) from None
    if found is None:
        raise CLIFailure("PID 1 runs neither interlink-api nor docker-sidecar; name the "
                         "service: interlink health api|sidecar", USAGE)
    return found


async def _api(url: str, verify: ssl.SSLContext | bool) -> tuple[bool, str]:
    async with http_client(url, timeout=TIMEOUT_S, verify=verify) as http:
        try:
            reply = await http.get("/readyz")
        except httpx.HTTPError as exc:
            return False, f"API server at {url} does not answer: {exc or type(exc).__name__}"
    body = reply.text.strip()[:500]
    if reply.status_code == 200:
        return True, f"API server at {url}: ready"
    return False, f"API server at {url}: not ready (HTTP {reply.status_code}: {body})"


async def health(config: str | None, service: str | None, ca_file: str | None = None) -> int:
    which = service or detect_service()
    cfg = read_config(config, required=True)
    assert cfg is not None, "read_config returns one when it is required"
    if which == "api":
        url = api_url(cfg)
        ok, line = await _api(url, api_verify(cfg, url, ca_file))
    else:
        sc = sidecar(cfg)
        try:
            reply = await sidecar_get(sc, "/healthz", timeout=TIMEOUT_S)
        except CLIFailure as exc:
            ok, line = False, str(exc)
        else:
            ok = reply.status_code == 200
            line = (f"sidecar at {sc.base}: " + ("healthy" if ok else
                    f"unhealthy (HTTP {reply.status_code}: {reply.text.strip()[:500]})"))
    say(line)
    return 0 if ok else 1
