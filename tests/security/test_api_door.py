"""The API server's door when it runs without token validation (loopback or a unix socket).

The attacker is a web page the node's user opens (it can make the browser send simple
cross-origin requests to 127.0.0.1, or rebind its own name to 127.0.0.1), or another user of the
host (who can connect to any unix socket its mode lets them). The real API process is attacked
with the bytes a browser or that user would send; the fake plugin records whether anything was
forwarded."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostuser import NOBODY, connect_as, sock_dir  # noqa: F401 (a fixture)
from procs import Proc, free_port, start_api
from raw_http import RawResponse, browser_request, send

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CREATE = (FIXTURES / "legacy_create_configmap_secret.json").read_bytes()
DAEMON_GID = 1  # the Debian "daemon" group: any group other than nobody's would do


def sidecar_keys(plugin: Any) -> dict[str, Any]:
    host, port = plugin.base.rsplit(":", 1)
    return {"SidecarURL": host, "SidecarPort": int(port)}


@pytest.fixture
def api(tmp_path: Path, plugin: Any) -> Iterator[Proc]:
    proc = start_api(tmp_path, sidecar_keys(plugin))
    yield proc
    proc.stop()


def port_of(proc: Proc) -> str:
    return proc.base.rsplit(":", 1)[1]


@pytest.mark.parametrize("content_type", [
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----x",
    None,
])
def test_browser_body_that_is_not_json_is_refused(api: Proc, plugin: Any,
                                                  content_type: str | None) -> None:
    host = f"127.0.0.1:{port_of(api)}"
    r = send(api.base, browser_request("/create", host, CREATE, content_type))
    assert r.status == 415, r.body
    assert b"Content-Type: application/json" in r.body and b"configure OIDC" in r.body
    assert plugin.requests() == []
    # The same bytes labelled as the VK labels them are served.
    r = send(api.base, browser_request("/create", host, CREATE, "application/json"))
    assert r.status == 200, r.body
    assert [q["path"] for q in plugin.requests()] == ["/create"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}",
                                  "127.0.0.1.evil.example:{port}", "localhost.evil.example"])
def test_rebound_host_is_refused(api: Proc, plugin: Any, host: str) -> None:
    """DNS rebinding: the page's own name now resolves to 127.0.0.1, and the browser says so in
    Host. Even a well-formed JSON request is refused, on every VK route."""
    port = port_of(api)
    for path in ("/create", "/pinglink", "/updateCache"):
        r = send(api.base, browser_request(path, host.format(port=port), CREATE,
                                           "application/json"))
        assert r.status == 421, (path, r.body)
        assert b"Host header" in r.body and b"AllowedHosts" in r.body
    assert plugin.requests() == []
    # Loopback by any of its names is served.
    for good in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        r = send(api.base, browser_request("/create", good, CREATE, "application/json"))
        assert r.status == 200, (good, r.body)


def test_allowed_hosts_extend_what_host_may_name(tmp_path: Path, plugin: Any) -> None:
    """Behind a proxy (AllowInsecureNoAuth on every interface), the proxy's name is accepted
    when listed, any other name still refused."""
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "InterlinkAddress": "http://0.0.0.0",
                                "InterlinkPort": free_port(), "AllowInsecureNoAuth": True,
                                "AllowedHosts": ["interlink.example.org"]})
    try:
        port = port_of(proc)
        r = send(proc.base, browser_request("/create", f"evil.example:{port}", CREATE,
                                            "application/json"))
        assert r.status == 421
        assert plugin.requests() == []
        r = send(proc.base, browser_request("/create", f"interlink.example.org:{port}", CREATE,
                                            "application/json"))
        assert r.status == 200, r.body
    finally:
        proc.stop()



def unix_call(path: Path, host: str) -> RawResponse:
    return send(f"unix://{path}", browser_request("/create", host, CREATE, "application/json"))


def test_unix_socket_is_for_its_own_user_only(tmp_path: Path, plugin: Any,
                                              sock_dir: Path) -> None:
    path = sock_dir / "api.sock"
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "InterlinkAddress": f"unix://{path}"})
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        assert connect_as(path).startswith("refused 13")  # EACCES for the other user
        assert plugin.requests() == []
        # No browser can reach a unix socket, so Host is not checked here: the VK writes
        # whatever its URL library puts there.
        assert unix_call(path, "unix").status == 200
    finally:
        proc.stop()
    assert not path.exists()  # removed at exit, not left for the next start to trip on


def test_socket_group_opens_the_socket_to_that_group_only(tmp_path: Path, plugin: Any,
                                                          sock_dir: Path) -> None:
    path = sock_dir / "api.sock"
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "InterlinkAddress": f"unix://{path}",
                                "SocketGroup": "daemon"})
    try:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == DAEMON_GID
        assert connect_as(path, gid=DAEMON_GID) == "HTTP/1.1 200 OK"
        assert connect_as(path, gid=NOBODY).startswith("refused 13")
    finally:
        proc.stop()


def test_unknown_socket_group_stops_startup(tmp_path: Path, plugin: Any,
                                            sock_dir: Path) -> None:
    path = sock_dir / "api.sock"
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "InterlinkAddress": f"unix://{path}",
                                "SocketGroup": "no-such-group-here"}, wait=False)
    assert proc.popen.wait(timeout=30) != 0
    proc.stop()
    assert "SocketGroup 'no-such-group-here': no such group" in proc.output()


def test_oidc_without_audience_stops_startup(tmp_path: Path, plugin: Any) -> None:
    """An empty audience would accept any token the issuer signed, for any service."""
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "OIDC": {
        "Issuer": "https://iam.example.org/", "Audience": ""}}, wait=False)
    assert proc.popen.wait(timeout=30) != 0
    proc.stop()
    out = proc.output()
    assert "OIDC.Audience is empty" in out and "Audience: users" in out


def test_example_config_requires_a_group() -> None:
    """The documented set-up is the safe one: tokens of the audience must carry a group."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" /
                          "InterLinkConfig.example.yaml").read_text())
    assert cfg["OIDC"]["Audience"] and cfg["OIDC"]["RequiredGroup"]


def test_vk_calls_pass_the_door(api: Proc, plugin: Any) -> None:
    """What the VK sends is not caught: legacy updateCache's raw UID labelled JSON, a ping with
    no body and no Content-Type, Go's Host header."""
    uid = json.loads(CREATE)["pod"]["metadata"]["uid"]
    host = f"127.0.0.1:{port_of(api)}"
    ping = (f"POST /pinglink HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n"
            "Content-Length: 0\r\nAccept-Encoding: gzip\r\n\r\n").encode()
    assert send(api.base, ping).status == 200
    r = send(api.base, browser_request("/updateCache", host, uid.encode(), "application/json"))
    assert (r.status, r.body) == (200, b"Updated cache")
    # And a 415 names what to send instead.
    r = send(api.base, browser_request("/updateCache", host, uid.encode(), "text/plain"))
    assert r.status == 415 and b"application/json" in r.body
