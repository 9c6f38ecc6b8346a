"""A small, real interLink plugin process for the API server's tests.

It answers like a plugin would, records every request it gets (method, path, headers, raw body),
and can be told to answer a path with a given status, body or delay. Run as
``python tests/fake_plugin.py --port N`` or ``--uds PATH``.

Control endpoints (not part of the plugin protocol): ``GET /_requests`` returns the records,
``POST /_reset`` clears them, ``POST /_program`` with ``{"path": ..., "status": ..., "body": ...,
"delay": ..., "stall": ...}`` overrides one path's answer (``stall``: send the body, then
never end it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

RECORDS: list[dict[str, Any]] = []
PROGRAM: dict[str, dict[str, Any]] = {}
ANY = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def running_status(pod: dict[str, Any]) -> dict[str, Any]:
    """Every container running; fields of the wrong type read as absent, as a plugin that
    keeps serving would read them (the API forwards pods it only checked the identity of)."""
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)] \
        if isinstance(spec.get("containers"), list) else []
    return {
        "name": meta.get("name", ""), "UID": meta.get("uid", ""),
        "namespace": meta.get("namespace", ""), "JID": "fake-" + meta.get("uid", "")[:8],
        "containers": [{
            "name": c.get("name", ""), "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}},
            "lastState": {}, "ready": True, "restartCount": 0, "image": c.get("image", ""),
            "imageID": "", "containerID": "docker://fake", "started": True,
        } for c in containers],
        "initContainers": [],
    }


async def handle(request: Request) -> Response:
    body = await request.body()
    path = request.url.path
    RECORDS.append({"method": request.method, "path": path, "headers": dict(request.headers),
                    "body": base64.b64encode(body).decode()})
    program = PROGRAM.get(path)
    if program:
        await asyncio.sleep(program.get("delay", 0))
        if "status" in program and program.get("stall"):
            async def stalled() -> Any:  # part of the body, then nothing, for ever
                yield program.get("body", "").encode()
                await asyncio.sleep(3600)

            return StreamingResponse(stalled(), status_code=program["status"],
                                     media_type="text/plain")
        if "status" in program:
            return Response(program.get("body", ""), status_code=program["status"],
                            media_type=program.get("media_type", "text/plain"))
    if path == "/create":
        data = json.loads(body)
        while isinstance(data, list):
            data = data[0]
        uid = data["pod"]["metadata"]["uid"]
        return JSONResponse({"PodUID": uid, "PodJID": "fake-" + uid[:8]})
    if path == "/delete":
        return PlainTextResponse("All containers for submitted Pods have been deleted")
    if path == "/status":
        pods = json.loads(body or b"[]")
        if not pods:
            return JSONResponse({"status": "ok", "resources": {
                "cpu": "16", "memory": "64Gi", "pods": "110",
                "accelerators": [{"resourceType": "nvidia.com/gpu", "available": "2"}]}})
        return JSONResponse([running_status(p) for p in pods if isinstance(p, dict)])
    if path == "/getLogs":
        req = json.loads(body)
        lines = int(program.get("lines", 3)) if program else 3
        delay = float(program.get("line_delay", 0)) if program else 0.0

        async def stream() -> Any:
            for i in range(lines):
                yield f"{req['ContainerName']} line {i}\n".encode()
                if delay:
                    await asyncio.sleep(delay)

        return StreamingResponse(stream(), media_type="text/plain")
    return PlainTextResponse("not found", status_code=404)


async def requests_(request: Request) -> Response:
    return JSONResponse(RECORDS)


async def reset(request: Request) -> Response:
    RECORDS.clear()
    PROGRAM.clear()
    return PlainTextResponse("ok")


async def program(request: Request) -> Response:
    spec = await request.json()
    PROGRAM[spec.pop("path")] = spec
    return PlainTextResponse("ok")


app = Starlette(routes=[
    Route("/_requests", requests_, methods=["GET"]),
    Route("/_reset", reset, methods=["POST"]),
    Route("/_program", program, methods=["POST"]),
    Route("/{path:path}", handle, methods=ANY),
])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--uds", default="")
    args = parser.parse_args()
    kwargs: dict[str, Any] = {"uds": args.uds} if args.uds else {"host": "127.0.0.1",
                                                                    "port": args.port}
    uvicorn.run(app, log_level="warning", **kwargs)
