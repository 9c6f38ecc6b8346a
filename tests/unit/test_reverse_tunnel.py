"""The stand-in reverse tunnel of tests/tunnel/: the server in this process, the client script
as a child process, local services on threads. No engine; the whole file runs in seconds."""

from __future__ import annotations

import http.client
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from procs import free_port
from tunnel.tunnel_server import TunnelServer, start_tunnel_server

CLIENT = Path(__file__).resolve().parent.parent / "tunnel" / "tunnel_client.py"


class _Http(BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length: the connection stays open between requests.
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(f"hello {self.path}".encode())

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, *args: object) -> None:
        pass


class _Echo(socketserver.BaseRequestHandler):
    """Echo until the peer half-closes, then half-close back."""

    def handle(self) -> None:
        while data := self.request.recv(1 << 16):
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)


class _Chat(socketserver.BaseRequestHandler):
    """Speak first, then answer: bytes must flow as they come, not when a side closes."""

    def handle(self) -> None:
        self.request.sendall(b"ready\n")
        if self.request.recv(100) == b"go\n":
            self.request.sendall(b"done\n")


class _ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 drops SYNs under 20 concurrent connects: a 1 s retransmit.
    request_queue_size = 64


@pytest.fixture
def http_port() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = _ThreadingTCP(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def chat_port() -> Iterator[int]:
    server = _ThreadingTCP(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def tunnel() -> Iterator[TunnelServer]:
    server = start_tunnel_server("127.0.0.1")
    yield server
    server.stop()


class Client:
    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert time.monotonic() < deadline, f"{needle!r} not in client log:\n{self.text()}"
            time.sleep(0.02)

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(5)


StartClient = Callable[[int, int, int], Client]


@pytest.fixture
def start_client(tmp_path: Path) -> Iterator[StartClient]:
    """Run tunnel_client.py: (control port, remote port, local port) to a Client."""
    clients: list[Client] = []

    def start(control_port: int, remote_port: int, local_port: int) -> Client:
        log = tmp_path / f"client-{len(clients)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, str(CLIENT), "--server", f"127.0.0.1:{control_port}",
                 "--remote-port", str(remote_port), "--local", f"127.0.0.1:{local_port}"],
                stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        clients.append(Client(popen, log))
        return clients[-1]

    yield start
    for client in clients:
        if client.popen.poll() is None:
            client.kill()


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _echo_through(port: int, payload: bytes) -> bytes:
    """Send ``payload`` while reading the echo (a sender that waited would deadlock once the
    buffers fill), half-close, and read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
        sender.join()
    return b"".join(chunks)


def _registered_client(tunnel: TunnelServer, start_client: StartClient,
                       local: int) -> tuple[Client, int]:
    remote = free_port()
    client = start_client(tunnel.control_port, remote, local)
    tunnel.wait_registered(remote, timeout=5)
    return client, remote


def test_http_requests_with_keep_alive(tunnel: TunnelServer, start_client: StartClient,
                                       http_port: int) -> None:
    _, remote = _registered_client(tunnel, start_client, http_port)
    conn = http.client.HTTPConnection("127.0.0.1", remote, timeout=5)
    try:
        conn.request("GET", "/first")
        assert conn.getresponse().read() == b"hello /first"
        # Same TCP connection: the tunnel must not close after one answer.
        conn.request("POST", "/echo", body=b"x" * 100_000)
        assert conn.getresponse().read() == b"x" * 100_000
    finally:
        conn.close()


def test_concurrent_connections_keep_their_own_bytes(tunnel: TunnelServer,
                                                     start_client: StartClient,
                                                     echo_port: int) -> None:
    _, remote = _registered_client(tunnel, start_client, echo_port)
    payloads = [f"{i:02d}".encode() * 30_000 + os.urandom(1000) for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda p: _echo_through(remote, p), payloads))
    assert answers == payloads


def test_large_payload_both_ways(tunnel: TunnelServer, start_client: StartClient,
                                 echo_port: int) -> None:
    _, remote = _registered_client(tunnel, start_client, echo_port)
    payload = os.urandom(8 << 20)
    assert _echo_through(remote, payload) == payload


def test_bytes_flow_before_either_side_closes(tunnel: TunnelServer, start_client: StartClient,
                                              chat_port: int) -> None:
    _, remote = _registered_client(tunnel, start_client, chat_port)
    with socket.create_connection(("127.0.0.1", remote), timeout=5) as sock:
        assert sock.recv(100) == b"ready\n"
        sock.sendall(b"go\n")
        assert sock.recv(100) == b"done\n"
        assert sock.recv(100) == b""


def test_client_started_before_the_server(start_client: StartClient, http_port: int) -> None:
    control, remote = free_port(), free_port()
    client = start_client(control, remote, http_port)
    client.wait_log("unreachable")
    server = start_tunnel_server("127.0.0.1", control_port=control)
    try:
        server.wait_registered(remote, timeout=5)
        assert _get(remote, "/late") == "hello /late"
    finally:
        server.stop()


def test_second_client_for_the_same_port_is_refused(tunnel: TunnelServer,
                                                    start_client: StartClient,
                                                    http_port: int) -> None:
    first, remote = _registered_client(tunnel, start_client, http_port)
    second = start_client(tunnel.control_port, remote, http_port)
    second.wait_log(f"ERR port {remote} already registered")
    assert _get(remote, "/still-first") == "hello /still-first"
    assert tunnel.registered() == {remote}
    # The refused client keeps trying: once the first is gone, the port is its own.
    first.kill()
    tunnel.wait_registered(remote, timeout=5)
    second.wait_log(f"registered remote port {remote}")
    assert _get(remote, "/second") == "hello /second"


def test_public_port_in_use_is_refused(tunnel: TunnelServer, start_client: StartClient,
                                       http_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        remote = taken.getsockname()[1]
        client = start_client(tunnel.control_port, remote, http_port)
        client.wait_log(f"ERR cannot listen on 127.0.0.1:{remote}")
        assert tunnel.registered() == set()


def test_killing_the_client_closes_the_public_listener(tunnel: TunnelServer,
                                                       start_client: StartClient,
                                                       http_port: int) -> None:
    client, remote = _registered_client(tunnel, start_client, http_port)
    client.kill()
    tunnel.wait_unregistered(remote, timeout=5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", remote), timeout=2).close()


def test_local_service_down_closes_the_public_connection(tunnel: TunnelServer,
                                                         start_client: StartClient) -> None:
    client, remote = _registered_client(tunnel, start_client, free_port())
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", remote), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    assert time.monotonic() - started < 3
    client.wait_log("unreachable")


def test_unclaimed_public_connection_is_closed_after_the_park_timeout() -> None:
    with start_tunnel_server("127.0.0.1", park_timeout=0.3) as server:
        remote = free_port()
        # A control connection that registers and then never serves an OPEN.
        with socket.create_connection(("127.0.0.1", server.control_port), timeout=5) as control:
            control.sendall(f"REGISTER {remote}\n".encode())
            assert control.recv(100) == b"OK\n"
            with socket.create_connection(("127.0.0.1", remote), timeout=5) as sock:
                assert control.recv(100).startswith(b"OPEN ")
                started = time.monotonic()
                assert sock.recv(100) == b""
                assert time.monotonic() - started < 2
        server.wait_unregistered(remote, timeout=5)
