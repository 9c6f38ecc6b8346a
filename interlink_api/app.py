"""The API server: the VK's endpoints (docs/PROTOCOL.md section 1), forwarding to one plugin."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from interlink_common.config import InterLinkConfig
from interlink_common import openapi
from interlink_common.door import Door
from interlink_common.errors import RequestTooLarge, answer_errors
from interlink_common.identity import IdentityError, check_label, check_pod_identity, \
    check_subdomain, check_uid
from interlink_common.listen import Listener
from interlink_common.logconfig import redact
from interlink_common.observe import RequestObserver, note_subject
from interlink_common.plugin_auth import TokenFile
from interlink_common.wire import (
    LogStruct,
    Pod,
    PodCreateRequests,
    WireError,
    dumps,
    loads,
    parse_model,
    unwrap_single,
)

from .auth import AuthError, OIDCValidator
from .cache import StatusCache
from .log_request import log_request_error
from .metrics import APIMetrics
from .plugin import (
    SESSION_HEADER,
    PluginClient,
    PluginReply,
    PluginUnreachable,
    client_tls,
    read_limited,
)
from .pod_data import retrieved_pod_data
from .profile import Profile, detect_profile
from .schema import DESCRIPTION, MODELS, OPEN_DOCS, VK_DOCS

log = logging.getLogger("interlink.api")
access = logging.getLogger("interlink.api.access")

# HEAD too: Starlette's routes have always answered it wherever GET is (so did ours).
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
VK_ROUTES = ("/create", "/delete", "/status", "/getLogs", "/pinglink", "/updateCache")
OPEN_ROUTES = ("/healthz", "/readyz", "/metrics")
JSON = "application/json"


@dataclass
class Call:
    """One VK call, as a handler sees it."""

    request: Request
    body: bytes
    session: str
    profile: Profile


@dataclass
class APIServer:
    cfg: InterLinkConfig
    plugin: PluginClient
    cache: StatusCache
    metrics: APIMetrics
    validator: OIDCValidator | None
    # Checks against forged browser requests; None when tokens are validated (or in-process).
    door: Door | None = None
    open_log_streams: int = 0

    # --- plumbing ---------------------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        limit = self.cfg.MaxBodyBytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(_too_large(limit))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(_too_large(limit))
            chunks.append(chunk)
        return b"".join(chunks)

    async def authenticate(self, request: Request) -> Response | None:
        if self.validator is None:
            return None
        try:
            await self.validator.validate(request.headers.get("authorization"))
        except AuthError as err:
            self.metrics.auth_failures.labels(err.reason).inc()
            log.warning("rejected %s %s from %s: %s", request.method, request.url.path,
                        request.client.host if request.client else "unix socket", err.message)
            return PlainTextResponse(f"{'forbidden' if err.status == 403 else 'unauthorized'}: "
                                     f"{err.message}", status_code=err.status,
                                     headers={"WWW-Authenticate": err.www_authenticate()})
        return None

    def plugin_error(self, path: str, reply: PluginReply) -> Response:
        """A non-200 plugin reply reaches the VK with the plugin's code and message, scrubbed
        of anything token-like (a plugin may echo the shared token or a header)."""
        text = redact(reply.body.decode("utf-8", "replace").strip() or "(empty body)")
        log.warning("plugin %s answered HTTP %d: %s", self.plugin.url(path), reply.status,
                    text[:2000])
        return PlainTextResponse(
            f"plugin {self.plugin.url(path)} answered HTTP {reply.status}: {text}",
            status_code=reply.status)

    # --- VK endpoints ----------------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        raw = unwrap_single(loads(call.body, "create request"), "create request")
        if not isinstance(raw, dict) or not isinstance(raw.get("pod"), dict):
            raise WireError("create request: expected an object with the pod under \"pod\"")
        # The plugin turns these names into host paths and container names: check them first.
        note_subject(call.request.scope, _pod_ref(raw["pod"]))  # refused or not, as sent
        _identity("create request: pod", check_pod_identity, raw["pod"])
        req: PodCreateRequests = parse_model(PodCreateRequests, raw, "create request")
        data = retrieved_pod_data(req, export_pod_data=self.cfg.ExportPodData).to_wire()
        payload = [data] if self.cfg.PluginCreateBody == "array" else data
        reply = await self.plugin.call("POST", "/create", dumps(payload), call.session)
        self.cache.evict(req.pod.uid)
        if reply.status != 200:
            return self.plugin_error("/create", reply)
        log.info("created pod %s (uid %s)", req.pod.ref(), req.pod.uid)
        return Response(reply.body, media_type=reply.content_type or JSON)

    async def delete(self, call: Call) -> Response:
        raw = loads(call.body, "delete request")
        if not isinstance(raw, dict):
            raise WireError(f"delete request: expected one pod object, got "
                            f"{type(raw).__name__}")
        note_subject(call.request.scope, _pod_ref(raw))  # refused or not, as sent
        _identity("delete request: pod", check_pod_identity, raw, containers=False)
        pod: Pod = parse_model(Pod, raw, "delete request")
        self.cache.evict(pod.uid)
        # Forwarded byte for byte: the plugin sees exactly the pod the VK sent.
        reply = await self.plugin.call("POST", "/delete", call.body, call.session)
        if reply.status != 200:
            return self.plugin_error("/delete", reply)
        log.info("deleted pod %s (uid %s)", pod.ref(), pod.uid)
        if call.profile == "legacy":
            gone = [{"name": pod.metadata.name, "UID": pod.uid,
                     "namespace": pod.metadata.namespace, "containers": None}]
            return Response(dumps(gone), media_type=JSON)
        return Response(reply.body, media_type=reply.content_type or "text/plain")

    async def status(self, call: Call) -> Response:
        data = loads(call.body, "status request") if call.body.strip() else []
        if not isinstance(data, list):
            raise WireError(f"status request: expected a JSON array of pods, got "
                            f"{type(data).__name__}")
        if not data:
            return Response(dumps(self.cache.all()), media_type=JSON)
        note_subject(call.request.scope, _pod_ref(data[0]) if len(data) == 1
                     else f"{len(data)} pods")
        uids: list[str] = []
        stale: list[Any] = []
        for i, pod in enumerate(data):
            meta = pod.get("metadata") if isinstance(pod, dict) else None
            if not isinstance(meta, dict):
                raise WireError(f"status request: pod [{i}] has no metadata")
            uid = _identity(f"status request: pod [{i}]", _status_identity, meta)
            status = pod.get("status")
            phase = status.get("phase") if isinstance(status, dict) else ""
            phase = phase if isinstance(phase, str) else ""
            uids.append(uid)
            if self.cache.needs_refresh(uid, phase):
                stale.append(pod)
        if stale:
            reply = await self.plugin.call("GET", "/status", dumps(stale), call.session)
            if reply.status != 200:
                return self.plugin_error("/status", reply)
            try:
                statuses = json.loads(reply.body)
            except (ValueError, RecursionError):
                statuses = None
            if not isinstance(statuses, list):
                return PlainTextResponse(
                    f"plugin {self.plugin.url('/status')} answered 200 without a JSON array "
                    "of pod statuses", status_code=502)
            self.cache.store([s for s in statuses if isinstance(s, dict)])
        found = [s for s in map(self.cache.get, uids) if s is not None]
        return Response(dumps(found), media_type=JSON)

    async def get_logs(self, call: Call) -> Response:
        raw = loads(call.body, "log request")
        req: LogStruct = parse_model(LogStruct, raw, "log request")
        note_subject(call.request.scope,
                     _printable(f"{req.Namespace}/{req.PodName}/{req.ContainerName}"))
        problem = log_request_error(req)
        if problem:
            return PlainTextResponse(problem, status_code=400)
        limit = self.cfg.MaxLogStreams
        if self.open_log_streams >= limit:
            log.warning("refused a log stream for pod %s/%s: %d are open (MaxLogStreams)",
                        req.Namespace, req.PodName, limit)
            return PlainTextResponse(
                f"{limit} log streams are open through this API server already, the most it "
                "allows (MaxLogStreams); close one, or raise MaxLogStreams in the config",
                status_code=429)
        self.open_log_streams += 1
        try:
            resp = await self.plugin.open_stream("GET", "/getLogs", dumps(req.to_wire()),
                                                 call.session, follow=req.Opts.Follow)
        except BaseException:
            self.open_log_streams -= 1
            raise
        closed = False

        async def close() -> None:
            # Run as the response's background task too: a client that leaves before the
            # first byte never starts the relay, so its finally would never run.
            nonlocal closed
            if not closed:
                closed = True
                self.open_log_streams -= 1
                await resp.aclose()

        if resp.status_code != 200:
            try:
                # A follow has no read timeout; its error reply must not hold the slot.
                body = await read_limited(resp, timeout=self.cfg.PluginTimeoutSeconds)
            finally:
                await close()
            return self.plugin_error("/getLogs", PluginReply(resp.status_code, body, ""))

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_bytes():
                    yield chunk
            finally:
                await close()

        return StreamingResponse(relay(), background=BackgroundTask(close),
                                 media_type=resp.headers.get("content-type", "text/plain"))

    async def ping(self, call: Call) -> Response:
        try:
            reply = await self.plugin.call("GET", "/status", b"[]", call.session)
        except PluginUnreachable as exc:
            log.error("ping: %s", exc)
            return PlainTextResponse("503", status_code=500)
        if call.profile == "legacy":
            # The legacy VK parses the body as an integer; 0 asks it for nothing more.
            if reply.status == 200:
                return PlainTextResponse("0")
            return self.plugin_error("/status", reply)
        return Response(reply.body, status_code=reply.status,
                        media_type=reply.content_type or JSON)

    async def update_cache(self, call: Call) -> Response:
        # Legacy VKs send the raw UID bytes, current ones the pod as JSON.
        uid: Any = call.body.decode("utf-8", "replace").strip()
        where = "body"
        try:
            parsed = json.loads(call.body) if call.body.strip() else None
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, str):
            uid = parsed
        elif isinstance(parsed, dict):
            meta = parsed.get("metadata") if isinstance(parsed.get("metadata"), dict) else {}
            uid, where = meta.get("uid") or parsed.get("UID"), "pod metadata.uid"
        self.cache.evict(_identity("updateCache request:", check_uid, uid, where))
        return PlainTextResponse("Updated cache")

    # --- operations ------------------------------------------------------------------------

    async def not_ready(self) -> str | None:
        """Why the server cannot serve the VK yet (its plugin does not answer), or None."""
        try:
            reply = await self.plugin.call("GET", "/status", b"[]", f"Request-{uuid.uuid4()}")
        except PluginUnreachable as exc:
            return str(exc)
        if reply.status != 200:
            return f"plugin {self.plugin.url('/status')} answered HTTP {reply.status}"
        return None

    async def readyz(self, request: Request) -> Response:
        why = await self.not_ready()
        if why is not None:
            return PlainTextResponse(f"not ready: {why}", status_code=503)
        return PlainTextResponse("ready")

    async def metrics_endpoint(self, request: Request) -> Response:
        self.metrics.cache_size.set(len(self.cache))
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


Handler = Callable[[Call], Awaitable[Response]]
# The plugin unreachable is no bug of ours: 500 with the reason, logged without a traceback.
EXPECTED: dict[type[Exception], int] = {PluginUnreachable: 500}


def _too_large(limit: int) -> str:
    return (f"request body larger than MaxBodyBytes ({limit} bytes); "
            "raise MaxBodyBytes in the config if such requests are expected")


def _pod_ref(pod: Any) -> str:
    """``namespace/name`` of a pod object as sent: for a log line, so no control characters
    (a name is checked later, or never when the call is refused) and bounded."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        return "?"
    return _printable(f"{meta.get('namespace', '')}/{meta.get('name', '')}")


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text[:300])


def _identity(where: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an identity check; its failure becomes a 400 naming the request and the field."""
    try:
        return check(*args, **kwargs)
    except IdentityError as exc:
        raise WireError(f"{where} {exc}") from None


def _status_identity(meta: dict[str, Any]) -> str:
    """A status request's pod: the UID always, namespace and name when the VK sent them."""
    uid = check_uid(meta.get("uid"))
    if meta.get("namespace") is not None:
        check_label(meta["namespace"], "metadata.namespace", "namespace name")
    if meta.get("name") is not None:
        check_subdomain(meta["name"], "metadata.name", "pod name")
    return uid


def _vk_endpoint(server: APIServer, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with what every VK call needs: auth, a bounded body, session, profile,
    and errors turned into clear answers instead of crashes (``interlink_common/errors.py``)."""

    async def endpoint(request: Request) -> Response:
        denied = await server.authenticate(request)
        if denied is None and server.door is not None:
            denied = server.door.check_host(request)
            if denied is not None:
                log.warning("refused %s %s: Host %.100r is not this server's", request.method,
                            request.url.path, request.headers.get("host", ""))
        if denied is not None:
            return denied
        session = request.headers.get(SESSION_HEADER) or f"Request-{uuid.uuid4()}"

        async def answer() -> Response:
            body = await server.read_body(request)
            refused = server.door.check_body_type(request, body) if server.door else None
            if refused is not None:
                log.warning("refused %s %s: Content-Type %.100r is not application/json",
                            request.method, request.url.path,
                            request.headers.get("content-type", ""))
                return refused
            return await handler(Call(request, body, session,
                                      detect_profile(server.cfg.Profile, request.headers)))

        response = await answer_errors(request, answer, log, EXPECTED)
        response.headers[SESSION_HEADER] = session
        return response

    return endpoint


def create_app(cfg: InterLinkConfig, validator: OIDCValidator | None = None,
               listener: Listener | None = None) -> FastAPI:
    """The API server as an ASGI app. FastAPI for the document (``/openapi.json``, ``/docs``),
    but no FastAPI body parsing: every endpoint reads the raw request, its schema is declared
    in ``schema.py``, and Starlette serves it (``openapi.RawRoute``), so a forwarded call pays
    little more than the routing.

    ``listener`` is where it is served; without token validation it decides the checks
    against forged browser requests (``door.py``). In-process (None) there are none.
    Raises ``TokenFileError`` when ``PluginTokenFile`` cannot be used, ``OSError`` or
    ``ssl.SSLError`` when the PluginTLS files cannot."""
    metrics = APIMetrics()
    plugin = PluginClient(cfg.sidecar_base, connect_timeout=cfg.PluginConnectTimeoutSeconds,
                          timeout=cfg.PluginTimeoutSeconds,
                          max_connections=cfg.PluginMaxConnections,
                          max_log_streams=cfg.MaxLogStreams,
                          observe=metrics.observe_plugin,
                          token=TokenFile(cfg.PluginTokenFile) if cfg.PluginTokenFile else None,
                          ssl_context=client_tls(cfg.PluginTLS)
                          if cfg.sidecar_base.startswith("https://") else None)
    door = Door.for_listener(listener, cfg, "configure OIDC (token validation), or listen on "
                             "a unix socket (InterlinkAddress: unix:///...)"
                             ) if listener and validator is None else None
    server = APIServer(cfg, plugin, StatusCache(), metrics, validator, door)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if validator is not None:
            await validator.start()
        try:
            yield
        finally:
            await plugin.aclose()
            if validator is not None:
                await validator.aclose()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    def record(route: str, method: str, status: int, seconds: float, subject: str) -> None:
        metrics.requests.labels(route, method, str(status)).inc()
        metrics.latency.labels(route).observe(seconds)
        if route not in OPEN_ROUTES:
            # The access line: one per VK call, what it was about, how it ended, how long.
            access.info("%s %s%s -> %d in %.1f ms", method, route,
                        f" {subject}" if subject else "", status, seconds * 1000)

    # The document and its page stay open with OIDC on, as /healthz does: they describe the
    # routes and reveal nothing of the pods or the tokens (docs/PROTOCOL.md section 7).
    app = openapi.raw_app(title="interLink API server", version=openapi.package_version(),
                          lifespan=lifespan, openapi_url="/openapi.json", docs_url="/docs",
                          redoc_url=None,
                          middleware=[Middleware(RequestObserver, routes=VK_ROUTES + OPEN_ROUTES,
                                                 record=record)])
    for path, handler in (
        ("/create", server.create),
        ("/delete", server.delete),
        ("/status", server.status),
        ("/getLogs", server.get_logs),
        ("/pinglink", server.ping),
        ("/updateCache", server.update_cache),
    ):
        doc = VK_DOCS[path]
        endpoint = _vk_endpoint(server, handler)
        # Listed: the methods the VKs send. Served too, unlisted: every other one, as
        # upstream's router does (the same endpoint, so the same answers).
        app.add_api_route(path, endpoint, methods=list(doc.methods), summary=doc.summary,
                          operation_id=path.lstrip("/"),
                          response_class=Response, responses=doc.all_responses(),
                          openapi_extra=doc.openapi_extra())
        app.add_api_route(path, endpoint, include_in_schema=False, response_class=Response,
                          methods=[m for m in ANY_METHOD if m not in doc.methods])
    for path, endpoint in (("/healthz", healthz), ("/readyz", server.readyz),
                           ("/metrics", server.metrics_endpoint)):
        app.add_api_route(path, endpoint, methods=["GET"], response_class=Response,
                          operation_id=path.lstrip("/"), **OPEN_DOCS[path])
        # HEAD answers as GET does; one operation in the document.
        app.add_api_route(path, endpoint, methods=["HEAD"], response_class=Response,
                          include_in_schema=False)
    openapi.install(app, MODELS, description=DESCRIPTION, open_paths=OPEN_ROUTES,
                    bearer=None if validator is None else
                    "A JWT from the configured OIDC issuer (audience, group as configured).")
    app.state.server = server
    app.state.ready = server.not_ready  # systemd's READY=1 waits for it (serve.py)
    return app
