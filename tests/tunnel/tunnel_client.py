#!/usr/bin/env python3
"""A minimal reverse-tunnel client, a stand-in for ``wstunnel client -R`` in the tests.

    tunnel_client.py --server HOST:PORT --remote-port N --local HOST:PORT

It holds a control connection to the server (tests/tunnel/tunnel_server.py) and registers
remote port N there. For each ``OPEN <id>`` the server sends, it connects to ``--local``,
opens a fresh data connection to the server (``DATA <id>``) and pipes bytes both ways,
passing half-closes on. It reconnects forever, with backoff, and logs one line per event to
stderr. Standard library only: it runs inside whatever image the companion container has.

Protocol, one line per message (ASCII, ``\\n``-terminated):

* control, client to server: ``REGISTER <port>``, then ``PING`` now and then;
  server to client: ``OK`` or ``ERR <why>`` (and the connection closes), then ``OPEN <id>``
  per public connection and ``PONG`` per ``PING``.
* data, client to server: ``DATA <id>`` then raw bytes both ways, or ``FAIL <id> <why>``
  when the local service cannot be reached (the server resets the public connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

CHUNK = 256 * 1024
BACKOFF_MIN = 0.2
BACKOFF_MAX = 2.0
CONNECT_TIMEOUT = 5.0
PING_INTERVAL = 5.0
# Three missed answers: the server (or the path to it) is gone even if no FIN ever came.
CONTROL_SILENCE = 3 * PING_INTERVAL


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} tunnel-client: {message}", file=sys.stderr, flush=True)


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` to (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(CHUNK):
        dst.write(data)
        await dst.drain()
    # Pass the half-close on: the other direction may still have bytes to carry (an HTTP
    # client that shuts down its write side and then reads the answer).
    if dst.can_write_eof() and not dst.is_closing():
        dst.write_eof()


async def pipe(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
               b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Carry bytes between two connections until both directions end or one breaks, then
    close both."""
    tasks = {asyncio.ensure_future(_pump(a[0], b[1])), asyncio.ensure_future(_pump(b[0], a[1]))}
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        # A broken direction ends the whole connection: the peer must see a close, not a
        # half-open socket that never answers.
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
    finally:
        for task in tasks:
            task.cancel()
        for _, writer in (a, b):
            writer.close()
        for _, writer in (a, b):
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()


class Client:
    def __init__(self, server: tuple[str, int], remote_port: int, local: tuple[str, int]):
        self.server = server
        self.remote_port = remote_port
        self.local = local
        # Strong references: the loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            if await self._control_session():
                delay = BACKOFF_MIN
            log(f"retrying in {delay:.1f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _control_session(self) -> bool:
        """One control connection, registered and serving until it drops. True when the
        registration was accepted (the backoff starts over)."""
        host, port = self.server
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            log(f"server {host}:{port} unreachable: {exc or type(exc).__name__}")
            return False
        pinger: asyncio.Task[None] | None = None
        registered = False
        try:
            writer.write(f"REGISTER {self.remote_port}\n".encode())
            await writer.drain()
            answer = (await asyncio.wait_for(reader.readline(), CONTROL_SILENCE)).decode().strip()
            if answer != "OK":
                log(f"register of remote port {self.remote_port} refused: {answer or 'EOF'}")
                return False
            registered = True
            log(f"registered remote port {self.remote_port} on {host}:{port}, "
                f"local {self.local[0]}:{self.local[1]}")
            pinger = asyncio.create_task(self._ping(writer))
            while True:
                line = await asyncio.wait_for(reader.readline(), CONTROL_SILENCE)
                if not line:
                    log("control connection closed by the server")
                    return registered
                words = line.decode(errors="replace").split()
                if words[:1] == ["OPEN"] and len(words) == 2:
                    self._spawn(self._serve(words[1]))
                elif words[:1] != ["PONG"]:
                    log(f"unexpected control line {line!r}")
        except asyncio.TimeoutError:
            log("control connection silent, reconnecting")
            return registered
        except (OSError, ConnectionError, UnicodeDecodeError) as exc:
            log(f"control connection lost: {exc!r}")
            return registered
        finally:
            if pinger is not None:
                pinger.cancel()
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await asyncio.sleep(PING_INTERVAL)
                writer.write(b"PING\n")
                await writer.drain()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn_id: str) -> None:
        """One public connection: local first, so a dead local service turns into a reset
        at once rather than a connection the server keeps open."""
        try:
            local = await asyncio.wait_for(asyncio.open_connection(*self.local), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            log(f"connection {conn_id}: local {self.local[0]}:{self.local[1]} unreachable: {why}")
            await self._send_fail(conn_id, why)
            return
        try:
            data = await asyncio.wait_for(asyncio.open_connection(*self.server), CONNECT_TIMEOUT)
            data[1].write(f"DATA {conn_id}\n".encode())
            await data[1].drain()
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            log(f"connection {conn_id}: data connection failed: {exc!r}")
            local[1].close()
            return
        log(f"connection {conn_id}: open")
        await pipe(data, local)
        log(f"connection {conn_id}: closed")

    async def _send_fail(self, conn_id: str, why: str) -> None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(*self.server), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            return  # the server times the parked connection out by itself
        writer.write(f"FAIL {conn_id} {' '.join(why.split())}\n".encode())
        with contextlib.suppress(OSError, ConnectionError):
            await writer.drain()
        writer.close()


async def amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    # Run as PID 1 of a container, the process gets no default SIGTERM action: without a
    # handler `docker stop` would wait out its whole grace period.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    client = Client(args.server, args.remote_port, args.local)
    try:
        await client.run()
    except asyncio.CancelledError:
        log("stopping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", type=split_host_port, required=True, help="HOST:PORT")
    parser.add_argument("--remote-port", type=int, required=True)
    parser.add_argument("--local", type=split_host_port, required=True, help="HOST:PORT")
    args = parser.parse_args(argv)
    if not 0 < args.remote_port < 65536:
        parser.error("--remote-port must be 1..65535")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
