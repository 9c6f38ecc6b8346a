"""Token checks done by the real ``interlink-api`` process against a real local OIDC issuer:
accepted tokens are forwarded, rejected ones never reach the plugin, tokens never reach logs."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oidc_issuer import start_issuer
from procs import free_port, start_api
from raw_http import go_request, send


@pytest.fixture(scope="module")
def issuer():
    iss = start_issuer()
    yield iss
    iss.stop()


@pytest.fixture
def api(tmp_path, plugin, issuer):
    host, port = plugin.base.rsplit(":", 1)
    proc = start_api(tmp_path, {
        "InterlinkURL": "http://0.0.0.0", "InterlinkPort": free_port(),
        "SidecarURL": host, "SidecarPort": int(port),
        "OIDC": {"Issuer": issuer.url, "Audience": "users", "GroupsClaim": "wlcg.groups",
                 "RequiredGroup": "/interlink"}})
    yield proc
    proc.stop()


def ping(api, token: str | None):
    return send(api.base, go_request("POST", "/pinglink", "127.0.0.1", None, token=token,
                                     session="PingInterLink#1"))


def test_valid_token_with_group_is_forwarded(api, plugin, issuer):
    token = issuer.token({"wlcg.groups": ["/interlink", "/other"]})
    r = ping(api, token)
    assert r.status == 200
    assert [q["path"] for q in plugin.requests()] == ["/status"]
    assert token not in api.output()


@pytest.mark.parametrize("case, status, error", [
    ("missing", 401, None),
    ("expired", 401, "invalid_token"),
    ("wrong_audience", 401, "invalid_token"),
    ("wrong_issuer", 401, "invalid_token"),
    ("none", 401, "invalid_token"),
    ("hs256", 401, "invalid_token"),
    ("garbage", 401, "invalid_token"),
    ("nested", 401, "invalid_token"),  # a header nested past the JSON parser's stack
    ("no_group", 403, "insufficient_scope"),
])
def test_rejected_tokens_never_reach_the_plugin(api, plugin, issuer, case, status, error):
    groups = {"wlcg.groups": ["/interlink"]}
    token = {
        "missing": None,
        "expired": issuer.token(groups, exp=1_000_000, iat=999_000, nbf=999_000),
        "wrong_audience": issuer.token(groups, aud="someone-else"),
        "wrong_issuer": issuer.token(groups, iss="https://evil.example.org"),
        "none": issuer.none_token(groups),
        "hs256": issuer.hs256_public_key_token(groups),
        "garbage": "not-a-jwt",
        "nested": base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30.c2ln",
        "no_group": issuer.token({"wlcg.groups": ["/users"]}),
    }[case]
    r = ping(api, token)
    assert r.status == status
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    if error:
        assert f'error="{error}"' in challenge
    assert plugin.requests() == []
    if token:
        assert token not in api.output()
        assert token not in r.body.decode()


def test_health_and_metrics_stay_open_and_count_failures(api, issuer):
    ping(api, "garbage")
    with api.client() as c:
        assert c.get("/healthz").status_code == 200
        metrics = c.get("/metrics").text
    assert 'interlink_api_auth_failures_total{reason="malformed"} 1.0' in metrics


def test_document_stays_open_and_declares_the_bearer(api, plugin):
    """With OIDC on, /openapi.json and /docs are read without a token (they name no pod and no
    secret), and the document says which routes need one."""
    with api.client() as c:
        r = c.get("/openapi.json")
        assert r.status_code == 200
        assert c.get("/docs").status_code == 200
    doc = r.json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method in (("/create", "post"), ("/status", "get"), ("/pinglink", "post")):
        operation = doc["paths"][path][method]
        assert operation["security"] == [{"bearer": []}]
        assert {"401", "403"} <= set(operation["responses"])
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in doc["paths"][path]["get"]
    assert plugin.requests() == []  # reading the document calls no plugin


def _cert(tmp: Path, name: str, issuer_cert=None, issuer_key=None, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key, str(cert_path), str(key_path)


def test_https_with_client_certificates(tmp_path, plugin, issuer):
    ca, ca_key, ca_path, _ = _cert(tmp_path, "ca", ca=True)
    _, _, server_crt, server_key = _cert(tmp_path, "server", ca, ca_key)
    _, _, client_crt, client_key = _cert(tmp_path, "client", ca, ca_key)
    host, port = plugin.base.rsplit(":", 1)
    proc = start_api(tmp_path, {
        "InterlinkAddress": "https://127.0.0.1", "InterlinkPort": free_port(),
        "SidecarURL": host, "SidecarPort": int(port),
        "TLS": {"Enabled": True, "CertFile": server_crt, "KeyFile": server_key,
                "CACertFile": ca_path},
        "OIDC": {"Issuer": issuer.url, "Audience": "users"}}, wait=False)
    try:
        with_cert = ssl.create_default_context(cafile=ca_path)
        with_cert.load_cert_chain(client_crt, client_key)
        with httpx.Client(base_url=proc.base, verify=with_cert) as c:
            for _ in range(100):
                try:
                    c.get("/healthz")
                    break
                except httpx.ConnectError:
                    __import__("time").sleep(0.1)
            r = c.post("/pinglink", headers={"Authorization": f"Bearer {issuer.token()}",
                                             "InterLink-Http-Session": "P#1"})
            assert r.status_code == 200 and json.loads(r.text)["status"] == "ok"
        without_cert = ssl.create_default_context(cafile=ca_path)
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            with httpx.Client(base_url=proc.base, verify=without_cert) as c:
                c.get("/healthz")
    finally:
        proc.stop()
