"""The sidecar's HTTP API: the interLink plugin endpoints (docs/PROTOCOL.md section 2)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from interlink_common import openapi
from interlink_common.door import Door
from interlink_common.errors import answer_errors
from interlink_common.identity import IdentityError, check_pod_identity, check_uid
from interlink_common.observe import RequestObserver
from interlink_common.plugin_auth import RequireToken, TokenFile
from interlink_common.wire import (
    Accelerator,
    LogStruct,
    NodeResources,
    PingResponse,
    RetrievedPodData,
    WireError,
    dumps,
    loads,
    parse_model,
    unwrap_single,
)

from .containers import Container
from .engine import Engine
from .log_streams import LogStreamError, LogStreams, TooManyStreams
from .logs import log_params
from .metrics import SidecarMetrics
from .plan import NodeFacts, PlanError
from .gpus import accelerators, sample
from .pods import LogLookupError, PodManager
from .quantity import format_bytes_k8s
from .request_limits import check_status_count, read_body
from .schema import DESCRIPTION, MODELS, OPERATIONS_DOCS, PLUGIN_DOCS, TOKEN

log = logging.getLogger("interlink.sidecar")

ANY_METHOD = ["GET", "POST", "PUT", "DELETE", "PATCH"]
JSON = "application/json"
ROUTES = ("/create", "/delete", "/status", "/getLogs", "/healthz", "/metrics", "/gpus")


class Sidecar:
    def __init__(self, manager: PodManager, engine: Engine, metrics: SidecarMetrics,
                 resources: NodeResources) -> None:
        self.manager = manager
        self.engine = engine
        self.metrics = metrics
        self.resources = resources
        policy = manager.policy
        self.log_streams = LogStreams(engine, per_pod=policy.MaxLogFollowsPerPod,
                                      total=policy.MaxLogFollows)

    async def create(self, body: bytes) -> Response:
        raw = unwrap_single(loads(body, "create request"), "create request")
        data: RetrievedPodData = parse_model(RetrievedPodData, raw, "create request")
        try:
            created = await self.manager.create(data)
        except IdentityError as exc:
            return PlainTextResponse(f"create request: {exc}", status_code=400)
        except PlanError as exc:
            ref = f"{data.pod.metadata.namespace}/{data.pod.metadata.name}"
            return PlainTextResponse(f"pod {ref} cannot run on this node: {exc}",
                                     status_code=422)
        return Response(dumps(created.to_wire()), media_type=JSON)

    async def delete(self, body: bytes) -> Response:
        pod = loads(body, "delete request")
        if isinstance(pod, list) and len(pod) == 1:
            pod = pod[0]
        if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
            raise WireError("delete request: expected one pod object with metadata.uid")
        meta = pod["metadata"]
        # The UID names the pod's directory on the host: never anything but a UUID.
        try:
            check_pod_identity(pod, containers=False)
        except IdentityError as exc:
            raise WireError(f"delete request: {exc}") from None
        ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        # A client that gives up must not leave a pod half-deleted: the deletion runs as its
        # own task and finishes either way.
        if await asyncio.shield(asyncio.ensure_future(self.manager.delete(pod))):
            return PlainTextResponse(f"pod {ref} deleted")
        return PlainTextResponse(f"pod {ref} was not found on this node; nothing to delete")

    async def status(self, body: bytes) -> Response:
        pods = loads(body, "status request") if body.strip() else []
        if not isinstance(pods, list):
            raise WireError("status request: expected a JSON array of pods")
        if not pods:
            return Response(dumps(self.ping().to_wire()), media_type=JSON)
        check_status_count(len(pods), self.manager.policy.MaxStatusPods)
        out = []
        for i, pod in enumerate(pods):
            if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
                raise WireError(f"status request: pod [{i}] has no metadata.uid")
            try:
                check_uid(pod["metadata"].get("uid"), f"pod [{i}] metadata.uid")
            except IdentityError as exc:
                raise WireError(f"status request: {exc}") from None
            out.append(self.manager.status(pod).to_wire())
        return Response(dumps(out), media_type=JSON)

    def ping(self) -> PingResponse:
        """Node capacity; a current VK updates the node's GPUs from ``accelerators``."""
        found = accelerators(self.manager.gpus, self.manager.allocator)
        resources = self.resources.model_copy(update={
            "accelerators": [Accelerator.model_validate(a) for a in found]})
        return PingResponse(status="ok", resources=resources)

    def gpu_report(self) -> dict[str, Any]:
        """Every allocatable GPU, its readings and the pod that holds it (``GET /gpus``)."""
        inventory, allocator = self.manager.gpus, self.manager.allocator
        holders = allocator.holders() if allocator else {}
        readings = {r.uuid: r for r in sample(inventory)} if inventory.enabled else {}
        return {
            "enabled": inventory.enabled, "reason": inventory.reason,
            "resource": inventory.resource_name, "driverVersion": inventory.driver_version,
            "free": allocator.free_count() if allocator else 0,
            "gpus": [{
                "uuid": u.uuid, "name": u.name, "index": u.index, "parentUUID": u.parent_uuid,
                "memoryTotal": u.memory_total,
                "memoryUsed": readings[u.uuid].memory_used if u.uuid in readings else None,
                "utilization": readings[u.uuid].utilization if u.uuid in readings else None,
                "pod": holders.get(u.uuid)} for u in inventory.units],
            "skipped": inventory.skipped,
            "queue": [{"pod": w.pod_ref, "count": w.count}
                      for w in (allocator.waiting() if allocator else [])],
        }

    def find_log_container(self, req: LogStruct) -> Container:
        return self.manager.find_log_container(req)

    async def get_logs(self, body: bytes) -> Response:
        req: LogStruct = parse_model(LogStruct, loads(body, "log request"), "log request")
        try:
            container = self.find_log_container(req)
        except LogLookupError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        params = log_params(req.Opts)
        # Read without a worker thread: a follow must never hold one that /create needs.
        try:
            stream = await self.log_streams.open(container.id, params, tty=container.tty,
                                                 pod_uid=req.PodUID,
                                                 pod_ref=f"{req.Namespace}/{req.PodName}")
        except TooManyStreams as exc:
            return PlainTextResponse(str(exc), status_code=429)
        except LogStreamError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        # The background task frees the slot even when the body never started streaming.
        return StreamingResponse(stream.chunks(params.limit_bytes), media_type="text/plain",
                                 background=BackgroundTask(stream.close))

    def phases(self) -> dict[str, int]:
        return self.manager.phases()


def node_resources(engine: Engine, policy: Any) -> tuple[NodeResources, NodeFacts]:
    info = engine.info()
    cpus = int(info.get("NCPU") or os.cpu_count() or 1)
    memory = int(info.get("MemTotal") or 0)
    resources = NodeResources(cpu=policy.CPU or str(cpus),
                              memory=policy.Memory or format_bytes_k8s(memory),
                              pods=str(policy.Pods), accelerators=[])
    try:
        host_ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        host_ip = ""
    node = NodeFacts(cpus=cpus, memory=memory, name=policy.NodeName or info.get("Name", ""),
                     host_ip=host_ip)
    return resources, node


def create_app(sidecar: Sidecar, token: TokenFile | None = None,
               door: Door | None = None) -> FastAPI:
    """The sidecar's app; with ``token``, every call but /healthz must carry it (401).

    ``door`` holds the checks against forged browser requests (``interlink_common/door.py``)
    for a listener without a credential: a foreign Host is 421, a body that is not JSON 415.
    """
    manager = sidecar.manager

    def refused(request: Request, body: bytes | None) -> Response | None:
        if door is None:
            return None
        answer = door.check_host(request) if body is None else door.check_body_type(request,
                                                                                   body)
        if answer is not None:
            log.warning("refused %s %s from a possible browser page: %s", request.method,
                        request.url.path, answer.body.decode()[:160])
        return answer

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # Docker calls block a worker thread each; the default pool (cores + 4) is too small
        # when many pods start or stop at once.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=64,
                                                     thread_name_prefix="docker"))
        await manager.start()
        try:
            yield
        finally:
            await manager.close()
            await sidecar.log_streams.aclose()

    # The document needs the token like every route but /healthz (RequireToken below).
    app = openapi.raw_app(title="interLink Docker sidecar", version=openapi.package_version(),
                          lifespan=lifespan, docs_url="/docs", redoc_url=None,
                          openapi_url="/openapi.json")

    def endpoint(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            async def answer() -> Response:
                refused_early = refused(request, None)
                if refused_early is not None:
                    return refused_early
                body = await read_body(request, manager.policy.MaxBodyBytes)
                return refused(request, body) or await handler(body)
            return await answer_errors(request, answer, log)
        return run

    for path, handler in (("/create", sidecar.create), ("/delete", sidecar.delete),
                          ("/status", sidecar.status), ("/getLogs", sidecar.get_logs)):
        doc = PLUGIN_DOCS[path]
        run = endpoint(handler)
        # Listed: what the API server sends; served too, unlisted: every other method.
        app.add_api_route(path, run, operation_id=path.lstrip("/"), response_class=Response,
                          **doc)
        app.add_api_route(path, run, include_in_schema=False, response_class=Response,
                          methods=[m for m in ANY_METHOD if m not in doc["methods"]])

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    # Read-only, but DNS rebinding would let a page read them: pod names, GPU holders.
    async def metrics(request: Request) -> Response:
        return refused(request, None) or Response(
            sidecar.metrics.render(sidecar.phases, sidecar.gpu_report),
            media_type=sidecar.metrics.content_type)

    async def gpus(request: Request) -> Response:
        return refused(request, None) or Response(dumps(sidecar.gpu_report()), media_type=JSON)

    for path, run in (("/healthz", healthz), ("/metrics", metrics), ("/gpus", gpus)):
        app.add_api_route(path, run, methods=["GET"], operation_id=path.lstrip("/"),
                          response_class=Response, **OPERATIONS_DOCS[path])
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False,
                      response_class=Response)
    openapi.install(app, MODELS, description=DESCRIPTION, open_paths=("/healthz",),
                    bearer=None if token is None else TOKEN)
    app.add_middleware(RequestObserver, routes=ROUTES, record=lambda route, method, status, _s, _w: (
        sidecar.metrics.requests.labels(route, str(status)).inc()))
    if token is not None:
        app.add_middleware(RequireToken, token=token)  # outermost: refused before anything runs
    return app
