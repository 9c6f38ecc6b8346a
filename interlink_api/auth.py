"""In-process OIDC bearer-token validation (docs/PROTOCOL.md section 6; replaces oauth2-proxy).

The issuer's JWKS is found through ``/.well-known/openid-configuration`` and kept as imported
joserfc keys, so a warm validation is one header parse, one signature check and a few claim
comparisons. The JWKS is fetched again on an unknown ``kid`` and when it is older than
``JWKSCacheSeconds``, but never more than once per ``JWKSMinRefetchSeconds``: a client sending
random ``kid`` values must not be able to make us hammer the issuer.

Nothing here ever logs or returns the token itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import (
    BadSignatureError,
    InvalidKeyCurveError,
    InvalidKeyTypeError,
    JoseError,
    UnsupportedAlgorithmError,
    UnsupportedKeyOperationError,
)
from joserfc.jwk import ECKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

from interlink_common.config import OIDCConfig

log = logging.getLogger("interlink.auth")

REALM = "interlink"
WELL_KNOWN = "/.well-known/openid-configuration"

# Only asymmetric families: an HMAC "secret" would have to be the issuer's public key, which is
# exactly the key-confusion attack; "none" is never accepted.
_FAMILY_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
_SUPPORTED_ALGS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})

# Far above any real IAM token (many groups included), far below what would cost us to parse.
MAX_TOKEN_CHARS = 32 * 1024
# A JWKS or discovery document larger than this is not one.
_MAX_DOC_BYTES = 1024 * 1024

REASONS = frozenset({
    "missing", "malformed", "bad_algorithm", "unknown_key", "bad_signature", "expired",
    "not_yet_valid", "bad_issuer", "bad_audience", "missing_group", "jwks_unavailable"})


class AuthError(Exception):
    """A request that must be refused: 401 (no or invalid token) or 403 (valid, no group)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def www_authenticate(self) -> str:
        """The RFC 6750 ``WWW-Authenticate`` value for this refusal."""
        if self.reason == "missing":
            # RFC 6750 3.1: no error code when the request carried no bearer token at all.
            return f'Bearer realm="{REALM}"'
        error = "insufficient_scope" if self.status == 403 else "invalid_token"
        return (f'Bearer realm="{REALM}", error="{error}", '
                f'error_description="{_quoted_safe(self.message)}"')


def _quoted_safe(text: str) -> str:
    # The description sits in a quoted-string: keep it printable ASCII without quote or backslash.
    return "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "?" for c in text)


def _unauthorized(reason: str, message: str) -> AuthError:
    return AuthError(401, reason, message)


def _b64url_json(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as err:
        # RecursionError: JSON nested deeper than the parser's stack, sent before any check.
        raise _unauthorized("malformed", "token is not a valid JWT") from err


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int subclass; "exp": true is not a time.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _unauthorized("malformed", f"claim {name} is not a number")
    return float(value)


def _claim_at(claims: dict[str, Any], path: str) -> Any:
    # WLCG tokens carry a flat claim literally named "wlcg.groups", so the whole name wins over a
    # nested lookup; the dotted walk is for issuers that nest groups inside an object.
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _normalise_group(group: str) -> str:
    # INDIGO IAM / WLCG write groups as "/users"; plain OIDC issuers as "users".
    return group.strip().lstrip("/")


class _KeyCache:
    """The issuer's signing keys, imported once."""

    def __init__(self) -> None:
        self.by_kid: dict[str, RSAKey | ECKey] = {}
        self.without_kid: list[RSAKey | ECKey] = []
        self.fetched_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.by_kid or self.without_kid)


class OIDCValidator:
    """Validates ``Authorization: Bearer <jwt>`` against one OIDC issuer."""

    def __init__(self, cfg: OIDCConfig, *, now: Callable[[], float] = time.time) -> None:
        if not cfg.Issuer:
            raise ValueError("OIDC.Issuer is empty: there is nothing to validate tokens against")
        self._cfg = cfg
        self._now = now
        allowed: list[str] = []
        for alg in cfg.Algorithms:
            if alg in _SUPPORTED_ALGS:
                allowed.append(alg)
            else:
                log.warning("OIDC.Algorithms: %r dropped; only RS*, PS* and ES* are accepted", alg)
        if not allowed:
            raise ValueError("OIDC.Algorithms holds no usable algorithm (RS*, PS*, ES*)")
        self._allowed = frozenset(allowed)
        # Unknown header parameters are legal in a JWT; only "crit" ones must be understood.
        self._registry = JWSRegistry(algorithms=allowed, strict_check_header=False)
        self._audience = frozenset(cfg.Audience)
        self._required_group = _normalise_group(cfg.RequiredGroup) if cfg.RequiredGroup else ""
        base = (cfg.DiscoveryURL or cfg.Issuer).rstrip("/")
        self._discovery_url = base if base.endswith(WELL_KNOWN) else base + WELL_KNOWN
        self._jwks_uri: str | None = None
        self._keys = _KeyCache()
        self._lock = asyncio.Lock()
        # Counts finished fetch attempts, so requests queued on the lock can tell one happened.
        self._generation = 0
        self._last_attempt: float | None = None
        # Built here so that an unreadable CAFile stops the server at startup, not per request.
        # Proxies from the environment are ignored: the issuer is reached as configured.
        self._client = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=cfg.CAFile) if cfg.CAFile else True,
            timeout=cfg.HTTPTimeoutSeconds,
            trust_env=False,
            follow_redirects=False,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch discovery and JWKS now; on failure warn and fetch on the first request."""
        async with self._lock:
            try:
                await self._fetch_keys()
            except AuthError as err:
                # The start attempt does not count against the refetch limit: the first request
                # should try again, the issuer may simply have started after us.
                log.warning("OIDC: %s; keys will be fetched on the first request", err.message)
            else:
                self._last_attempt = self._now()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    # --- validation ------------------------------------------------------------------------

    async def validate(self, authorization: str | None) -> dict[str, Any]:
        """Return the token's claims, or raise AuthError."""
        token = self._bearer(authorization)
        header = self._parse(token)
        alg: str = header["alg"]
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _unauthorized("malformed", "token kid is not a string")

        refreshed = fetch_failed = False
        if not self._keys or self._stale():
            fetch_failed = await self._refresh(require_keys=not self._keys)
            refreshed = True
        candidates = self._candidates(kid, alg)
        if not candidates:
            # An unknown kid usually means the issuer rotated its keys since our last fetch.
            if not refreshed:
                fetch_failed = await self._refresh(require_keys=False)
                candidates = self._candidates(kid, alg)
            if not candidates:
                if fetch_failed:
                    raise self._unavailable()
                raise _unauthorized("unknown_key", "token signing key is not known to the issuer")

        claims = self._verify(token, alg, candidates)
        self._check_claims(claims)
        return claims

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if not authorization or not authorization.strip():
            raise _unauthorized("missing", "bearer token required")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _unauthorized("missing", "authorization scheme is not Bearer")
        token = token.strip()
        if not token:
            raise _unauthorized("missing", "bearer token required")
        if len(token) > MAX_TOKEN_CHARS:
            raise _unauthorized("malformed", "token too large")
        return token

    def _parse(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _unauthorized("malformed", "token is not a valid JWT")
        header = _b64url_json(parts[0])
        if not isinstance(header, dict):
            raise _unauthorized("malformed", "token header is not an object")
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise _unauthorized("malformed", "token header has no alg")
        # Decided from the header alone, before any key is touched: this is what stops "none"
        # and HS256-signed-with-our-public-key tokens.
        if alg not in self._allowed:
            raise _unauthorized("bad_algorithm", f"algorithm {_quoted_safe(alg[:16])} not allowed")
        return header

    def _candidates(self, kid: str | None, alg: str) -> list[RSAKey | ECKey]:
        keys = self._keys
        if kid is not None:
            key = keys.by_kid.get(kid)
            return [key] if key is not None else []
        # No kid: only keys of the right type are worth a signature check.
        want = _FAMILY_KTY[alg[:2]]
        pool = keys.without_kid or list(keys.by_kid.values())
        return [k for k in pool if k.key_type == want]

    def _verify(self, token: str, alg: str, candidates: list[RSAKey | ECKey]) -> dict[str, Any]:
        want = _FAMILY_KTY[alg[:2]]
        last: AuthError | None = None
        for key in candidates:
            # joserfc's alg.check_key would refuse too; checking here keeps the reason exact.
            if key.key_type != want:
                last = _unauthorized("bad_algorithm", "signing key type does not match algorithm")
                continue
            key_alg = key.get("alg")
            if key_alg is not None and key_alg != alg:
                last = _unauthorized("bad_algorithm", "signing key is bound to another algorithm")
                continue
            try:
                obj = jws.deserialize_compact(token, key, registry=self._registry)
            except BadSignatureError:
                last = _unauthorized("bad_signature", "token signature is invalid")
                continue
            except (InvalidKeyCurveError, InvalidKeyTypeError, UnsupportedAlgorithmError,
                    UnsupportedKeyOperationError):
                last = _unauthorized("bad_algorithm", "signing key does not fit algorithm")
                continue
            except (JoseError, ValueError, TypeError) as err:
                raise _unauthorized("malformed", "token is not a valid JWS") from err
            try:
                claims = json.loads(obj.payload)
            except (ValueError, UnicodeDecodeError, RecursionError) as err:
                raise _unauthorized("malformed", "token payload is not JSON") from err
            if not isinstance(claims, dict):
                raise _unauthorized("malformed", "token payload is not an object")
            return claims
        assert last is not None
        raise last

    def _check_claims(self, claims: dict[str, Any]) -> None:
        cfg = self._cfg
        now = self._now()
        leeway = cfg.LeewaySeconds
        exp = _number(claims, "exp")
        if exp is None:
            raise _unauthorized("malformed", "token has no exp claim")
        if now > exp + leeway:
            raise _unauthorized("expired", "token expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + leeway < nbf:
            raise _unauthorized("not_yet_valid", "token not yet valid")
        iat = _number(claims, "iat")
        if iat is not None and now + leeway < iat:
            raise _unauthorized("not_yet_valid", "token issued in the future")
        if claims.get("iss") != cfg.Issuer:
            raise _unauthorized("bad_issuer", "token issuer is not the configured issuer")
        if self._audience:
            aud = claims.get("aud")
            auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self._audience for a in auds):
                raise _unauthorized("bad_audience", "token audience not accepted")
        if self._required_group:
            groups = _claim_at(claims, cfg.GroupsClaim)
            if isinstance(groups, str):
                groups = [groups]
            if not isinstance(groups, list) or not any(
                    isinstance(g, str) and _normalise_group(g) == self._required_group
                    for g in groups):
                raise AuthError(403, "missing_group",
                                f"token lacks required group {self._required_group}")

    # --- JWKS ------------------------------------------------------------------------------

    def _stale(self) -> bool:
        fetched = self._keys.fetched_at
        return fetched is not None and self._now() - fetched > self._cfg.JWKSCacheSeconds

    def _may_fetch(self) -> bool:
        if self._last_attempt is None:
            return True
        elapsed = self._now() - self._last_attempt
        # A clock stepped backwards must not lock the refetch out until it catches up.
        return elapsed < 0 or elapsed >= self._cfg.JWKSMinRefetchSeconds

    def _unavailable(self) -> AuthError:
        return _unauthorized("jwks_unavailable",
                             f"issuer {self._cfg.Issuer} could not be reached for signing keys")

    async def _refresh(self, *, require_keys: bool) -> bool:
        """Fetch the JWKS if allowed; return True when a fetch was tried here and failed.

        With ``require_keys`` an empty cache after this call is an AuthError.
        """
        seen = self._generation
        failed = False
        async with self._lock:
            # Someone fetched while we waited: share their result instead of fetching again.
            if self._generation == seen and self._may_fetch():
                self._last_attempt = self._now()
                try:
                    await self._fetch_keys()
                except AuthError as err:
                    failed = True
                    if self._keys:
                        log.warning("OIDC: %s; keeping the cached keys", err.message)
                    else:
                        log.warning("OIDC: %s", err.message)
        if require_keys and not self._keys:
            raise self._unavailable()
        return failed

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            resp = await self._client.get(url, headers={"Accept": "application/json"})
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            log.debug("OIDC: GET %s failed: %s", url, type(err).__name__)
            raise self._unavailable() from err
        if resp.status_code != 200:
            log.warning("OIDC: GET %s answered %d", url, resp.status_code)
            raise self._unavailable()
        if len(resp.content) > _MAX_DOC_BYTES:
            log.warning("OIDC: GET %s answered %d bytes; refused", url, len(resp.content))
            raise self._unavailable()
        try:
            doc = resp.json()
        except ValueError as err:
            log.warning("OIDC: GET %s did not answer JSON", url)
            raise self._unavailable() from err
        if not isinstance(doc, dict):
            log.warning("OIDC: GET %s did not answer a JSON object", url)
            raise self._unavailable()
        return doc

    async def _fetch_keys(self) -> None:
        try:
            await self._fetch_keys_once()
        finally:
            # Bumped once the attempt is over, so every request that queued on the lock while it
            # ran sees it and reuses its outcome.
            self._generation += 1

    async def _fetch_keys_once(self) -> None:
        if self._jwks_uri is None:
            doc = await self._get_json(self._discovery_url)
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                log.warning("OIDC: %s has no jwks_uri", self._discovery_url)
                raise self._unavailable()
            if doc.get("issuer") != self._cfg.Issuer:
                # Tokens are still checked against OIDC.Issuer; this only flags a likely typo.
                log.warning("OIDC: discovery issuer %r differs from OIDC.Issuer %r",
                            doc.get("issuer"), self._cfg.Issuer)
            self._jwks_uri = jwks_uri
        jwks = await self._get_json(self._jwks_uri)
        raw_keys = jwks.get("keys")
        if not isinstance(raw_keys, list):
            log.warning("OIDC: %s has no keys list", self._jwks_uri)
            raise self._unavailable()
        cache = _KeyCache()
        for raw in raw_keys:
            key = self._import(raw)
            if key is None:
                continue
            if key.kid:
                cache.by_kid[key.kid] = key
            else:
                cache.without_kid.append(key)
        if not cache:
            log.warning("OIDC: %s holds no usable signing key", self._jwks_uri)
            raise self._unavailable()
        cache.fetched_at = self._now()
        self._keys = cache
        log.info("OIDC: loaded %d signing keys from %s",
                 len(cache.by_kid) + len(cache.without_kid), self._jwks_uri)

    @staticmethod
    def _import(raw: Any) -> RSAKey | ECKey | None:
        if not isinstance(raw, dict) or raw.get("kty") not in ("RSA", "EC"):
            return None
        if raw.get("use", "sig") != "sig":
            return None
        ops = raw.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            return None
        # Only the public half is used, even if an issuer leaks private members into its JWKS.
        public = {k: v for k, v in raw.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
        if "key_ops" in public:
            public["key_ops"] = ["verify"]
        try:
            key = import_key(public)
        except (JoseError, ValueError, TypeError) as err:
            log.warning("OIDC: JWKS key %r skipped: %s", raw.get("kid"), err)
            return None
        return key if isinstance(key, (RSAKey, ECKey)) else None
