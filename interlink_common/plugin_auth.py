"""The credential the API server and the plugin share: a bearer token read from a file.

Both programs read ``PluginTokenFile`` from the same InterLinkConfig.yaml. The API server sends
``Authorization: Bearer <token>`` on every plugin call; the sidecar refuses any call without it
(``/healthz`` excepted) with 401. The file is re-read when it changes, so the token can be
rotated without a restart (write the new file atomically: rename over the old one). Every value
read is registered with the log scrubber, so the token never reaches a log line.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .logconfig import add_secret

log = logging.getLogger("interlink.plugin_auth")

_NEVER = object()
# Shorter tokens can be guessed; the scrubber also needs something it cannot confuse with words.
MIN_TOKEN_LEN = 16


class TokenFileError(Exception):
    """The token file cannot be used; the message names the file and the fix."""


class TokenFile:
    """A token file, read once at start and again whenever its size, mtime or inode change."""

    def __init__(self, path: str) -> None:
        self.path = os.path.expanduser(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._failed: object = _NEVER  # the stamp of the last bad read, warned about once
        self._token = ""
        self.current()  # a bad file is a start-up error, not a first-request surprise

    def _read(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"PluginTokenFile {self.path}: cannot read it "
                                 f"({type(exc).__name__}: {exc.args[-1] if exc.args else exc})"
                                 ) from None
        if len(token) < MIN_TOKEN_LEN or any(c.isspace() for c in token):
            raise TokenFileError(f"PluginTokenFile {self.path}: expected one token of at least "
                                 f"{MIN_TOKEN_LEN} characters without spaces; generate one "
                                 "with: openssl rand -hex 32 > FILE")
        add_secret(token)
        return token

    def current(self) -> str:
        """The token as the file holds it now. A file that turns unreadable or empty after a
        good read keeps the last good token (a rotation caught half-written), with a warning."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if stamp is not None and stamp == self._stamp:
                return self._token
            if self._token and stamp == self._failed:
                return self._token
            try:
                token = self._read()
            except TokenFileError as exc:
                if not self._token:
                    raise
                self._failed = stamp
                log.warning("%s; still using the previous token", exc)
                return self._token
            self._stamp, self._token, self._failed = stamp, token, _NEVER
            return token


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison: the time taken says nothing about how much of it matched."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("utf-8"))


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequireToken:
    """ASGI middleware: every HTTP request but ``open_paths`` must carry the shared token."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 token: TokenFile, open_paths: tuple[str, ...] = ("/healthz",)) -> None:
        self.app = app
        self.token = token
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                       if k == b"authorization"), None)
        presented = bearer(header)
        if token_matches(presented, self.token.current()):
            await self.app(scope, receive, send)
            return
        reason = "no bearer token" if presented is None else "wrong bearer token"
        client = scope.get("client")
        log.warning("rejected %s %s from %s: %s", scope.get("method"), scope["path"],
                    client[0] if client else "unix socket", reason)
        body = (f"unauthorized: {reason}; this plugin requires the token in PluginTokenFile, "
                "which the API server sends as Authorization: Bearer\n").encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="interlink-plugin"')]})
        await send({"type": "http.response.body", "body": body})
