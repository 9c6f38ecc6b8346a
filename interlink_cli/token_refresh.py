"""Keep the VK's bearer token file fresh: an OAuth2 grant against the issuer, the file replaced
atomically, once or before every expiry.

The VK reads its token from a file (``VKTokenFile``) on every call; the site's issuer gives a
client (the seed deployment's IAM client id and secret) either client-credentials tokens or,
after one interactive login, a refresh token. The grant itself is authlib's OAuth2 client;
this module decides when to ask, writes what comes back where the VK (and the spawner) read
it, and never logs a token or a secret.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import httpx

with warnings.catch_warnings():
    # authlib prefers the httpx2 package and warns when it falls back to httpx, which this
    # project already uses; the client is the same. Its module turns its own warnings to
    # "always" on import, so that comes first and the silencing after it.
    import authlib.deprecate  # noqa: F401
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.integrations.base_client.errors import OAuthError

log = logging.getLogger("interlink.token")

GRANTS = ("client_credentials", "refresh_token")


class TokenError(Exception):
    """A token could not be had: the issuer refused, or cannot be reached, or a file failed."""


@dataclass(frozen=True)
class TokenSettings:
    """Where to ask, as whom, and where to write."""

    issuer: str                       # its discovery document names the token endpoint
    client_id: str
    client_secret_file: Path | None
    out: Path                         # the VK's VKTokenFile
    grant: str = "client_credentials"
    refresh_token_file: Path | None = None  # refresh_token grant: read, and rotated in place
    scope: str = ""
    audience: str = ""
    token_endpoint: str = ""          # skips discovery when given
    ca_file: str | None = None
    timeout: float = 30.0
    mode: int = 0o600                 # of the token file: 0640 with a group for a VK of its own


@dataclass(frozen=True)
class Fresh:
    """A token just written, and when to fetch the next."""

    expires_at: float
    refresh_at: float


class TokenRefresher:
    """Fetches tokens with one grant and writes them to one file."""

    def __init__(self, settings: TokenSettings, *, margin: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if settings.grant not in GRANTS:
            raise TokenError(f"grant {settings.grant!r} is not one of {', '.join(GRANTS)}")
        if settings.grant == "refresh_token" and settings.refresh_token_file is None:
            raise TokenError("the refresh_token grant needs --refresh-token-file")
        self.settings = settings
        self.margin = margin
        self._transport = transport
        self._endpoint = settings.token_endpoint

    def refresh(self) -> Fresh:
        """One grant; the token file replaced. Raises TokenError saying what failed."""
        s = self.settings
        secret = _read_secret(s.client_secret_file, "client secret") \
            if s.client_secret_file else None
        extra: dict[str, str] = {}
        if s.scope:
            extra["scope"] = s.scope
        if s.audience:
            extra["audience"] = s.audience
        # trust_env: a node often reaches its issuer through HTTPS_PROXY (and NO_PROXY).
        with OAuth2Client(client_id=s.client_id, client_secret=secret, timeout=s.timeout,
                          verify=s.ca_file or True, transport=self._transport,
                          trust_env=True) as client:
            endpoint = self._endpoint or self._discover(client)
            try:
                if s.grant == "client_credentials":
                    token = client.fetch_token(endpoint, grant_type="client_credentials",
                                               **extra)
                else:
                    assert s.refresh_token_file is not None
                    token = client.refresh_token(endpoint, refresh_token=_read_secret(
                        s.refresh_token_file, "refresh token"), **extra)
            except OAuthError as exc:
                raise TokenError(f"the issuer refused client {s.client_id!r} "
                                 f"({s.grant} grant): {exc.error}"
                                 f"{': ' + exc.description if exc.description else ''}") from None
            except httpx.HTTPError as exc:
                raise TokenError(f"cannot reach the token endpoint {endpoint}: {exc}") from None
            except ValueError:
                raise TokenError(f"the token endpoint {endpoint} answered something that is "
                                 "not a token response (not JSON)") from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenError(f"the issuer's answer from {endpoint} holds no access_token")
        rotated = token.get("refresh_token")
        if s.grant == "refresh_token" and isinstance(rotated, str) and rotated:
            # First: the old one is spent now, and a lost new one would end every refresh.
            assert s.refresh_token_file is not None
            write_atomically(s.refresh_token_file, rotated + "\n")
        write_atomically(s.out, access + "\n", mode=s.mode)
        now = time.time()
        expires_at = float(token.get("expires_at") or now + float(token.get("expires_in")
                                                                     or 3600))
        lifetime = max(0.0, expires_at - now)
        # Ahead of the expiry by the margin, but never later than two thirds of the way.
        refresh_at = now + max(1.0, min(lifetime - self.margin, lifetime * 2 / 3))
        log.info("wrote a token for client %s to %s, valid for %d s", s.client_id, s.out,
                 int(lifetime))
        return Fresh(expires_at, refresh_at)

    def run(self, stop: threading.Event) -> None:
        """Refresh before every expiry until ``stop``; failures are retried with back-off
        (1 s doubling to 60 s), while the last token is still good."""
        delay = 1.0
        while not stop.is_set():
            try:
                fresh = self.refresh()
            except TokenError as exc:
                log.error("%s; retrying in %d s", exc, int(delay))
                stop.wait(delay)
                delay = min(60.0, delay * 2)
                continue
            delay = 1.0
            stop.wait(max(0.0, fresh.refresh_at - time.time()))

    def _discover(self, client: OAuth2Client) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            reply = client.request("GET", url, withhold_token=True)
            reply.raise_for_status()
            endpoint = reply.json().get("token_endpoint")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise TokenError(f"cannot read the issuer's discovery document {url}: {exc}") \
                from None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise TokenError(f"the issuer's discovery document {url} names no token_endpoint")
        self._endpoint = endpoint
        return endpoint


def write_atomically(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` (``mode``, 0600 by default): a reader sees the old file
    or the new one, never a part (a temporary file in the same directory, renamed over it;
    a symlink at ``path`` is replaced, not written through)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise TokenError(f"cannot write in {path.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)  # no copy of a token left behind, Ctrl-C included
        if isinstance(exc, OSError):
            raise TokenError(f"cannot replace {path}: {exc.strerror or exc}") from None
        raise


def _read_secret(path: Path, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    if not value:
        raise TokenError(f"the {what} file {path} is empty")
    return value

