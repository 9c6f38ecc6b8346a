"""The sidecar's door: whoever reaches it runs containers on the node.

Attacks: a pod on the node (or anyone on the network) calls the sidecar directly, without a
token or with a guessed one; another host user connects to its unix socket; an operator's
config exposes it on every interface. The real sidecar process is attacked; the real API server
is checked to carry the shared token, re-read when the file is rotated."""

from __future__ import annotations

import json
import os
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostuser import connect_as, sock_dir  # noqa: F401 (a fixture)
from kube import container, create_body, pod
from procs import Proc, env_for_children, free_port, start_api, write_config
from raw_http import RawResponse, browser_request, send

TOKEN = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c"  # the shared token; nothing token-shaped about it


def token_file(tmp: Path, value: str = TOKEN, name: str = "plugin.token") -> Path:
    path = tmp / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def sidecar_config(tmp: Path, **keys: Any) -> dict[str, Any]:
    sidecar = keys.pop("Sidecar", {})
    return {"SidecarURL": "http://127.0.0.1", "SidecarPort": free_port(),
            "DataRootFolder": str(tmp / "data"),
            "Sidecar": {"InfraImage": "interlink-test/pause:1",
                        "Instance": f"door-{uuid.uuid4().hex[:8]}", **sidecar}, **keys}


def launch(tmp: Path, config: dict[str, Any], base: str, name: str = "sidecar") -> Proc:
    path = write_config(tmp / f"{name}.yaml", config)
    return Proc([sys.executable, "-m", "docker_sidecar", "--config", str(path)], base,
                tmp / f"{name}.log", env=env_for_children())


def refused_at_start(tmp: Path, config: dict[str, Any]) -> str:
    proc = launch(tmp, config, "http://127.0.0.1:1")
    assert proc.popen.wait(timeout=30) != 0
    proc.stop()
    return proc.output()


@pytest.mark.parametrize("url, extra", [
    ("http://0.0.0.0", {}),
    ("http://sidecar.example.org", {}),           # a name: bound on every interface
    ("http://0.0.0.0", {"Sidecar": {"AllowRemoteListen": True}}),  # no token
    ("http://0.0.0.0", {"PluginTokenFile": "TOKEN"}),              # no explicit opt-in
])
def test_network_listener_is_refused_without_opt_in_and_token(tmp_path: Path, url: str,
                                                              extra: dict[str, Any]) -> None:
    if extra.get("PluginTokenFile"):
        extra = {**extra, "PluginTokenFile": str(token_file(tmp_path))}
    out = refused_at_start(tmp_path, sidecar_config(tmp_path, SidecarURL=url, **extra))
    assert "refusing to listen on http://0.0.0.0:" in out
    assert "Sidecar.AllowRemoteListen" in out and "PluginTokenFile" in out
    assert "could run containers on this node" in out


@pytest.mark.parametrize("content", ["short", "two words here and more", ""])
def test_unusable_token_file_stops_startup(tmp_path: Path, content: str) -> None:
    path = token_file(tmp_path, content)
    out = refused_at_start(tmp_path, sidecar_config(tmp_path, PluginTokenFile=str(path)))
    assert f"PluginTokenFile {path}" in out and "openssl rand -hex 32" in out


@pytest.fixture
def guarded(docker_client: Any, tmp_path: Path) -> Iterator[Proc]:
    """A sidecar with the shared token, opted in to listen on every interface."""
    config = sidecar_config(tmp_path, SidecarURL="http://0.0.0.0",
                            PluginTokenFile=str(token_file(tmp_path)),
                            Sidecar={"AllowRemoteListen": True})
    proc = launch(tmp_path, config, f"http://127.0.0.1:{config['SidecarPort']}").wait_ready()
    yield proc
    proc.stop()


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer",
    "Bearer wrong-token-0000000000000000",
    f"Bearer {TOKEN[:-1]}",                      # all but the last character
    f"Bearer {TOKEN}x",
    f"Basic {TOKEN}",
    TOKEN,                                       # no scheme
])
def test_call_without_the_right_token_is_401(guarded: Proc, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=guarded.base, timeout=30) as c:
        for method, path, body in (("GET", "/status", b"[]"), ("POST", "/create", b"{}"),
                                   ("POST", "/delete", b"{}"), ("GET", "/getLogs", b"{}"),
                                   ("GET", "/metrics", b""), ("GET", "/gpus", b""),
                                   ("GET", "/openapi.json", b""), ("GET", "/docs", b"")):
            r = c.request(method, path, content=body, headers=headers)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "PluginTokenFile" in r.text
        # Health stays open for probes; the token opens the rest.
        assert c.get("/healthz").status_code == 200
        r = c.request("GET", "/status", content=b"[]",
                      headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["status"] == "ok"
    out = guarded.output()
    assert "rejected GET /status" in out
    assert TOKEN not in out and "wrong-token" not in out and TOKEN[:-1] not in out


def test_document_needs_the_token_and_says_so(guarded: Proc) -> None:
    """The plugin API's document is served to the token's holder and declares the bearer token
    on every route but /healthz, so a generated client knows to send it."""
    with httpx.Client(base_url=guarded.base, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = c.get("/openapi.json")
        assert r.status_code == 200
        assert c.get("/docs").status_code == 200
    doc = r.json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/create"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/gpus"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert TOKEN not in r.text


def test_token_is_required_on_loopback_too(docker_client: Any, tmp_path: Path) -> None:
    """Once a token is configured it is always required, wherever the sidecar listens."""
    config = sidecar_config(tmp_path, PluginTokenFile=str(token_file(tmp_path)))
    proc = launch(tmp_path, config, f"http://127.0.0.1:{config['SidecarPort']}").wait_ready()
    try:
        with httpx.Client(base_url=proc.base, timeout=30) as c:
            assert c.request("GET", "/status", content=b"[]").status_code == 401
    finally:
        proc.stop()



def browser_get(path: str, host: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n"
            "User-Agent: Mozilla/5.0\r\n\r\n").encode()


def test_browser_page_cannot_drive_a_sidecar_without_token(sidecar: Any) -> None:
    """The default set-up: the sidecar on loopback with no PluginTokenFile. A page the node's
    user opens posts a pod to it as a "simple" request, or after rebinding its own name to
    127.0.0.1: nothing runs, no pod directory appears; the API server's request is served."""
    target = pod("forged", [container("c", "sleep 60")])
    uid = target["metadata"]["uid"]
    body = json.dumps(create_body(target)).encode()
    base = sidecar.proc.base
    loopback = base.removeprefix("http://")
    for content_type in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=----x", None):
        r = send(base, browser_request("/create", loopback, body, content_type))
        assert r.status == 415, r.body
        assert b"Content-Type: application/json" in r.body and b"PluginTokenFile" in r.body
    port = loopback.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        for path in ("/create", "/delete", "/status", "/getLogs"):
            r = send(base, browser_request(path, host, body, "application/json"))
            assert r.status == 421, (host, path, r.body)
            assert b"AllowedHosts" in r.body
        for path in ("/gpus", "/metrics"):  # a rebound page could read them
            assert send(base, browser_get(path, host)).status == 421
    assert sidecar.docker.containers.list(
        all=True, filters={"label": f"io.interlink.pod.uid={uid}"}) == []
    assert not (sidecar.data_root / "pods" / uid).exists()
    assert "refused POST /create from a possible browser page" in sidecar.proc.output()
    # The same bytes as the API server sends them: served.
    r: RawResponse = send(base, browser_request("/create", loopback, body, "application/json"))
    assert r.status == 200, r.body
    assert send(base, browser_get("/gpus", loopback)).status == 200
    assert sidecar.delete(target).status_code == 200


def test_sidecar_socket_is_for_its_own_user_only(docker_client: Any, tmp_path: Path,
                                                 sock_dir: Path) -> None:
    path = sock_dir / "sidecar.sock"
    config = sidecar_config(tmp_path, Socket=f"unix://{path}")
    proc = launch(tmp_path, config, f"unix://{path}").wait_ready()
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        assert connect_as(path).startswith("refused 13")
        with proc.client(timeout=30) as c:  # its own user (the API server's) gets in
            assert c.request("GET", "/status", content=b"[]").status_code == 200
            # No browser reaches a unix socket: Host is whatever the client wrote.
            assert c.get("/gpus", headers={"Host": "anything.example"}).status_code == 200
    finally:
        proc.stop()


@pytest.mark.parametrize("mode, owner", [(0o777, 0), (0o1777, 0), (0o775, 0), (0o755, 1000)])
def test_socket_where_another_user_could_swap_it_is_refused(tmp_path: Path, mode: int,
                                                             owner: int) -> None:
    """Another host user who can write the socket's directory could bind a socket of their own
    at the path while the sidecar is down (even in a sticky one, like /tmp), or put a symlink
    where the socket was bound."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, owner, -1)
    shared.chmod(mode)
    out = refused_at_start(tmp_path, sidecar_config(
        tmp_path, Socket=f"unix://{shared}/sidecar.sock", SocketGroup="daemon"))
    assert str(shared) in out and "replace the socket" in out
    assert not (shared / "sidecar.sock").exists()


def test_socket_below_a_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    """A user who owns a directory above can rename the socket's directory away."""
    theirs = tmp_path / "theirs"
    (theirs / "run").mkdir(parents=True)
    os.chown(theirs, 1000, 1000)
    out = refused_at_start(tmp_path, sidecar_config(
        tmp_path, Socket=f"unix://{theirs}/run/sidecar.sock"))
    assert f"{theirs} (owner uid 1000" in out and "move" in out


def test_api_sends_the_token_and_follows_its_rotation(tmp_path: Path, plugin: Any) -> None:
    host, port = plugin.base.rsplit(":", 1)
    path = token_file(tmp_path)
    api = start_api(tmp_path, {"SidecarURL": host, "SidecarPort": int(port),
                               "PluginTokenFile": str(path)})
    try:
        with api.client(timeout=30) as c:
            assert c.post("/pinglink").status_code == 200
            rotated = "0123456789abcdef0123456789abcdef"
            new = token_file(tmp_path, rotated, "plugin.token.new")
            os.replace(new, path)  # an atomic rotation
            assert c.post("/pinglink").status_code == 200
        sent = [q["headers"].get("authorization") for q in plugin.requests()]
        assert sent == [f"Bearer {TOKEN}", f"Bearer {rotated}"]
    finally:
        api.stop()
    assert TOKEN not in api.output() and rotated not in api.output()


def test_api_through_a_guarded_sidecar(guarded: Proc, tmp_path: Path) -> None:
    """The real pair: the API's calls carry the token the sidecar requires."""
    with httpx.Client(base_url=guarded.base, timeout=30) as c:  # the door is shut...
        assert c.request("GET", "/status", content=b"[]").status_code == 401
    api = start_api(tmp_path, {"SidecarURL": "http://127.0.0.1",
                               "SidecarPort": int(guarded.base.rsplit(":", 1)[1]),
                               "PluginTokenFile": str(tmp_path / "plugin.token")}, name="api")
    try:
        with api.client(timeout=30) as c:
            r = c.post("/pinglink", headers={"InterLink-Http-Session": "PingInterLink#1"})
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "ok"
    finally:
        api.stop()
    # ...and the API's own calls got through it: one rejection only, the direct call above.
    assert guarded.output().count("rejected") == 1


def test_api_with_an_unusable_token_file_stops(tmp_path: Path, plugin: Any) -> None:
    host, port = plugin.base.rsplit(":", 1)
    api = start_api(tmp_path, {"SidecarURL": host, "SidecarPort": int(port),
                               "PluginTokenFile": str(tmp_path / "missing.token")}, wait=False)
    assert api.popen.wait(timeout=30) != 0
    api.stop()
    assert "PluginTokenFile" in api.output() and "missing.token" in api.output()


# --- mutual TLS: the other credential -----------------------------------------------------------


def _cert(tmp: Path, name: str, issuer: tuple[Any, Any] | None = None) -> tuple[Any, Any, str, str]:
    """A certificate (a CA when ``issuer`` is None) for localhost and 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                              critical=True))
    if issuer is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    crt, pem = tmp / f"{name}.crt", tmp / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return cert, key, str(crt), str(pem)


def _tls_client(ca: str, cert: tuple[str, str] | None) -> httpx.Client:
    import ssl

    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(*cert)
    return httpx.Client(verify=context, timeout=30)


def test_network_listener_with_https_but_no_client_ca_is_refused(tmp_path: Path) -> None:
    """TLS alone encrypts; it authenticates no one."""
    out = refused_at_start(tmp_path, sidecar_config(
        tmp_path, SidecarURL="https://0.0.0.0", Sidecar={"AllowRemoteListen": True},
        PluginTLS={"CertFile": "/nonexistent.crt", "KeyFile": "/nonexistent.key"}))
    assert "refusing to listen on https://0.0.0.0:" in out and "ClientCACertFile" in out


def test_mutual_tls_admits_only_certificates_of_the_client_ca(docker_client: Any,
                                                              tmp_path: Path) -> None:
    ca = _cert(tmp_path, "ca")
    _, _, server_crt, server_key = _cert(tmp_path, "sidecar", ca[:2])
    _, _, client_crt, client_key = _cert(tmp_path, "api", ca[:2])
    rogue_ca = _cert(tmp_path, "rogue-ca")
    _, _, rogue_crt, rogue_key = _cert(tmp_path, "rogue", rogue_ca[:2])
    config = sidecar_config(tmp_path, SidecarURL="https://0.0.0.0",
                            Sidecar={"AllowRemoteListen": True},
                            PluginTLS={"CertFile": server_crt, "KeyFile": server_key,
                                       "ClientCACertFile": ca[2]})
    port = config["SidecarPort"]
    base = f"https://127.0.0.1:{port}"
    proc = launch(tmp_path, config, base)
    try:
        with _tls_client(ca[2], (client_crt, client_key)) as good:
            for _ in range(600):  # until it serves (Docker start-up), or it died
                assert proc.popen.poll() is None, proc.output()
                try:
                    good.get(f"{base}/healthz")
                    break
                except httpx.TransportError:
                    __import__("time").sleep(0.05)
            r = good.request("GET", f"{base}/status", content=b"[]")
            assert r.status_code == 200 and r.json()["status"] == "ok"
        for cert in (None, (rogue_crt, rogue_key)):
            with _tls_client(ca[2], cert) as bad:
                with pytest.raises(httpx.TransportError):
                    bad.request("GET", f"{base}/status", content=b"[]")
        # The API server presents its client certificate on every plugin call.
        api = start_api(tmp_path, {"SidecarURL": "https://127.0.0.1", "SidecarPort": port,
                                   "PluginTLS": {"ClientCertFile": client_crt,
                                                 "ClientKeyFile": client_key,
                                                 "CACertFile": ca[2]}}, name="api")
        try:
            with api.client(timeout=30) as c:
                r = c.post("/pinglink", headers={"InterLink-Http-Session": "PingInterLink#1"})
                assert r.status_code == 200, r.text
                assert r.json()["status"] == "ok"
        finally:
            api.stop()
    finally:
        proc.stop()


def test_a_publish_address_the_node_does_not_have_stops_startup(tmp_path: Path) -> None:
    """Otherwise every /create would fail binding it, with an error naming nothing."""
    out = refused_at_start(tmp_path, sidecar_config(
        tmp_path, Sidecar={"PublishPorts": True, "PublishAddress": "192.0.2.1"}))
    assert "Sidecar.PublishAddress '192.0.2.1' cannot be bound on this node" in out
