"""Caps on what one request may make the sidecar read and answer: body bytes on every endpoint
(``Sidecar.MaxBodyBytes``) and pods in one ``/status`` (``Sidecar.MaxStatusPods``)."""

from __future__ import annotations

from starlette.requests import Request

# One exception for both services' caps: interlink_common.errors answers it with 413.
from interlink_common.errors import RequestTooLarge

__all__ = ["RequestTooLarge", "check_status_count", "read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes: a declared length is checked
    before reading, and a chunked body is counted as it arrives, so neither is buffered whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(_body_message(request.url.path, int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(_body_message(request.url.path, size, limit, more=True))
        chunks.append(chunk)
    return b"".join(chunks)


def _body_message(path: str, size: int, limit: int, more: bool = False) -> str:
    return (f"{path}: request body of {'more than ' if more else ''}{size} bytes is over the "
            f"cap of {limit} bytes (Sidecar.MaxBodyBytes); send less, or raise "
            "Sidecar.MaxBodyBytes in the sidecar config")


def check_status_count(count: int, limit: int) -> None:
    if count > limit:
        raise RequestTooLarge(
            f"/status: request names {count} pods, over the cap of {limit} pods per request "
            "(Sidecar.MaxStatusPods); ask in smaller batches, or raise Sidecar.MaxStatusPods "
            "in the sidecar config")
