"""An ``httpx`` transport over ``aiohttp``'s connection pool.

The API server keeps one pooled ``httpx.AsyncClient`` for the plugin; this transport is what it
sends through. httpcore's asyncio path costs about 2 ms of CPU per request on a small node (see
docs/PERFORMANCE.md), more than the whole forwarding budget; aiohttp's pool does the same work
for a fraction of that, and the client code above it stays plain httpx.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to one plugin, over TCP or a unix socket, with a bounded keep-alive pool."""

    def __init__(self, *, uds: str | None = None, max_connections: int = 100,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._uds = uds
        self._ssl = ssl_context
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp binds a session to the running event loop.
        if self._session is None:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self._uds, limit=self._limit) if self._uds
                else aiohttp.TCPConnector(limit=self._limit, use_dns_cache=True,
                                          ssl=self._ssl if self._ssl is not None else True))
            # Bodies are handed to httpx as they came, with their headers: httpx decodes them.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  trust_env=False, skip_auto_headers=(
                                                      "User-Agent", "Accept-Encoding"))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        # aiohttp's ``connect`` covers waiting for a free pooled connection and dialing a new
        # one; without it a call would wait for a full pool for ever.
        waits = [t for t in (timeouts.get("pool"), timeouts.get("connect")) if t is not None]
        timeout = aiohttp.ClientTimeout(total=None, connect=sum(waits) if waits else None,
                                        sock_connect=timeouts.get("connect"),
                                        sock_read=timeouts.get("read"))
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        try:
            response = await self._get_session().request(
                request.method, str(request.url), headers=headers, data=await request.aread(),
                timeout=timeout, allow_redirects=False)
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.TimeoutException(str(exc) or "timed out", request=request) from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from None
        except aiohttp.ClientError as exc:
            raise httpx.NetworkError(str(exc) or type(exc).__name__, request=request) from None
        return httpx.Response(response.status, headers=list(response.raw_headers),
                              stream=_Body(response), request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
