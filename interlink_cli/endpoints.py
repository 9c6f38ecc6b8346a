"""Where the CLI calls: the API server (as the VK would) and the sidecar (for ``/gpus``), both
found from the same InterLinkConfig.yaml the servers read."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from interlink_common.config import ConfigError, InterLinkConfig, load_config, resolve_path
from interlink_common.listen import api_listener

from .errors import USAGE, CLIFailure

# A server bound to every interface is reached on loopback from the node itself.
WILDCARDS = ("0.0.0.0", "::", "")
# OpenSSL's X509_V_FLAG_PARTIAL_CHAIN (ssl.VERIFY_X509_PARTIAL_CHAIN from Python 3.13): a
# certificate in the trust store is an anchor even when it is not a CA's own.
PARTIAL_CHAIN = 0x80000


@dataclass(frozen=True)
class Sidecar:
    """The plugin's base URL and the credentials the API server uses to call it."""

    base: str
    token_file: str = ""
    ssl_context: ssl.SSLContext | None = None


def http_client(base: str, *, timeout: float, verify: ssl.SSLContext | bool = True
                ) -> httpx.AsyncClient:
    """A client for ``http(s)://host:port`` or ``unix:///path``, without proxies (the servers
    are this node's)."""
    if base.startswith("unix://"):
        return httpx.AsyncClient(base_url="http://interlink", timeout=timeout, verify=verify,
                                 transport=httpx.AsyncHTTPTransport(uds=base[len("unix://"):]),
                                 trust_env=False)
    return httpx.AsyncClient(base_url=base, timeout=timeout, verify=verify, trust_env=False)


def read_config(path: str | None, *, required: bool) -> InterLinkConfig | None:
    """The config as the servers load it; None when it is not required and not there."""
    if not required and not resolve_path(path).exists():
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CLIFailure(f"configuration error:\n{exc}", USAGE) from None


def api_url(cfg: InterLinkConfig) -> str:
    """Where the API server listens, from ``InterlinkAddress`` or ``InterlinkURL`` with
    ``InterlinkPort``, as the server itself derives it (``listen.api_listener``)."""
    legacy = cfg.InterlinkURL.strip()
    if not cfg.InterlinkAddress and legacy.startswith("https://"):
        # The VK's own config: the URL it dials, whose TLS files are not this host's to check.
        parts = urlsplit(legacy)
        port = cfg.InterlinkPort or parts.port
        if not parts.hostname or not port:
            raise CLIFailure(f"configuration error: InterlinkURL {legacy!r} with InterlinkPort "
                             f"{cfg.InterlinkPort!r} names no host and port", USAGE)
        host = "127.0.0.1" if parts.hostname in WILDCARDS else parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}:{port}"
    try:
        listener = api_listener(cfg.InterlinkAddress, cfg.InterlinkURL, cfg.InterlinkPort,
                                cfg.TLS)
    except ConfigError as exc:
        raise CLIFailure(f"configuration error: {exc}", USAGE) from None
    if listener.scheme == "unix":
        return listener.describe()
    host = listener.host
    if not cfg.InterlinkAddress and cfg.InterlinkURL:
        # The legacy key names the address the VK dials; the server binds every interface.
        host = urlsplit(cfg.InterlinkURL if "://" in cfg.InterlinkURL
                        else f"http://{cfg.InterlinkURL}").hostname or ""
    if host in WILDCARDS:
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"{listener.scheme}://{shown}:{listener.port}"


def api_verify(cfg: InterLinkConfig | None, url: str, ca_file: str | None = None
               ) -> ssl.SSLContext | bool:
    """How to check the API server's certificate at ``url``: against ``ca_file`` when given;
    on the node itself (the config's own https listener, reached on loopback), against the
    very certificate the server is configured with (``TLS.CertFile``), names unchecked, since
    that certificate names the node's public address, not 127.0.0.1; else the system store."""
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CLIFailure(f"--api-ca-file: cannot load {ca_file}: {exc}", USAGE) from None
    if cfg is None or not url.startswith("https://") or not cfg.TLS.CertFile:
        return True
    if urlsplit(url).hostname not in ("127.0.0.1", "::1", "localhost"):
        return True
    try:
        own = own_certificate(cfg.TLS.CertFile)
        # Only the server's own certificate, the file's first: a full-chain file also holds
        # its issuer's, which would let any certificate that issuer signed stand in.
        context = ssl.create_default_context(cadata=own) if own else None
    except (OSError, ssl.SSLError, ValueError):
        context = None
    if context is None:
        return True  # not readable here: the system store, and its error if it fails
    context.check_hostname = False
    context.verify_flags |= PARTIAL_CHAIN
    return context


def own_certificate(path: str) -> bytes | None:
    """The first certificate of a PEM file, as DER; None when it holds none."""
    text = Path(path).read_text(encoding="ascii", errors="replace")
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    return ssl.PEM_cert_to_DER_cert(text[start:stop + len(end)])


def vk_token_file(cfg: InterLinkConfig | None) -> str | None:
    """The VK's ``VKTokenFile``: a key of the VK's that the loader keeps but does not model."""
    if cfg is None:
        return None
    value = (cfg.model_extra or {}).get("VKTokenFile")
    return str(value) if value else None


def sidecar(cfg: InterLinkConfig) -> Sidecar:
    """The sidecar as the API server calls it (``SidecarURL``/``SidecarPort``), or its own
    ``Socket`` when one is set, since then it listens there only."""
    base = cfg.Socket if cfg.Socket.startswith("unix://") else cfg.sidecar_base
    context = None
    if base.startswith("https://"):
        # The API server's own client certificate and CA, so a mutual-TLS sidecar lets us in.
        from interlink_api.plugin import client_tls

        try:
            context = client_tls(cfg.PluginTLS)
        except (OSError, ssl.SSLError) as exc:
            raise CLIFailure(f"PluginTLS: cannot load the client certificate or CA: {exc}",
                             USAGE) from None
    return Sidecar(base=base, token_file=cfg.PluginTokenFile, ssl_context=context)
