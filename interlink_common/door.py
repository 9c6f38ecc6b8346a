"""What a browser page could forge against a server that checks no credential.

Without OIDC the API server listens only on loopback or a unix socket (or behind a proxy with
``AllowInsecureNoAuth``); without ``PluginTokenFile`` the sidecar does the same. A web page the
node's user opens can still reach loopback: with a "simple" cross-origin request (a
``text/plain`` or form body, no preflight), or through DNS rebinding (its own host name
resolving to 127.0.0.1, so the request carries that name in ``Host``). Neither the VK nor the
API server sends such a request: every call with a body says ``Content-Type: application/json``
(legacy VK 0.1.2+ and current; ``/pinglink`` has no body), and each dials its configured address.

So, with no credential: a non-empty body must be ``application/json`` (415 otherwise), and on a
TCP listener ``Host`` must name loopback, the configured address or an ``AllowedHosts`` entry
(421 otherwise). Over a unix socket ``Host`` is whatever the client wrote and a browser cannot
connect at all, so it is not checked there. A bearer token is a header no page can add without
a CORS preflight (which neither server answers), so with one the checks are not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from interlink_common.config import InterLinkConfig
from interlink_common.listen import Listener

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without port or brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _url_host(url: str) -> str:
    if not url or url.startswith("unix://"):
        return ""
    return (urlsplit(url if "://" in url else f"http://{url}").hostname or "").lower()


@dataclass(frozen=True)
class Door:
    """The checks for one listener; ``hosts`` is None where Host is not checked."""

    hosts: frozenset[str] | None
    # How to turn the checks off for a client that cannot pass them: give the server a
    # credential (or, for the body type, a unix socket that no browser reaches).
    credential_hint: str = "configure a credential"

    @classmethod
    def for_listener(cls, listener: Listener, cfg: InterLinkConfig,
                     credential_hint: str = "configure a credential") -> "Door":
        if listener.scheme == "unix":
            return cls(None, credential_hint)
        names = set(LOOPBACK_NAMES)
        names.add(listener.host.lower())
        names.update(_url_host(u) for u in (cfg.InterlinkAddress, cfg.InterlinkURL,
                                             cfg.SidecarURL))
        names.update(host_name(h) for h in cfg.AllowedHosts)
        return cls(frozenset(names - _WILDCARDS), credential_hint)

    def check_host(self, request: Request) -> Response | None:
        if self.hosts is None:
            return None
        header = request.headers.get("host", "")
        if host_name(header) in self.hosts:
            return None
        return PlainTextResponse(
            f"Host header {header[:100]!r} names neither loopback nor this server's address; "
            "without a credential to check only requests to "
            f"{', '.join(sorted(self.hosts))} are served (a web page may be trying to reach "
            "this server through DNS rebinding). Dial the configured address, or add the name "
            "to AllowedHosts", status_code=421)

    def check_body_type(self, request: Request, body: bytes) -> Response | None:
        if not body:
            return None
        declared = request.headers.get("content-type", "")
        if declared.split(";", 1)[0].strip().lower() == "application/json":
            return None
        return PlainTextResponse(
            f"Content-Type {declared[:100]!r} is not accepted: without a credential to check, "
            "a request with a body must be sent as Content-Type: application/json (a web page "
            f"could forge any other), as the virtual kubelet and this project's API server "
            f"send it. A client that cannot: {self.credential_hint}", status_code=415)
