"""The server side of the stand-in reverse tunnel (protocol in tunnel_client.py).

It runs inside the test process, on a thread of its own with its own asyncio loop:

    server = start_tunnel_server("127.0.0.1")
    ...  # the client connects to server.control_port and registers remote port N
    server.wait_registered(N, timeout=5)
    ...  # connections to 127.0.0.1:N reach the client's --local service
    server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .tunnel_client import pipe

log = logging.getLogger("tunnel_server")

T = TypeVar("T")
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]

FIRST_LINE_TIMEOUT = 10.0
# SO_LINGER on, zero seconds: close() sends a RST instead of a FIN.
LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class _Registration:
    port: int
    control: asyncio.StreamWriter
    listener: asyncio.Server | None = None
    parked: set[str] = field(default_factory=set)


@dataclass
class _Parked:
    port: int
    public: Streams
    claimed: asyncio.Future[Streams | None]
    # Resolved when the pipe is over, so the data connection's handler can return.
    finished: asyncio.Future[None]


class TunnelServer:
    """A control listener on ``control_host:control_port``, and one public listener on
    ``public_host:N`` per registered remote port N."""

    def __init__(self, control_host: str, public_host: str, control_port: int,
                 park_timeout: float) -> None:
        self.control_host = control_host
        self.public_host = public_host
        self.park_timeout = park_timeout
        self.control_port = control_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tunnel-server",
                                        daemon=True)
        self._regs: dict[int, _Registration] = {}
        self._parked: dict[str, _Parked] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._control: asyncio.Server | None = None
        self._stopped = False

    # --- thread-side API ------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def registered(self) -> set[int]:
        """The remote ports with a live control connection and a public listener."""
        async def ports() -> set[int]:
            return {p for p, r in self._regs.items() if r.listener is not None}
        return self._call(ports())

    def wait_registered(self, port: int, timeout: float = 10.0) -> None:
        """Return once ``port`` is registered; TimeoutError after ``timeout`` seconds."""
        self._wait(lambda: port in self.registered(), timeout, f"port {port} never registered")

    def wait_unregistered(self, port: int, timeout: float = 10.0) -> None:
        """Return once ``port`` is no longer registered (its listener closed)."""
        self._wait(lambda: port not in self.registered(), timeout,
                   f"port {port} still registered")

    @staticmethod
    def _wait(ok: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} after {timeout}s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Close every listener and connection, and end the loop's thread."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "TunnelServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- loop side ------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._control = await asyncio.start_server(self._on_control_port, self.control_host,
                                                   self.control_port)
        self.control_port = self._control.sockets[0].getsockname()[1]
        log.info("control listener on %s:%d", self.control_host, self.control_port)

    async def _shutdown(self) -> None:
        servers = [self._control] + [r.listener for r in self._regs.values()]
        for server in servers:
            if server is not None:
                server.close()
        for parked in self._parked.values():
            if not parked.claimed.done():
                parked.claimed.set_result(None)
        for writer in list(self._writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _track(self, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)

    def _untrack(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        writer.close()

    async def _on_control_port(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        """Both kinds of client connection arrive here; the first line tells which."""
        self._track(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), FIRST_LINE_TIMEOUT)
            words = line.decode(errors="replace").split()
            if len(words) == 2 and words[0] == "REGISTER" and words[1].isdigit():
                await self._serve_control(int(words[1]), reader, writer)
            elif len(words) == 2 and words[0] == "DATA":
                await self._serve_data(words[1], reader, writer)
            elif len(words) >= 2 and words[0] == "FAIL":
                self._fail(words[1], " ".join(words[2:]))
            else:
                log.warning("bad first line %r", line)
                writer.write(b"ERR bad request\n")
        except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
            log.info("client connection ended: %r", exc)
        finally:
            self._untrack(writer)

    async def _serve_control(self, port: int, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        if not 0 < port < 65536:
            writer.write(b"ERR port out of range\n")
            return
        if port in self._regs:
            log.warning("port %d refused: already registered", port)
            writer.write(f"ERR port {port} already registered\n".encode())
            return
        # Claimed before the first await, so a concurrent REGISTER of the same port sees it.
        reg = self._regs[port] = _Registration(port, writer)
        try:
            try:
                reg.listener = await asyncio.start_server(
                    lambda r, w: self._on_public(reg, r, w), self.public_host, port)
            except OSError as exc:
                log.warning("port %d refused: %s", port, exc)
                writer.write(f"ERR cannot listen on {self.public_host}:{port}: "
                             f"{' '.join(str(exc).split())}\n".encode())
                return
            writer.write(b"OK\n")
            await writer.drain()
            log.info("port %d registered, public listener on %s:%d", port, self.public_host, port)
            while line := await reader.readline():
                if line.strip() == b"PING":
                    writer.write(b"PONG\n")
                    await writer.drain()
            log.info("port %d: control connection closed", port)
        finally:
            # The listener goes with its control connection: nothing could be served on it.
            del self._regs[port]
            if reg.listener is not None:
                reg.listener.close()
            for conn_id in list(reg.parked):
                parked = self._parked.get(conn_id)
                if parked is not None and not parked.claimed.done():
                    parked.claimed.set_result(None)

    async def _on_public(self, reg: _Registration, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """A connection to a public port waits here for the client's data connection."""
        self._track(writer)
        conn_id = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        claimed: asyncio.Future[Streams | None] = loop.create_future()
        finished: asyncio.Future[None] = loop.create_future()
        self._parked[conn_id] = _Parked(reg.port, (reader, writer), claimed, finished)
        reg.parked.add(conn_id)
        try:
            reg.control.write(f"OPEN {conn_id}\n".encode())
            await reg.control.drain()
            data = await asyncio.wait_for(claimed, self.park_timeout)
        except asyncio.TimeoutError:
            log.warning("port %d: connection %s never claimed, closing", reg.port, conn_id)
            data = None
        except (OSError, ConnectionError):
            data = None
        finally:
            self._parked.pop(conn_id, None)
            reg.parked.discard(conn_id)
        try:
            if data is not None:
                await pipe((reader, writer), data)
        finally:
            self._untrack(writer)
            if not finished.done():
                finished.set_result(None)

    async def _serve_data(self, conn_id: str, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        parked = self._parked.get(conn_id)
        if parked is None or parked.claimed.done():
            log.warning("data connection for unknown connection %s", conn_id)
            return
        # The public side's task does the piping; this one only waits for it to end, as its
        # handler closes the connection on return.
        parked.claimed.set_result((reader, writer))
        await parked.finished

    def _fail(self, conn_id: str, why: str) -> None:
        parked = self._parked.get(conn_id)
        if parked is None or parked.claimed.done():
            return
        log.info("port %d: connection %s refused by the client: %s", parked.port, conn_id, why)
        # A reset, as a refused connection to the service itself would look.
        sock = parked.public[1].get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        parked.claimed.set_result(None)


def start_tunnel_server(control_host: str, public_host: str = "127.0.0.1", *,
                        control_port: int = 0, park_timeout: float = 10.0) -> TunnelServer:
    """Start a tunnel server on a background thread. ``control_port`` 0 picks an ephemeral
    port (read it back from ``.control_port``); public connections not claimed by the client
    within ``park_timeout`` seconds are closed."""
    server = TunnelServer(control_host, public_host, control_port, park_timeout)
    server._start()
    return server
