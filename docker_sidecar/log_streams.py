"""``/getLogs`` streams that cannot starve the rest of the sidecar.

Docker's log stream is read asynchronously, with ``httpx.AsyncClient`` straight over the
engine's socket: an idle ``Follow`` is one socket and one coroutine, never a thread, so the
worker threads that create and delete pods (the default executor) are never taken by logs,
however many clients follow. Where the engine is reached in a way httpx cannot speak (TLS,
ssh), logs fall back to docker-py's blocking stream read on a pool of their own, sized to the
follow cap, which again leaves the default executor alone.

Concurrent streams are capped per pod (``Sidecar.MaxLogFollowsPerPod``) and in total
(``Sidecar.MaxLogFollows``); beyond that, ``open`` refuses with ``TooManyStreams`` (HTTP 429).
Reads without ``Follow`` count too: they end by themselves only when the client reads them, and
a client that stops reading holds its Docker connection as long as a follow would.
A stream gives its slot and its Docker connection back when it ends, when the client goes
away (Starlette cancels the body iterator on disconnect) or when the response is dropped
before it started (``Stream.close``, also run as the response's background task).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
from docker.utils import parse_host

from .engine import Engine
from .logs import LogParams

# Docker's multiplexed stream (a container without a TTY): 8-byte header per frame, the
# stream type, three zero bytes, then the payload length, big-endian.
_HEADER = struct.Struct(">BxxxL")


class TooManyStreams(Exception):
    """A stream over a cap; the message names the cap and its key."""


class LogStreamError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Stream:
    """An open log stream: iterate ``chunks()``; ``close()`` is idempotent."""

    def __init__(self, chunks: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]]
                 ) -> None:
        self._chunks = chunks
        self._on_close = on_close
        self._closed = False

    async def chunks(self, limit: int | None) -> AsyncIterator[bytes]:
        left = limit
        try:
            async for chunk in self._chunks:
                if left is not None:
                    chunk = chunk[:left]
                    left -= len(chunk)
                if chunk:
                    yield chunk
                if left == 0:
                    return
        finally:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._on_close()


class LogStreams:
    def __init__(self, engine: Engine, *, per_pod: int, total: int,
                 docker_host: str | None = None) -> None:
        self.engine = engine
        self.per_pod = per_pod
        self.total = total
        self.open_streams: Counter[str] = Counter()
        url = parse_host(docker_host if docker_host is not None else
                         os.environ.get("DOCKER_HOST"), False,
                         os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"))
        self._client: httpx.AsyncClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        # Streams are capped by ``_reserve``. No pool limit here, so that the capped number of
        # idle follows can never make another read wait for a connection.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=8)
        timeout = httpx.Timeout(30.0, read=None)
        if url.startswith("http+unix://"):
            self._client = httpx.AsyncClient(
                base_url="http://docker", timeout=timeout, limits=limits,
                transport=httpx.AsyncHTTPTransport(uds=url[len("http+unix://"):]))
        elif url.startswith("http://"):
            self._client = httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits)
        else:
            self._pool = ThreadPoolExecutor(max_workers=total + 4, thread_name_prefix="logs")

    @property
    def asynchronous(self) -> bool:
        return self._client is not None

    def _reserve(self, pod_uid: str, pod_ref: str) -> None:
        if sum(self.open_streams.values()) >= self.total:
            raise TooManyStreams(
                f"{self.total} log streams are open already, the most this node allows "
                "(Sidecar.MaxLogFollows); close one, or raise Sidecar.MaxLogFollows in the "
                "sidecar config")
        if self.open_streams[pod_uid] >= self.per_pod:
            raise TooManyStreams(
                f"{self.per_pod} log streams of pod {pod_ref} are open already, the most "
                "one pod allows (Sidecar.MaxLogFollowsPerPod); close one, or raise "
                "Sidecar.MaxLogFollowsPerPod in the sidecar config")
        self.open_streams[pod_uid] += 1

    def _release(self, pod_uid: str) -> None:
        self.open_streams[pod_uid] -= 1
        if self.open_streams[pod_uid] <= 0:
            del self.open_streams[pod_uid]

    async def open(self, cid: str, params: LogParams, *, tty: bool, pod_uid: str,
                   pod_ref: str) -> Stream:
        """Start reading; raises ``TooManyStreams`` or ``LogStreamError`` before any byte."""
        self._reserve(pod_uid, pod_ref)
        try:
            if self._client is not None:
                chunks, close_source = await self._open_async(cid, params, tty)
            else:
                chunks, close_source = await self._open_threaded(cid, params)
        except BaseException:
            self._release(pod_uid)
            raise

        async def close() -> None:
            # The source is closed here, not (only) in the generator's finally: a body that
            # never started iterating never runs it.
            try:
                await close_source()
            finally:
                self._release(pod_uid)

        return Stream(chunks, close)

    async def _open_async(self, cid: str, params: LogParams, tty: bool
                          ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        assert self._client is not None
        query: dict[str, str] = {"stdout": "1", "stderr": "1",
                                 "follow": "1" if params.follow else "0",
                                 "timestamps": "1" if params.timestamps else "0",
                                 "tail": str(params.tail) if params.tail else "all"}
        if params.since is not None:
            query["since"] = f"{params.since:.9f}"
        request = self._client.build_request(
            "GET", f"/v{self.engine.api.api_version}/containers/{quote(cid)}/logs", params=query)
        response = await self._client.send(request, stream=True)
        if response.status_code != 200:
            body = (await response.aread()).decode("utf-8", "replace")
            await response.aclose()
            raise LogStreamError(404 if response.status_code == 404 else 502,
                                 f"Docker could not read the container's log: {body.strip()}")
        return _read(response, tty), response.aclose

    async def _open_threaded(self, cid: str, params: LogParams
                             ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        loop = asyncio.get_running_loop()
        stream = await loop.run_in_executor(self._pool, lambda: self.engine.logs(
            cid, follow=params.follow, tail=params.tail, timestamps=params.timestamps,
            since=params.since))

        async def close() -> None:
            # Unblocks the pool thread waiting on a quiet container.
            close_stream = getattr(stream, "close", None)
            if close_stream is not None:
                close_stream()

        return _read_threaded(stream, self._pool), close

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


async def _read(response: httpx.Response, tty: bool) -> AsyncIterator[bytes]:
    """Payload bytes of Docker's log stream (stdout and stderr as they come)."""
    try:
        if tty:
            async for chunk in response.aiter_raw():
                yield chunk
            return
        buffer = bytearray()
        async for chunk in response.aiter_raw():
            buffer += chunk
            while len(buffer) >= _HEADER.size:
                _, size = _HEADER.unpack_from(buffer)
                if len(buffer) < _HEADER.size + size:
                    break
                payload = bytes(buffer[_HEADER.size:_HEADER.size + size])
                del buffer[:_HEADER.size + size]
                if payload:
                    yield payload
    finally:
        await response.aclose()


async def _read_threaded(stream: Iterator[bytes], pool: ThreadPoolExecutor | None
                         ) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while (chunk := await loop.run_in_executor(pool, next, stream, None)) is not None:
        yield chunk
