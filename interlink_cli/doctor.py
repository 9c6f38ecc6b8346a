"""``interlink doctor``: each part of a node's set-up checked in the order they depend on each
other, one line each, OK or what is wrong and how to fix it.

config -> Docker Engine -> sidecar -> its GPUs -> API server -> the API's plugin -> the token.
A part that fails leaves the ones that need it unchecked (said so), so the first FAIL is the
one to fix.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from interlink_common.api_client import APIError, APIUnreachable, InterLinkClient
from interlink_common.config import ConfigError, InterLinkConfig, resolve_path
from interlink_common.listen import api_listener, tokens_in_clear_warning

from .commands import gpu_report, say, sidecar_get
from .endpoints import (Sidecar, api_url, api_verify, http_client, read_config, sidecar,
                        vk_token_file)
from .errors import CLIFailure


@dataclass(frozen=True)
class Finding:
    ok: bool
    part: str
    detail: str

    def line(self) -> str:
        """One line, whatever the detail holds (a config error spans several)."""
        detail = "; ".join(part.strip() for part in self.detail.splitlines() if part.strip())
        return f"{'OK  ' if self.ok else 'FAIL'} {self.part:<8} {detail}"


class Problem(Exception):
    """A check failed: what is wrong and what to do."""


async def _docker() -> str:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=10)
        try:
            version = client.version()
        finally:
            client.close()
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise Problem(f"the Docker Engine at {where} does not answer ({exc}); start dockerd "
                      "(systemctl start docker), or run doctor as a user who may use it "
                      "(root, the docker group)") from None
    return f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"


async def _sidecar(sc: Sidecar) -> str:
    try:
        reply = await sidecar_get(sc, "/healthz")
    except CLIFailure as exc:
        raise Problem(str(exc)) from None
    if reply.status_code != 200:
        raise Problem(f"{sc.base}/healthz answered HTTP {reply.status_code}")
    try:
        await gpu_report(sc)  # behind the sidecar's credential, unlike /healthz
    except CLIFailure as exc:
        raise Problem(f"it answers, but not to us: {exc}; check PluginTokenFile/PluginTLS") \
            from None
    return f"docker-sidecar answers at {sc.base}"


async def _gpus(sc: Sidecar) -> str:
    try:
        report = await gpu_report(sc)
    except CLIFailure as exc:
        raise Problem(str(exc)) from None
    if not report.get("enabled"):
        reason = report.get("reason") or "no reason given"
        return f"GPUs off on this node ({reason})"
    units = report.get("gpus") or []
    if not units:
        raise Problem(f"GPUs are enabled but NVML lists none ({report.get('reason') or ''}); "
                      "check nvidia-smi and Sidecar.GPU.NVMLLibrary")
    skipped = report.get("skipped") or {}
    extra = f", {len(skipped)} skipped" if skipped else ""
    return (f"{len(units)} GPUs through NVML (driver {report.get('driverVersion') or '?'}), "
            f"{report.get('free', 0)} free{extra}")


async def _api(url: str, verify: ssl.SSLContext | bool, in_clear: str | None) -> str:
    async with http_client(url, timeout=15, verify=verify) as http:
        try:
            health = await http.get("/healthz")
            ready = await http.get("/readyz")
        except httpx.HTTPError as exc:
            raise Problem(f"interlink-api does not answer at {url} ({exc or type(exc).__name__});"
                          " start it (systemctl start interlink-api) or check InterlinkAddress/"
                          "InterlinkPort") from None
    if health.status_code != 200:
        raise Problem(f"{url}/healthz answered HTTP {health.status_code}")
    if ready.status_code != 200:
        raise Problem(f"interlink-api answers, but {ready.text.strip()[:300]}; check "
                      "SidecarURL/SidecarPort and that docker-sidecar runs")
    if in_clear:
        raise Problem(in_clear)
    return f"interlink-api answers at {url} and reaches its plugin"


def tokens_in_clear(cfg: InterLinkConfig) -> str | None:
    try:
        listener = api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort,
                                cfg.TLS)
    except ConfigError:
        return None  # api_url has said so already
    return tokens_in_clear_warning(listener, checks_tokens=cfg.OIDC.enabled)


async def _token(url: str, token_file: str | None, verify: ssl.SSLContext | bool) -> str:
    try:
        async with InterLinkClient(url, token_file=token_file, timeout=15,
                                   verify=verify) as client:
            answer = await client.ping()
    except APIUnreachable as exc:
        raise Problem(exc.message) from None
    except APIError as exc:
        if exc.status in (401, 403):
            which = f"the token in {token_file}" if token_file else "no token (none given)"
            raise Problem(f"the API refused {which}: {exc.message}; refresh it (interlink "
                          "token) or check OIDC.Issuer/Audience/RequiredGroup") from None
        raise Problem(f"/pinglink answered HTTP {exc.status}: {exc.message}") from None
    if not token_file:
        return f"the API takes calls without a token (no OIDC checks); /pinglink: " \
               f"{answer.status}"
    return f"the API accepts the token in {token_file}; /pinglink: {answer.status}"


async def doctor(config: str | None, url: str | None, token_file: str | None,
                 ca_file: str | None = None) -> int:
    """Print one line per part; 0 when every part is OK, else 1."""
    path = resolve_path(config)
    try:
        cfg = read_config(config, required=True)
    except CLIFailure as exc:
        say(Finding(False, "config", f"{path}: {exc}").line())
        return 1
    assert cfg is not None
    say(Finding(True, "config", f"{path} loads").line())
    sc = sidecar(cfg)
    where = url or api_url(cfg)
    token_file = token_file or vk_token_file(cfg)
    verify = api_verify(cfg, where, ca_file)
    in_clear = None if url else tokens_in_clear(cfg)
    checks: list[tuple[str, Callable[[], Awaitable[str]], str | None]] = [
        ("docker", _docker, None),
        ("sidecar", lambda: _sidecar(sc), "docker"),
        ("gpus", lambda: _gpus(sc), "sidecar"),
        ("api", lambda: _api(where, verify, in_clear), None),
        ("token", lambda: _token(where, token_file, verify), "api"),
    ]
    failed: set[str] = set()
    for part, check, needs in checks:
        if needs in failed:
            failed.add(part)
            say(Finding(False, part, f"not checked: {needs} failed").line())
            continue
        try:
            finding = Finding(True, part, await check())
        except Problem as exc:
            failed.add(part)
            finding = Finding(False, part, str(exc))
        say(finding.line())
    return 1 if failed else 0
