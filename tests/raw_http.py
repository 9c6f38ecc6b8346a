"""A minimal HTTP/1.1 client that sends exact bytes, to replay the Go VK's requests verbatim."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)


def go_request(method: str, path: str, host: str, body: bytes | None, *,
               token: str | None = None, session: str | None = None) -> bytes:
    """Bytes as Go's net/http client writes them for the VK (header names canonicalized the Go
    way: ``Interlink-Http-Session``)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: Go-http-client/1.1"]
    lines.append(f"Content-Length: {len(body or b'')}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines.append("Content-Type: application/json")
    if session is not None:
        lines.append(f"Interlink-Http-Session: {session}")
    lines.append("Accept-Encoding: gzip")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def browser_request(path: str, host: str, body: bytes, content_type: str | None) -> bytes:
    """A request as a browser sends it from a foreign page: no preflight is needed for a
    "simple" content type, or for a Blob body with no type at all."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Origin: http://evil.example",
             "User-Agent: Mozilla/5.0", f"Content-Length: {len(body)}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def connect(base: str, timeout: float = 10.0) -> socket.socket:
    if base.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(base[len("unix://"):])
        return sock
    hostport = base.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed mid-response")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def send(base: str, raw: bytes, timeout: float = 10.0) -> RawResponse:
    with connect(base, timeout) as sock:
        sock.sendall(raw)
        reader = _Reader(sock)
        status = int(reader.line().split()[1])
        headers: dict[str, str] = {}
        while line := reader.line():
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        resp = RawResponse(status, headers)
        if headers.get("transfer-encoding") == "chunked":
            while (size := int(reader.line().split(b";")[0], 16)) > 0:
                resp.chunks.append(reader.exactly(size))
                reader.line()
            resp.body = b"".join(resp.chunks)
        else:
            resp.body = reader.exactly(int(headers.get("content-length", "0")))
        return resp
