"""The real ``interlink-api`` process in front of a real plugin process, driven the way the
legacy (0.2.x) and current (0.5+) VKs drive it, request bytes as Go writes them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procs import ROOT, Proc, env_for_children, free_port, start_api, start_fake_plugin, write_config
from raw_http import go_request, send

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sidecar_keys(plugin) -> dict:
    host, port = plugin.base.rsplit(":", 1)
    return {"SidecarURL": host, "SidecarPort": int(port)}


@pytest.fixture
def api(tmp_path, plugin):
    proc = start_api(tmp_path, sidecar_keys(plugin))
    yield proc
    proc.stop()


def host_of(proc: Proc) -> str:
    return proc.base.split("://", 1)[1]


def test_legacy_vk_sequence(api, plugin):
    """Legacy VK: ping parses an integer, create ignores the body, status is batched, delete
    answers a PodStatus array, updateCache gets the raw UID."""
    host = host_of(api)
    create = json.loads(fixture_bytes("legacy_create_configmap_secret.json"))
    pod = create["pod"]
    uid = pod["metadata"]["uid"]

    r = send(api.base, go_request("POST", "/pinglink", host, None, token="t"))
    assert r.status == 200 and int(r.body) == 0

    r = send(api.base, go_request("POST", "/create", host, json.dumps(create).encode(), token="t"))
    assert r.status == 200

    two = json.loads(fixture_bytes("legacy_create_two_containers.json"))["pod"]
    two["status"] = {"phase": "Running"}
    batch = json.dumps([pod, two]).encode()
    r = send(api.base, go_request("GET", "/status", host, batch, token="t"))
    assert r.status == 200
    statuses = json.loads(r.body)
    assert [s["UID"] for s in statuses] == [uid, two["metadata"]["uid"]]
    assert statuses[0]["containers"][0]["state"]["running"]["startedAt"] == "2026-11-25T10:00:00Z"

    logs = {"Namespace": "team-a", "PodUID": uid, "PodName": pod["metadata"]["name"],
            "ContainerName": "app", "Opts": {"Tail": 0, "Bytes": 0, "Timestamps": False,
                                             "Follow": False, "Previous": False,
                                             "SinceSeconds": 0,
                                             "SinceTime": "0001-01-01T00:00:00Z"}}
    r = send(api.base, go_request("GET", "/getLogs", host, json.dumps(logs).encode(), token="t"))
    assert r.status == 200 and r.body == b"app line 0\napp line 1\napp line 2\n"

    raw_pod = json.dumps(pod).encode()
    r = send(api.base, go_request("DELETE", "/delete", host, raw_pod, token="t"))
    assert r.status == 200
    assert json.loads(r.body) == [{"name": "cm-secret-pod", "UID": uid, "namespace": "team-a",
                                   "containers": None}]

    r = send(api.base, go_request("POST", "/updateCache", host, uid.encode(), token="t"))
    assert (r.status, r.body) == (200, b"Updated cache")

    seen = plugin.requests()
    assert [(q["method"], q["path"]) for q in seen] == [
        ("GET", "/status"), ("POST", "/create"), ("GET", "/status"), ("GET", "/getLogs"),
        ("POST", "/delete")]
    created = json.loads(seen[1]["body"])
    assert isinstance(created, dict) and created["pod"] == pod
    assert [c["name"] for c in created["container"]] == ["app"]
    assert seen[4]["body"] == raw_pod  # delete forwarded byte for byte
    assert all(q["headers"]["interlink-http-session"].startswith("Request-") for q in seen)
    assert all("authorization" not in q["headers"] for q in seen)  # token not forwarded


def test_current_vk_sequence(api, plugin):
    """Current VK: session header on every call, ping relays the PingResponse, status one pod
    at a time, followed logs streamed chunk by chunk."""
    host = host_of(api)
    create = json.loads(fixture_bytes("current_create_notebook.json"))
    pod = create["pod"]
    uid = pod["metadata"]["uid"]

    r = send(api.base, go_request("POST", "/pinglink", host, None, session="PingInterLink#1"))
    assert r.status == 200
    ping = json.loads(r.body)
    assert ping["resources"]["accelerators"] == [{"resourceType": "nvidia.com/gpu",
                                                  "available": "2"}]

    r = send(api.base, go_request("POST", "/create", host, json.dumps(create).encode(),
                                  session="CreatePod#2"))
    assert r.status == 200 and json.loads(r.body) == {"PodUID": uid, "PodJID": f"fake-{uid[:8]}"}

    pod["status"] = {"phase": "Running"}
    r = send(api.base, go_request("GET", "/status", host, json.dumps([pod]).encode(),
                                  session="GetPodStatus#3"))
    assert r.status == 200 and json.loads(r.body)[0]["UID"] == uid

    plugin.program("/getLogs", lines=4, line_delay=0.2)
    logs = {"Namespace": "jhub", "PodUID": uid, "PodName": "jupyter-alice",
            "ContainerName": "notebook", "Opts": {"Follow": True, "Timestamps": False,
                                                  "SinceTime": "0001-01-01T00:00:00Z"}}
    start = time.monotonic()
    r = send(api.base, go_request("GET", "/getLogs", host, json.dumps(logs).encode(),
                                  session="GetLogs#4"))
    assert r.status == 200 and r.headers.get("transfer-encoding") == "chunked"
    assert r.body == b"".join(f"notebook line {i}\n".encode() for i in range(4))
    assert len(r.chunks) >= 4, "followed logs must be relayed chunk by chunk, not buffered"
    assert time.monotonic() - start >= 0.6

    r = send(api.base, go_request("DELETE", "/delete", host, json.dumps(pod).encode(),
                                  session="DeletePod#5"))
    assert r.status == 200
    assert r.body == b"All containers for submitted Pods have been deleted"

    seen = plugin.requests()
    assert [q["headers"]["interlink-http-session"] for q in seen] == [
        "PingInterLink#1", "CreatePod#2", "GetPodStatus#3", "GetLogs#4", "DeletePod#5"]
    assert seen[0]["body"] == b"[]"
    created = json.loads(seen[1]["body"])
    assert [c["name"] for c in created["container"]] == ["block-cloud-metadata", "notebook"]
    assert "projectedvolumesmaps" not in created


def test_plugin_error_reaches_current_vk_with_status_and_message(api, plugin):
    plugin.program("/create", status=409, body="pod jhub/jupyter-alice exists with another spec")
    create = fixture_bytes("current_create_notebook.json")
    r = send(api.base, go_request("POST", "/create", host_of(api), create, session="CreatePod#9"))
    assert r.status == 409
    assert b"exists with another spec" in r.body and plugin.base.encode() in r.body


def test_malformed_create_is_400_and_server_keeps_serving(api, plugin):
    r = send(api.base, go_request("POST", "/create", host_of(api), b'{"pod": [1, 2',
                                  session="CreatePod#1"))
    assert r.status == 400 and b"not valid JSON" in r.body
    r = send(api.base, go_request("POST", "/pinglink", host_of(api), None, session="P#2"))
    assert r.status == 200
    assert plugin.requests()[-1]["path"] == "/status"


def test_plugin_down_ping_is_500_with_503_body(tmp_path):
    proc = start_api(tmp_path, {"SidecarURL": "http://127.0.0.1", "SidecarPort": free_port()})
    try:
        r = send(proc.base, go_request("POST", "/pinglink", host_of(proc), None, session="P#1"))
        assert (r.status, r.body) == (500, b"503")
        with proc.client() as c:
            assert c.get("/healthz").status_code == 200
            ready = c.get("/readyz")
            assert ready.status_code == 503 and "plugin" in ready.text
    finally:
        proc.stop()


def test_unix_sockets_on_both_sides(tmp_path):
    plugin_sock = str(tmp_path / "plugin.sock")
    api_sock = str(tmp_path / "api.sock")
    plugin = start_fake_plugin(tmp_path, uds=plugin_sock)
    api = start_api(tmp_path, {"InterlinkAddress": f"unix://{api_sock}", "InterlinkPort": 0,
                               "SidecarURL": f"unix://{plugin_sock}", "SidecarPort": 0})
    try:
        create = fixture_bytes("current_create_failing.json")
        r = send(api.base, go_request("POST", "/create", "localhost", create, session="C#1"))
        assert r.status == 200 and b"PodJID" in r.body
        with api.client() as c:
            assert c.get("/readyz").text == "ready"
    finally:
        api.stop()
        plugin.stop()


def test_refuses_public_listener_without_auth(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"InterlinkURL": "http://0.0.0.0",
                                             "InterlinkPort": free_port()})
    done = subprocess.run([sys.executable, "-m", "interlink_api", "--config", str(path)],
                          capture_output=True, text=True, timeout=30, env=env_for_children(),
                          cwd=ROOT)
    assert done.returncode != 0
    assert "without authentication" in done.stderr and "AllowInsecureNoAuth" in done.stderr


def test_allow_insecure_no_auth_starts_on_all_interfaces(tmp_path, plugin):
    port = free_port()
    proc = start_api(tmp_path, {"InterlinkURL": "http://0.0.0.0", "InterlinkPort": port,
                                "AllowInsecureNoAuth": True, **sidecar_keys(plugin)})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert "token validation is off" in proc.output()
    finally:
        proc.stop()


def test_config_type_error_stops_startup_naming_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("InterlinkPort: [1, 2]\n")
    done = subprocess.run([sys.executable, "-m", "interlink_api", "--config", str(path)],
                          capture_output=True, text=True, timeout=30, env=env_for_children(),
                          cwd=ROOT)
    assert done.returncode != 0
    assert "InterlinkPort" in done.stderr and str(path) in done.stderr


def test_metrics_count_requests_by_route_and_code(api, plugin):
    send(api.base, go_request("POST", "/pinglink", host_of(api), None, session="P#1"))
    send(api.base, go_request("POST", "/create", host_of(api), b"{", session="C#1"))
    with api.client() as c:
        text = c.get("/metrics").text
    assert 'interlink_api_requests_total{code="200",method="POST",route="/pinglink"} 1.0' in text
    assert 'interlink_api_requests_total{code="400",method="POST",route="/create"} 1.0' in text
    assert 'interlink_api_plugin_request_duration_seconds_count{outcome="200",path="/status"} 1.0' in text


def test_json_logs_flag(tmp_path, plugin):
    proc = start_api(tmp_path, sidecar_keys(plugin), extra_args=["--log-json"])
    try:
        proc.stop()
        lines = [json.loads(line) for line in proc.output().splitlines()
                 if line.startswith("{")]
        assert any("listening on" in line["msg"] for line in lines)
    finally:
        proc.stop()


def test_plugin_timeout_is_500_naming_the_plugin(tmp_path, plugin):
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "PluginTimeoutSeconds": 0.5})
    try:
        plugin.program("/status", delay=3, status=200, body="[]")
        pod = json.loads(fixture_bytes("current_create_failing.json"))["pod"]
        start = time.monotonic()
        r = send(proc.base, go_request("GET", "/status", host_of(proc), json.dumps([pod]).encode(),
                                       session="S#1"))
        assert r.status == 500 and b"timed out" in r.body and plugin.base.encode() in r.body
        assert time.monotonic() - start < 2.5
    finally:
        proc.stop()


def test_a_log_error_reply_that_stalls_gives_its_stream_slot_back(tmp_path, plugin):
    """A plugin's error reply to a follow that never ends must neither hang the VK's call
    (a follow has no read timeout) nor keep one of the MaxLogStreams slots for ever."""
    proc = start_api(tmp_path, {**sidecar_keys(plugin), "PluginTimeoutSeconds": 0.5,
                                "MaxLogStreams": 1})
    pod = json.loads(fixture_bytes("current_create_failing.json"))["pod"]["metadata"]
    body = json.dumps({"Namespace": pod["namespace"], "PodUID": pod["uid"],
                       "PodName": pod["name"], "ContainerName": "main",
                       "Opts": {"Follow": True}}).encode()
    try:
        plugin.program("/getLogs", status=500, body="container is restart", stall=True)
        r = send(proc.base, go_request("GET", "/getLogs", host_of(proc), body, session="L#1"))
        assert r.status == 500 and b"container is restart" in r.body and b"broke off" in r.body
        plugin.reset()
        r = send(proc.base, go_request("GET", "/getLogs", host_of(proc), body, session="L#2"))
        assert r.status == 200, r.body  # the one slot is free again
        assert b"main line 0" in r.body
    finally:
        proc.stop()


def test_one_access_line_per_vk_call_naming_what_it_was_about(api, plugin):
    """At info, without VerboseLogging: route, pod, status and time for each VK call; a name
    that would start a forged log line is refused and logged with its newline replaced."""
    host = host_of(api)
    create = json.loads(fixture_bytes("legacy_create_configmap_secret.json"))
    meta = create["pod"]["metadata"]
    assert send(api.base, go_request("POST", "/create", host, json.dumps(create).encode(),
                                     token="t")).status == 200
    assert send(api.base, go_request("GET", "/status", host, json.dumps([create["pod"]]).encode(),
                                     token="t")).status == 200
    forged = dict(create, pod=dict(create["pod"], metadata=dict(
        meta, name="x\n2026-12-02 00:00:00,000 INFO    interlink.api: admin ok")))
    assert send(api.base, go_request("POST", "/create", host, json.dumps(forged).encode(),
                                     token="t")).status == 400
    ref = f"{meta['namespace']}/{meta['name']}"
    deadline = time.monotonic() + 10
    while "-> 400 in" not in api.output():
        assert time.monotonic() < deadline, api.output()[-2000:]
        time.sleep(0.1)
    lines = [ln for ln in api.output().splitlines() if "interlink.api.access" in ln]
    assert any(f"POST /create {ref} -> 200 in " in ln and " ms" in ln for ln in lines), lines
    assert any(f"GET /status {ref} -> 200 in " in ln for ln in lines), lines
    assert any(f"POST /create {meta['namespace']}/x?2026-12-02" in ln and "-> 400 in" in ln
               for ln in lines), lines
    assert not any(ln.startswith("2026-12-02 00:00:00,000") for ln in api.output().splitlines())
