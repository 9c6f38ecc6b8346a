"""The API server's client for an interLink plugin (our sidecar, or any other plugin)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from interlink_common.config import PluginTLSConfig
from interlink_common.plugin_auth import TokenFile

from .transport import AiohttpTransport

SESSION_HEADER = "InterLink-Http-Session"

# Plugin error bodies are relayed to the VK; cap what we read so a misbehaving plugin cannot
# make us hold an unbounded body in memory.
MAX_ERROR_BODY = 64 * 1024


class _NoCookies(httpx.Cookies):
    """An always-empty cookie store: plugins set no cookies, and httpx's per-response cookie
    extraction (it builds a urllib request for each reply) is a visible share of every
    forwarded call."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _PluginHTTPClient(httpx.AsyncClient):
    """httpx's client with the cookie store above."""

    _no_cookies = _NoCookies()

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value: object) -> None:
        return None


def client_tls(tls: PluginTLSConfig) -> ssl.SSLContext:
    """The context for an https:// plugin: its CA (or the system store), and the client
    certificate the plugin asks for when it requires mutual TLS."""
    context = ssl.create_default_context(cafile=tls.CACertFile or None)
    if tls.ClientCertFile or tls.ClientKeyFile:
        context.load_cert_chain(tls.ClientCertFile, tls.ClientKeyFile or None)
    return context


class PluginUnreachable(Exception):
    """The plugin could not be reached, or did not answer in time."""


@dataclass(frozen=True)
class PluginReply:
    status: int
    body: bytes
    content_type: str


class PluginClient:
    """Pooled ``httpx.AsyncClient``s to the plugin, over TCP or a unix socket: one for calls,
    one for log streams, so that open streams never take a connection a call needs."""

    def __init__(self, base: str, *, connect_timeout: float, timeout: float,
                 max_connections: int = 100, max_log_streams: int = 200,
                 observe: Callable[[str, str, float], None] | None = None,
                 token: TokenFile | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self._token = token
        self._auth = ("", "")  # (token, header value): built again only when the token changes
        timeouts = httpx.Timeout(timeout, connect=connect_timeout)
        uds = base[len("unix://"):] if base.startswith("unix://") else None
        base_url = "http://plugin" if uds else base

        def client(limit: int) -> _PluginHTTPClient:
            transport = AiohttpTransport(uds=uds, max_connections=limit,
                                         ssl_context=None if uds else ssl_context)
            return _PluginHTTPClient(base_url=base_url, transport=transport, timeout=timeouts,
                                     trust_env=False)

        self._client = client(max_connections)
        self._logs = client(max_log_streams)
        # Parsed once: URL parsing is a visible share of httpx's per-request cost.
        self._urls = {p: httpx.URL(base_url + p)
                      for p in ("/create", "/delete", "/status", "/getLogs")}
        self._observe = observe

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._logs.aclose()

    def _headers(self, session: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", SESSION_HEADER: session}
        if self._token is not None:
            token = self._token.current()  # re-read when the file changed
            if token != self._auth[0]:
                self._auth = (token, f"Bearer {token}")
            headers["Authorization"] = self._auth[1]
        return headers

    async def call(self, method: str, path: str, body: bytes, session: str) -> PluginReply:
        """Send one request and read the whole reply (used for everything but log streams)."""
        start = time.perf_counter()
        outcome = "error"
        try:
            resp = await self._client.request(method, self._urls.get(path) or path,
                                              content=body, headers=self._headers(session))
            outcome = str(resp.status_code)
            return PluginReply(resp.status_code, resp.content,
                               resp.headers.get("content-type", ""))
        except httpx.HTTPError as exc:
            raise PluginUnreachable(self._describe(exc, path)) from None
        finally:
            if self._observe:
                self._observe(path, outcome, time.perf_counter() - start)

    async def open_stream(self, method: str, path: str, body: bytes, session: str,
                          *, follow: bool) -> httpx.Response:
        """Open a streamed reply; the caller must ``aclose()`` it. Followed logs never time out
        while idle: a quiet container is not an error."""
        timeout = httpx.Timeout(None, connect=self._client.timeout.connect) if follow \
            else self._client.timeout
        request = self._logs.build_request(method, self._urls.get(path) or path,
                                           content=body,
                                           headers=self._headers(session), timeout=timeout)
        start = time.perf_counter()
        try:
            resp = await self._logs.send(request, stream=True)
        except httpx.HTTPError as exc:
            if self._observe:
                self._observe(path, "error", time.perf_counter() - start)
            raise PluginUnreachable(self._describe(exc, path)) from None
        if self._observe:
            self._observe(path, str(resp.status_code), time.perf_counter() - start)
        return resp

    def _describe(self, exc: httpx.HTTPError, path: str) -> str:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        detail = str(exc) or type(exc).__name__
        return f"call to plugin {self.url(path)} {kind}: {detail}"


async def read_limited(resp: httpx.Response, limit: int = MAX_ERROR_BODY,
                       timeout: float | None = None) -> bytes:
    """Read at most ``limit`` bytes of a streamed reply, within ``timeout`` seconds; a reply
    that breaks off or stalls keeps what came, with a note saying so."""
    out = bytearray()

    async def read() -> None:
        async for chunk in resp.aiter_bytes():
            out.extend(chunk)
            if len(out) >= limit:
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except (httpx.HTTPError, TimeoutError) as exc:
        return bytes(out[:limit]) + f" (the reply broke off: {type(exc).__name__})".encode()
    return bytes(out[:limit])
