"""A real local OIDC issuer for tests and benchmarks.

It serves ``/.well-known/openid-configuration`` and its JWKS over HTTP on 127.0.0.1 (stdlib
``http.server`` in a background thread), mints tokens with any claims, headers and keys, and
hand-builds the hostile ones (``alg: none``, HS256 keyed with the RSA public key PEM) that a
JOSE library would refuse to produce.

    issuer = start_issuer()
    token = issuer.token(aud="users", groups=["/users"])
    ...
    issuer.stop()
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

__all__ = ["LocalIssuer", "start_issuer", "closed_port_url", "b64url"]

SigningKey = RSAKey | ECKey

_EC_ALG_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        issuer = self.server.issuer
        path = self.path.split("?", 1)[0]
        if path == "/.well-known/openid-configuration":
            with issuer._lock:
                issuer.discovery_fetches += 1
            body: Any = {
                "issuer": issuer.url,
                "jwks_uri": issuer.url + "/jwks",
                "token_endpoint": issuer.url + "/token",
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "PS256"],
            }
        elif path == "/jwks":
            with issuer._lock:
                issuer.jwks_fetches += 1
            body = issuer.jwks()
        else:
            self.send_error(404)
            return
        if issuer.fail_status:
            self.send_error(issuer.fail_status)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        """The token endpoint: client credentials (basic auth or form) and refresh tokens."""
        issuer = self.server.issuer
        if self.path.split("?", 1)[0] != "/token":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(
            self.rfile.read(length).decode()).items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = (urllib.parse.unquote(x) for x in pair.partition(":"))
        status, body = issuer.grant(client_id, secret, form)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    issuer: "LocalIssuer"


class LocalIssuer:
    """The issuer: keys, JWKS, counters and a token mint."""

    def __init__(self, listening: bool = True, fresh_keys: bool = False, tls: bool = False) -> None:
        self._lock = threading.Lock()
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        # The token endpoint's clients (id -> secret), its grants and how long tokens live.
        self.clients: dict[str, str] = {}
        self.grant_claims: dict[str, Any] = {}
        self.expires_in = 300
        self.token_requests: list[dict[str, str]] = []
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> client id
        # Set to e.g. 503 to make every endpoint fail while still accepting connections.
        self.fail_status = 0
        self._private: dict[str, SigningKey] = {}
        self._published: list[str] = []
        # Bind now so the URL is fixed; a bound socket that does not listen refuses connections,
        # which is what "issuer down" looks like to a client.
        self._server = _Server(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self._server.issuer = self
        self._server.server_bind()
        host, port = self._server.server_address[:2]
        # With tls, ca_file is the PEM of the self-signed server certificate to trust.
        self.ca_file: str | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if tls:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="oidc-issuer-")
            cert, key = _self_signed_cert(self._tmpdir.name, host)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            self.ca_file = cert
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        self._thread: threading.Thread | None = None
        rsa, ec = _default_keys() if not fresh_keys else (self.new_key("RSA"), self.new_key("EC"))
        for key in (rsa, ec):
            self._private[str(key.kid)] = key
            self._published.append(str(key.kid))
        self.rsa_kid, self.ec_kid = str(rsa.kid), str(ec.kid)
        if listening:
            self.listen()

    # --- server ----------------------------------------------------------------------------

    def listen(self) -> None:
        """Start answering (for an issuer created with ``listening=False``)."""
        if self._thread is not None:
            return
        self._server.server_activate()
        # A short poll interval keeps stop() (and so every test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name="oidc-issuer")
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "LocalIssuer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- keys ------------------------------------------------------------------------------

    @staticmethod
    def new_key(kty: str = "RSA", *, crv: str = "P-256", kid: str | None = None,
                size: int = 2048) -> SigningKey:
        """A fresh private key that the issuer does not publish."""
        params = {"kid": kid or uuid.uuid4().hex[:16]}
        if kty == "RSA":
            return RSAKey.generate_key(size, parameters=params)
        if kty == "EC":
            return ECKey.generate_key(crv, parameters=params)
        raise ValueError(f"unsupported kty {kty}")

    def add_key(self, kty: str = "RSA", *, crv: str = "P-256", kid: str | None = None,
                publish: bool = True) -> str:
        """Generate a key, keep it for signing, publish it in the JWKS unless told not to."""
        key = self.new_key(kty, crv=crv, kid=kid)
        kid = str(key.kid)
        with self._lock:
            self._private[kid] = key
            if publish:
                self._published.append(kid)
        return kid

    def publish(self, kid: str) -> None:
        """Add an already generated key to the JWKS (key rotation)."""
        with self._lock:
            if kid not in self._published:
                self._published.append(kid)

    def rotate(self, kty: str = "RSA", *, crv: str = "P-256") -> str:
        """Publish a new key alongside the old ones; returns its kid."""
        return self.add_key(kty, crv=crv)

    def key(self, kid: str) -> SigningKey:
        return self._private[kid]

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            kids = list(self._published)
        keys = []
        for kid in kids:
            public = self._private[kid].as_dict(private=False)
            public.update({"use": "sig", "kid": kid})
            keys.append(public)
        return {"keys": keys}

    def public_pem(self, kid: str | None = None) -> bytes:
        key = self._private[kid or self.rsa_kid]
        return key.as_pem(private=False)

    # --- the token endpoint ---------------------------------------------------------------

    def refresh_token_for(self, client_id: str) -> str:
        """A refresh token, as a login would have given the client."""
        token = uuid.uuid4().hex
        with self._lock:
            self._refresh_tokens[token] = client_id
        return token

    def grant(self, client_id: str, secret: str, form: dict[str, str]) -> tuple[int, Any]:
        """Answer a token request: (status, body) as an OAuth2 server would."""
        with self._lock:
            self.token_requests.append({"client_id": client_id, **{
                k: v for k, v in form.items() if k in ("grant_type", "scope", "audience")}})
            if self.clients.get(client_id) != secret or not client_id:
                return 401, {"error": "invalid_client",
                             "error_description": "client authentication failed"}
            kind = form.get("grant_type")
            if kind == "refresh_token":
                if self._refresh_tokens.pop(form.get("refresh_token", ""), None) != client_id:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "refresh token unknown or used"}
            elif kind != "client_credentials":
                return 400, {"error": "unsupported_grant_type"}
            rotated = uuid.uuid4().hex
            self._refresh_tokens[rotated] = client_id
        now = int(time.time())
        access = self.token({"sub": client_id, **self.grant_claims,
                             "exp": now + self.expires_in})
        return 200, {"access_token": access, "token_type": "Bearer",
                     "expires_in": self.expires_in, "refresh_token": rotated}

    # --- tokens ----------------------------------------------------------------------------

    def claims(self, overrides: dict[str, Any] | None = None, *, omit: Iterable[str] = (),
               **kw: Any) -> dict[str, Any]:
        """Default claims (valid for five minutes, audience "users"), then overrides."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url, "sub": "test-user", "aud": "users",
            "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex,
        }
        claims.update(overrides or {})
        claims.update(kw)
        for name in omit:
            claims.pop(name, None)
        return claims

    def token(self, overrides: dict[str, Any] | None = None, *, key: SigningKey | None = None,
              alg: str | None = None, kid: str | None = None,
              headers: dict[str, Any] | None = None, omit: Iterable[str] = (),
              no_kid: bool = False, **claim_kw: Any) -> str:
        """Mint a signed token.

        ``key`` defaults to the issuer's RSA key (or its EC key for an ES* ``alg``); ``kid``
        defaults to that key's kid, pass another to lie about it; ``no_kid`` leaves it out.
        Claims named like ``wlcg.groups`` go in ``overrides``.
        """
        if alg is None:
            alg = "ES256" if isinstance(key, ECKey) else "RS256"
        if key is None:
            key = self._private[self.ec_kid if alg.startswith("ES") else self.rsa_kid]
        header: dict[str, Any] = {"alg": alg}
        if not no_kid:
            header["kid"] = kid if kid is not None else str(key.kid)
        header.update(headers or {})
        claims = self.claims(overrides, omit=omit, **claim_kw)
        return jwt.encode(header, claims, key, algorithms=[alg])

    def none_token(self, overrides: dict[str, Any] | None = None, *, alg: str = "none",
                   **claim_kw: Any) -> str:
        """An unsigned ``alg: none`` token (empty signature part)."""
        header = {"alg": alg, "typ": "JWT", "kid": self.rsa_kid}
        return f"{_b64url_json(header)}.{_b64url_json(self.claims(overrides, **claim_kw))}."

    def hs256_public_key_token(self, overrides: dict[str, Any] | None = None,
                               **claim_kw: Any) -> str:
        """The key-confusion attack: HS256 with the RSA public key PEM as the HMAC secret."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.rsa_kid}
        signing_input = (f"{_b64url_json(header)}."
                         f"{_b64url_json(self.claims(overrides, **claim_kw))}")
        mac = hmac.new(self.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"


_DEFAULT_KEYS: tuple[RSAKey, ECKey] | None = None


def _default_keys() -> tuple[RSAKey, ECKey]:
    # RSA generation dominates test time; issuers differ by URL, so they may share the two
    # default keys. Keys added later (rotation, strangers) are always fresh.
    global _DEFAULT_KEYS
    if _DEFAULT_KEYS is None:
        rsa = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex[:16]})
        ec = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex[:16]})
        _DEFAULT_KEYS = (rsa, ec)
    return _DEFAULT_KEYS


def _self_signed_cert(folder: str, ip: str) -> tuple[str, str]:
    """Write a one-day self-signed certificate for ``ip``; returns (cert path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc-issuer-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def start_issuer(*, listening: bool = True, fresh_keys: bool = False,
                 tls: bool = False) -> LocalIssuer:
    """Start a local issuer (or, with ``listening=False``, reserve its URL and refuse
    connections until ``.listen()``); ``fresh_keys`` gives it its own default keys instead of
    the process-wide pair; ``tls`` serves https with a self-signed certificate whose PEM is at
    ``.ca_file``. Call ``.stop()`` when done."""
    return LocalIssuer(listening=listening, fresh_keys=fresh_keys, tls=tls)
