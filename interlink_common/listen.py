"""Where a server listens: ``http://host:port``, ``https://host:port`` or ``unix:///path.sock``."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import ConfigError, TLSConfig


@dataclass(frozen=True)
class Listener:
    scheme: str  # "http", "https" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""  # unix socket path
    certfile: str = ""
    keyfile: str = ""
    client_ca: str = ""

    @property
    def is_local(self) -> bool:
        """True when only this machine can reach the server (loopback or a unix socket)."""
        if self.scheme == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def describe(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def uvicorn_kwargs(self) -> dict[str, object]:
        if self.scheme == "unix":
            return {"uds": self.path}
        kwargs: dict[str, object] = {"host": self.host, "port": self.port}
        if self.scheme == "https":
            kwargs.update(ssl_certfile=self.certfile, ssl_keyfile=self.keyfile)
            if self.client_ca:
                kwargs.update(ssl_ca_certs=self.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
        return kwargs


def parse_listener(address: str, port: int | None, tls: TLSConfig, *, key: str,
                   default_host: str = "0.0.0.0") -> Listener:
    """Build a listener from an address key (``http://``, ``https://``, ``unix://``) and port.

    Upstream's legacy servers listen on ``:port`` whatever host the URL names; an empty address
    means the same here. ``TLS.Enabled`` upgrades ``http`` to ``https``.
    """
    address = (address or "").strip()
    if address.startswith("unix://"):
        path = address[len("unix://"):]
        if not path:
            raise ConfigError(f"{key}: {address!r} names no socket path; "
                              "write unix:///run/interlink/api.sock")
        return Listener(scheme="unix", path=path)
    if address and "://" not in address:
        address = "http://" + address
    parts = urlsplit(address) if address else None
    scheme = (parts.scheme if parts else "http") or "http"
    if scheme not in ("http", "https"):
        raise ConfigError(f"{key}: scheme {scheme!r} is not supported; "
                          "use http://, https:// or unix://")
    host = (parts.hostname if parts else None) or default_host
    if port is None:
        port = parts.port if parts and parts.port else None
    if port is None:
        raise ConfigError(f"{key}: no port given; set the port key next to it")
    if tls.Enabled or scheme == "https":
        if not (tls.CertFile and tls.KeyFile):
            raise ConfigError("TLS: https needs TLS.CertFile and TLS.KeyFile")
        return Listener(scheme="https", host=host, port=port, certfile=tls.CertFile,
                        keyfile=tls.KeyFile, client_ca=tls.CACertFile)
    return Listener(scheme="http", host=host, port=port)


def tokens_in_clear_warning(listener: Listener, *, checks_tokens: bool) -> str | None:
    """What is wrong with taking bearer tokens over plain HTTP on a network address (anyone on
    the path reads them and runs pods as the VK), or None when the listener is fine."""
    if listener.scheme != "http" or listener.is_local or not checks_tokens:
        return None
    return (f"{listener.describe()} takes the VK's bearer tokens over plain HTTP on a network "
            "address, where anyone on the path can read and reuse them; set TLS.Enabled with "
            "TLS.CertFile and TLS.KeyFile, or listen on loopback or a unix socket")


def api_listener(address: str, legacy_url: str, port: int | None, tls: TLSConfig) -> Listener:
    """The API server's listener from either key generation.

    ``InterlinkAddress`` (current) is honoured as written. With only the legacy ``InterlinkURL``
    the server listens on every interface, as upstream's ``:port`` did, because that URL is the
    address the VK dials, not necessarily one this host can bind.
    """
    if address:
        return parse_listener(address, port, tls, key="InterlinkAddress")
    if legacy_url.startswith("unix://"):
        return parse_listener(legacy_url, port, tls, key="InterlinkURL")
    scheme = urlsplit(legacy_url).scheme if "://" in legacy_url else "http"
    return parse_listener(f"{scheme or 'http'}://0.0.0.0", port, tls, key="InterlinkURL")
