"""Forwarding logic of the API app, in-process, with the plugin mocked by respx."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import respx

from interlink_api.app import create_app
from interlink_common.config import InterLinkConfig

FIXTURES = Path(__file__).parent / "fixtures"
PLUGIN = "http://plugin.test:4000"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


# Pod UIDs as Kubernetes makes them: the API refuses anything else.
A, B, GHOST = ("0a1b2c3d-0000-4000-8000-00000000000a", "0a1b2c3d-0000-4000-8000-00000000000b",
               "0a1b2c3d-0000-4000-8000-0000000000ff")


def pod(uid: str, phase: str = "Running", name: str = "p") -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase}}


def status(uid: str, state: str = "running") -> dict:
    return {"name": "p", "UID": uid, "namespace": "default", "JID": "", "initContainers": [],
            "containers": [{"name": "c", "state": {state: {}}, "lastState": {}, "ready": True,
                            "restartCount": 0, "image": "", "imageID": "", "containerID": "",
                            "started": True}]}


class ASGIClient:
    """Synchronous calls into the app in-process (no sockets), on one event loop."""

    def __init__(self, app) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                        base_url="http://api")

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture
def plugin_mock():
    """The plugin, mocked at the httpx client; calls into the app itself pass through."""
    with respx.mock(using="httpx", assert_all_called=False) as router:
        router.route(host="api").pass_through()
        yield router


@pytest.fixture
def make_client(plugin_mock):
    clients: list[ASGIClient] = []

    def make(**cfg) -> ASGIClient:
        config = InterLinkConfig.model_validate({"SidecarURL": "http://plugin.test",
                                                 "SidecarPort": 4000, **cfg})
        clients.append(ASGIClient(create_app(config)))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


def test_create_sends_object_by_default_and_relays_create_struct(make_client, plugin_mock):
    route = plugin_mock.post(f"{PLUGIN}/create").mock(return_value=httpx.Response(
        200, json={"PodUID": "u1", "PodJID": "j1"}))
    client = make_client()
    body = fixture("current_create_notebook.json")
    r = client.post("/create", json=body, headers={"InterLink-Http-Session": "CreatePod#3"})
    assert r.status_code == 200 and r.json() == {"PodUID": "u1", "PodJID": "j1"}
    sent = route.calls.last.request
    payload = json.loads(sent.content)
    assert isinstance(payload, dict) and payload["pod"] == body["pod"]
    assert sent.headers["InterLink-Http-Session"] == "CreatePod#3"
    assert sent.headers["Content-Type"] == "application/json"


def test_create_array_shape_for_legacy_plugins(make_client, plugin_mock):
    route = plugin_mock.post(f"{PLUGIN}/create").mock(return_value=httpx.Response(200, text="ok"))
    client = make_client(PluginCreateBody="array")
    client.post("/create", json=fixture("legacy_create_two_containers.json"))
    payload = json.loads(route.calls.last.request.content)
    assert isinstance(payload, list) and len(payload) == 1
    assert [c["name"] for c in payload[0]["container"]] == ["writer", "reader"]


def test_session_header_generated_when_absent(make_client, plugin_mock):
    route = plugin_mock.post(f"{PLUGIN}/create").mock(return_value=httpx.Response(200, text="{}"))
    make_client().post("/create", json=fixture("current_create_failing.json"))
    assert route.calls.last.request.headers["InterLink-Http-Session"].startswith("Request-")


def test_plugin_error_passes_through_with_plugin_url(make_client, plugin_mock):
    plugin_mock.post(f"{PLUGIN}/create").mock(return_value=httpx.Response(
        422, text="spec.containers[0].image: empty"))
    r = make_client().post("/create", json=fixture("current_create_failing.json"))
    assert r.status_code == 422
    assert "spec.containers[0].image: empty" in r.text and f"{PLUGIN}/create" in r.text


def test_plugin_unreachable_is_500_naming_the_plugin(make_client, plugin_mock):
    plugin_mock.post(f"{PLUGIN}/create").mock(side_effect=httpx.ConnectError("connection refused"))
    r = make_client().post("/create", json=fixture("current_create_failing.json"))
    assert r.status_code == 500
    assert f"{PLUGIN}/create" in r.text and "connection refused" in r.text


def test_status_cache_forwards_only_live_or_unknown_pods(make_client, plugin_mock):
    route = plugin_mock.get(f"{PLUGIN}/status").mock(side_effect=lambda req: httpx.Response(
        200, json=[status(p["metadata"]["uid"], "terminated") for p in json.loads(req.content)]))
    client = make_client()
    # first poll: all unknown -> all forwarded
    r = client.request("GET", "/status", json=[pod(A, "Succeeded"), pod(B, "Running")])
    assert [s["UID"] for s in r.json()] == [A, B]
    assert len(json.loads(route.calls.last.request.content)) == 2
    # second poll: A is cached and finished -> only B forwarded; order kept
    r = client.request("GET", "/status", json=[pod(B, "Running"), pod(A, "Succeeded")])
    assert [s["UID"] for s in r.json()] == [B, A]
    assert [p["metadata"]["uid"] for p in json.loads(route.calls.last.request.content)] == [B]
    # third poll: everything finished and cached -> plugin not called
    calls = route.call_count
    client.request("GET", "/status", json=[pod(A, "Failed")])
    assert route.call_count == calls


def test_status_unknown_uid_dropped_and_empty_request_returns_cache(make_client, plugin_mock):
    plugin_mock.get(f"{PLUGIN}/status").mock(return_value=httpx.Response(200, json=[status(A)]))
    client = make_client()
    r = client.request("GET", "/status", json=[pod(A), pod(GHOST)])
    assert [s["UID"] for s in r.json()] == [A]
    r = client.request("GET", "/status", json=[])
    assert [s["UID"] for s in r.json()] == [A]


def test_delete_evicts_and_forwards_bytes(make_client, plugin_mock):
    plugin_mock.get(f"{PLUGIN}/status").mock(return_value=httpx.Response(200, json=[status(A)]))
    delete = plugin_mock.post(f"{PLUGIN}/delete").mock(return_value=httpx.Response(200, text="gone"))
    client = make_client()
    client.request("GET", "/status", json=[pod(A)])
    raw = json.dumps(pod(A), indent=3).encode()
    r = client.request("DELETE", "/delete", content=raw,
                       headers={"InterLink-Http-Session": "DeletePod#1"})
    assert r.status_code == 200
    assert delete.calls.last.request.content == raw
    assert client.request("GET", "/status", json=[]).json() == []


def test_legacy_delete_answers_pod_status_array(make_client, plugin_mock):
    plugin_mock.post(f"{PLUGIN}/delete").mock(return_value=httpx.Response(200, text="gone"))
    r = make_client().request("DELETE", "/delete", json=pod(A, name="old"))
    assert r.json() == [{"name": "old", "UID": A, "namespace": "default", "containers": None}]


def test_update_cache_evicts_by_raw_uid_or_pod_json(make_client, plugin_mock):
    route = plugin_mock.get(f"{PLUGIN}/status").mock(return_value=httpx.Response(
        200, json=[status(A), status(B)]))
    client = make_client()
    client.request("GET", "/status", json=[pod(A, "Succeeded"), pod(B, "Succeeded")])
    assert client.post("/updateCache", content=A.encode()).text == "Updated cache"
    assert client.post("/updateCache", json=pod(B)).text == "Updated cache"
    assert client.request("GET", "/status", json=[]).json() == []
    assert route.call_count == 1


def test_current_ping_relays_plugin_status_and_body(make_client, plugin_mock):
    route = plugin_mock.get(f"{PLUGIN}/status").mock(return_value=httpx.Response(
        200, json=fixture("ping_response.json")))
    r = make_client().post("/pinglink", headers={"InterLink-Http-Session": "PingInterLink#1"})
    assert r.status_code == 200 and r.json() == fixture("ping_response.json")
    assert route.calls.last.request.content == b"[]"


def test_ping_plugin_down(make_client, plugin_mock):
    plugin_mock.get(f"{PLUGIN}/status").mock(side_effect=httpx.ConnectError("refused"))
    client = make_client()
    r = client.post("/pinglink", headers={"InterLink-Http-Session": "PingInterLink#1"})
    assert (r.status_code, r.text) == (500, "503")
    r = client.post("/pinglink")
    assert r.status_code == 500


def test_legacy_ping_answers_integer(make_client, plugin_mock):
    plugin_mock.get(f"{PLUGIN}/status").mock(return_value=httpx.Response(200, json={"status": "ok"}))
    r = make_client().post("/pinglink")
    assert (r.status_code, int(r.text)) == (200, 0)


def test_forced_profile_overrides_header(make_client, plugin_mock):
    plugin_mock.post(f"{PLUGIN}/delete").mock(return_value=httpx.Response(200, text="gone"))
    r = make_client(Profile="legacy").request(
        "DELETE", "/delete", json=pod(A), headers={"InterLink-Http-Session": "DeletePod#2"})
    assert isinstance(r.json(), list)


@pytest.mark.parametrize("opts, message", [
    ({"Tail": 5, "Bytes": 10}, "Both Tail and LimitBytes set"),
    ({"SinceSeconds": 5, "SinceTime": "2026-01-01T00:00:00Z"}, "Both SinceSeconds and SinceTime set"),
])
def test_log_option_conflicts_are_400_before_the_plugin(make_client, opts, message, plugin_mock):
    route = plugin_mock.get(f"{PLUGIN}/getLogs")
    body = {**fixture("logs_request_current.json"), "Opts": opts}
    r = make_client().request("GET", "/getLogs", json=body)
    assert r.status_code == 400 and message in r.text
    assert not route.called


@pytest.mark.parametrize("field, value, message", [
    ("Namespace", "../etc", "invalid namespace"),
    ("PodUID", "../../etc/passwd", "invalid pod UID"),
    ("ContainerName", "../../../etc", "invalid container name"),
])
def test_log_identifiers_validated(make_client, field, value, message, plugin_mock):
    body = {**fixture("logs_request_current.json"), field: value}
    r = make_client().request("GET", "/getLogs", json=body)
    assert r.status_code == 400 and message in r.text


def test_logs_relayed(make_client, plugin_mock):
    route = plugin_mock.get(f"{PLUGIN}/getLogs").mock(return_value=httpx.Response(200, text="a\nb\n"))
    r = make_client().request("GET", "/getLogs", json=fixture("logs_request_current.json"))
    assert r.status_code == 200 and r.text == "a\nb\n"
    sent = json.loads(route.calls.last.request.content)
    assert sent["Opts"]["SinceTime"] == "0001-01-01T00:00:00Z" and sent["Opts"]["Tail"] == 100


@pytest.mark.parametrize("path, body", [
    ("/create", b"{broken"),
    ("/create", b"[]"),
    ("/create", b'{"pod": {"metadata": {"name": "x"}}}'),
    ("/create", b'{"pod": "not an object"}'),
    ("/delete", b"[1,2]"),
    ("/delete", b""),
    ("/status", b'{"not": "a list"}'),
    ("/status", b'[{"metadata": {}}]'),
    ("/getLogs", b'{"Opts": {"Tail": "many"}}'),
])
def test_malformed_bodies_are_400_with_a_message(make_client, path, body, plugin_mock):
    r = make_client().request("POST", path, content=body)
    assert r.status_code == 400, r.text
    assert len(r.text) > 10


@pytest.mark.parametrize("spec, field", [
    ({"containers": [{"name": "c", "volumeMounts": "x"}]}, "spec.containers[0].volumeMounts"),
    ({"containers": [{"name": "c", "env": ["x"]}]}, "spec.containers[0].env[0]"),
    ({"containers": [{"name": "c", "env": [{"valueFrom": "x"}]}]},
     "spec.containers[0].env[0].valueFrom"),
    ({"containers": [{"name": "c", "envFrom": [{"secretRef": 5}]}]},
     "spec.containers[0].envFrom[0].secretRef"),
    ({"containers": [{"name": "c"}], "volumes": "x"}, "spec.volumes"),
    ({"containers": [{"name": "c", "volumeMounts": [{"name": "v"}]}],
      "volumes": [{"name": "v", "projected": {"sources": ["x"]}}]},
     "spec.volumes[0].projected.sources[0]"),
    ({"initContainers": [{"name": "i", "volumeMounts": [{"name": "v"}]}],
      "containers": [{"name": "c"}], "volumes": [{"name": "v", "configMap": []}]},
     "spec.volumes[0].configMap"),
])
def test_create_with_references_of_the_wrong_shape_is_400(make_client, plugin_mock, spec,
                                                          field):
    """These were 500s (an AttributeError while picking each container's ConfigMaps and
    Secrets); a body of the wrong shape is 400 naming the field, and the plugin is not called."""
    route = plugin_mock.post(f"{PLUGIN}/create")
    body = {"pod": {"metadata": {"name": "p", "namespace": "default", "uid": A}, "spec": spec}}
    r = make_client().post("/create", json=body)
    assert r.status_code == 400, r.text
    assert r.text.startswith(f"create request: pod {field} must be ")
    assert not route.called


def test_oversized_body_is_413(make_client, plugin_mock):
    client = make_client(MaxBodyBytes=2048)
    r = client.post("/create", content=b"x" * 5000)
    assert r.status_code == 413 and "MaxBodyBytes" in r.text


def test_metrics_and_health_are_open(make_client, plugin_mock):
    client = make_client()
    assert client.get("/healthz").text == "ok"
    text = client.get("/metrics").text
    assert "interlink_api_requests_total" in text and "interlink_api_status_cache_pods" in text
