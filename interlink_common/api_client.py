"""A small Python client of the interLink API, speaking as the current virtual kubelet does.

The JupyterHub spawner, the operator's tools, the benchmarks and the tests reach the API server
through this one class rather than each building requests of its own. It sends what the current
VK sends (docs/PROTOCOL.md section 1): the ``InterLink-Http-Session`` header on every call, so
the API server answers in the current profile, and a bearer token when one is given (directly,
or as a file re-read on every call, as the VK's token file is kept fresh by a refresher).

Every non-200 answer raises ``APIError`` with the status and the server's message (which names
the field or the fix); a server that cannot be reached raises ``APIUnreachable``, naming the
URL. The seam for tests is httpx's: pass ``transport`` (e.g. ``httpx.MockTransport``).
"""

from __future__ import annotations

import itertools
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import ValidationError

from .wire import ContainerLogOpts, CreateStruct, LogStruct, PingResponse, PodCreateRequests, \
    PodStatus

SESSION_HEADER = "InterLink-Http-Session"
# Enough of a refused answer to say why (answers are read whole; this bounds the message).
MAX_ERROR_TEXT = 16 * 1024


class APIError(Exception):
    """The API server answered a call with a non-200 status."""

    def __init__(self, route: str, status: int, message: str) -> None:
        super().__init__(f"{route}: HTTP {status}: {message}")
        self.route = route
        self.status = status
        self.message = message


class APIUnreachable(APIError):
    """The API server could not be reached, or did not answer in time."""

    def __init__(self, route: str, message: str, *, sent: bool = True) -> None:
        super().__init__(route, 0, message)
        # False when no connection was made: the server cannot have acted on the call (a
        # caller of /create then knows no pod was made).
        self.sent = sent


class InterLinkClient:
    """Calls to one interLink API server (``http(s)://host:port`` or ``unix:///path``)."""

    def __init__(self, url: str, *, token: str | None = None, token_file: str | None = None,
                 timeout: float = 30.0, verify: ssl.SSLContext | str | bool = True,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if token and token_file:
            raise ValueError("give a token or a token file, not both")
        self.url = url.rstrip("/")
        self._token = token
        self._token_file = Path(token_file).expanduser() if token_file else None
        if transport is None and self.url.startswith("unix://"):
            transport = httpx.AsyncHTTPTransport(uds=self.url[len("unix://"):])
        base = "http://interlink" if self.url.startswith("unix://") else self.url
        self._http = httpx.AsyncClient(base_url=base, timeout=timeout, verify=verify,
                                       transport=transport, trust_env=False)
        self._calls = itertools.count(1)

    async def __aenter__(self) -> InterLinkClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the VK's calls -----------------------------------------------------------------------

    async def ping(self) -> PingResponse:
        """The plugin's answer through the API: status and the node's resources."""
        reply = await self._call("POST", "/pinglink", None, "PingInterLink")
        return _parse(PingResponse, self._json(reply, "/pinglink"), "/pinglink", reply)

    async def create(self, pod: dict[str, Any], *, configmaps: Sequence[dict[str, Any]] = (),
                     secrets: Sequence[dict[str, Any]] = (),
                     projected: Sequence[dict[str, Any]] = ()) -> CreateStruct:
        """Send the pod with the ConfigMaps and Secrets it uses (and, as the current VK does,
        one ConfigMap per projected or downwardAPI volume)."""
        # Validated here, so a malformed object is the caller's ValidationError, not a 400.
        request = PodCreateRequests.model_validate({
            "pod": pod, "configmaps": list(configmaps), "secrets": list(secrets),
            "projectedvolumesmaps": list(projected)})
        reply = await self._call("POST", "/create", request.to_wire(), "CreatePod")
        return _parse(CreateStruct, self._json(reply, "/create"), "/create", reply)

    async def status(self, pods: Sequence[dict[str, Any]]) -> list[PodStatus]:
        """The statuses of the pods the plugin knows, in request order; unknown ones are left
        out. A pod is asked about afresh while its ``status.phase`` is Pending or Running (or
        absent), from the API's cache once it has finished."""
        body = [dict(p, status=p.get("status") or {"phase": "Pending"}) for p in pods]
        reply = await self._call("GET", "/status", body, "GetPodStatus")
        data = self._json(reply, "/status")
        if not isinstance(data, list):
            raise APIError("/status", reply.status_code, "the answer is not a JSON array")
        return [_parse(PodStatus, s, "/status", reply) for s in data]

    async def pod_status(self, pod: dict[str, Any]) -> PodStatus | None:
        """One pod's status, or None when the node does not know it."""
        found = await self.status([pod])
        return found[0] if found else None

    async def logs(self, pod: dict[str, Any], container: str, **opts: Any) -> str:
        """A container's log as text (``tail``, ``since_seconds``, ``timestamps``,
        ``previous``, ``limit_bytes``: the kubelet's options)."""
        reply = await self._call("GET", "/getLogs", self._log_request(pod, container, opts),
                                 "GetLogs")
        return reply.text

    @asynccontextmanager
    async def follow_logs(self, pod: dict[str, Any], container: str,
                          **opts: Any) -> AsyncIterator[AsyncIterator[bytes]]:
        """``async with client.follow_logs(pod, "c") as chunks: async for b in chunks``; the
        stream is closed when the block ends. Never times out while the container is quiet."""
        body = self._log_request(pod, container, {**opts, "follow": True})
        request = self._http.build_request(
            "GET", "/getLogs", content=json.dumps(body).encode(),
            headers=self._headers("GetLogs"),
            timeout=httpx.Timeout(None, connect=self._http.timeout.connect))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable("/getLogs", exc) from None
        try:
            if response.status_code != 200:
                text = (await response.aread())[:MAX_ERROR_TEXT].decode("utf-8", "replace")
                raise APIError("/getLogs", response.status_code, text.strip())
            yield self._chunks(response)
        finally:
            await response.aclose()

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:  # the stream broke off: the server or the network
            raise self._unreachable("/getLogs", exc) from None

    async def delete(self, pod: dict[str, Any], *, timeout: float | None = None) -> str:
        """Delete the pod; the server's text. The answer comes once the containers are gone,
        after their grace period: give ``timeout`` when that may outlast the client's own."""
        reply = await self._call("DELETE", "/delete", pod, "DeletePod", timeout=timeout)
        return reply.text

    # --- plumbing -----------------------------------------------------------------------------

    def _headers(self, operation: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   SESSION_HEADER: f"{operation}#{next(self._calls)}"}
        token = self._token
        if self._token_file is not None:
            try:
                token = self._token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                # Not the server's fault and not transient: status 0, but no APIUnreachable.
                raise APIError("(token)", 0, f"cannot read the token file "
                               f"{self._token_file}: {exc.strerror or exc}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _call(self, method: str, route: str, body: Any, operation: str, *,
                    timeout: float | None = None) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        try:
            reply = await self._http.request(
                method, route, content=content, headers=self._headers(operation),
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        except httpx.HTTPError as exc:
            raise self._unreachable(route, exc) from None
        if reply.status_code != 200:
            raise APIError(route, reply.status_code,
                           reply.text[:MAX_ERROR_TEXT].strip() or "(empty answer)")
        return reply

    def _unreachable(self, route: str, exc: httpx.HTTPError) -> APIUnreachable:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return APIUnreachable(route, f"call to {self.url}{route} {kind}: "
                              f"{exc or type(exc).__name__}",
                              sent=not isinstance(exc, (httpx.ConnectError,
                                                        httpx.ConnectTimeout)))

    @staticmethod
    def _json(reply: httpx.Response, route: str) -> Any:
        try:
            return reply.json()
        except ValueError:
            raise APIError(route, reply.status_code,
                           f"the answer is not JSON: {reply.text[:200]!r}") from None

    @staticmethod
    def _log_request(pod: dict[str, Any], container: str, opts: dict[str, Any]) -> Any:
        names = {"tail": "Tail", "limit_bytes": "Bytes", "timestamps": "Timestamps",
                 "follow": "Follow", "previous": "Previous", "since_seconds": "SinceSeconds",
                 "since_time": "SinceTime"}
        unknown = set(opts) - set(names)
        if unknown:
            raise TypeError(f"unknown log options: {', '.join(sorted(unknown))}")
        meta = pod.get("metadata") or {}
        return LogStruct(Namespace=meta.get("namespace", ""), PodUID=meta.get("uid", ""),
                         PodName=meta.get("name", ""), ContainerName=container,
                         Opts=ContainerLogOpts.model_validate(
                             {names[k]: v for k, v in opts.items()})).to_wire()


def _parse(model: type[Any], data: Any, route: str, reply: httpx.Response) -> Any:
    """A 200 answer of the wrong shape is the server's error too, not a crash of the caller."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(route, reply.status_code, f"the answer does not fit "
                       f"{model.__name__}: {exc.errors()[0]['msg'] if exc.errors() else exc}"
                       ) from None
