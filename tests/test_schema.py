"""The OpenAPI documents both real services publish (``/openapi.json``): every route with the
methods the VK and the API server send, and request schemas the real bodies fit (the golden VK
bodies of both generations in tests/fixtures/, and what the API server itself sends on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from procs import Proc, start_api

FIXTURES = Path(__file__).parent / "fixtures"

API_ROUTES = {
    "/create": ["post"], "/delete": ["delete"], "/status": ["get"], "/getLogs": ["get"],
    "/pinglink": ["post"], "/updateCache": ["post"],
    "/healthz": ["get"], "/readyz": ["get"], "/metrics": ["get"],
}
SIDECAR_ROUTES = {
    "/create": ["post"], "/delete": ["post"], "/status": ["get"], "/getLogs": ["get"],
    "/healthz": ["get"], "/metrics": ["get"], "/gpus": ["get"],
}
CREATE_FIXTURES = sorted(p.name for p in FIXTURES.glob("*_create_*.json"))


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def api(tmp_path_factory, fake_plugin) -> Iterator[Proc]:
    host, port = fake_plugin.base.rsplit(":", 1)
    proc = start_api(tmp_path_factory.mktemp("api"), {"SidecarURL": host,
                                                      "SidecarPort": int(port)})
    yield proc
    proc.stop()


def document(proc: Proc) -> dict[str, Any]:
    with proc.client(timeout=10) as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


@pytest.fixture(scope="module")
def api_doc(api: Proc) -> dict[str, Any]:
    return document(api)


@pytest.fixture(scope="module")
def sidecar_doc(sidecar) -> dict[str, Any]:
    return document(sidecar.proc)


def listed(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {path: sorted(ops) for path, ops in doc["paths"].items()}


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema validator for one schema of the document (its $refs resolved in it)."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def request_schema(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def reply_schema(doc: dict[str, Any], path: str, method: str, code: str = "200",
                 media: str = "application/json") -> dict[str, Any]:
    return doc["paths"][path][method]["responses"][code]["content"][media]["schema"]


def assert_valid(check: Any, instance: Any, what: str) -> None:
    errors = [f"{e.instance_path}: {e.message}" for e in check.iter_errors(instance)]
    assert not errors, f"{what}: {errors[:5]}"


def test_api_document_lists_every_route_with_the_vk_methods(api_doc: dict[str, Any]) -> None:
    assert api_doc["openapi"].startswith("3.1")
    assert api_doc["info"]["title"] == "interLink API server"
    assert listed(api_doc) == API_ROUTES
    create = api_doc["paths"]["/create"]["post"]
    # The session header is declared, with how it tells the VK generations apart.
    assert any(p["name"] == "InterLink-Http-Session" and p["in"] == "header"
               and "legacy" in p["description"] for p in create["parameters"])
    for code in ("200", "400", "413", "415", "421", "500", "default"):
        assert code in create["responses"], code
    assert "429" in api_doc["paths"]["/getLogs"]["get"]["responses"]
    assert "502" in api_doc["paths"]["/status"]["get"]["responses"]
    assert "security" not in create  # no OIDC configured: nothing to send


def test_api_still_serves_every_method_on_vk_routes(api: Proc) -> None:
    """Listed methods are the VKs'; the others are served the same (upstream's router)."""
    body = json.dumps({"metadata": {"uid": "not-a-uuid"}})
    with api.client(timeout=10, headers={"Content-Type": "application/json"}) as c:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            r = c.request(method, "/updateCache", content=body)
            assert r.status_code == 400 and "uid" in r.text, (method, r.text)


def test_docs_page_is_served(api: Proc) -> None:
    with api.client(timeout=10) as c:
        r = c.get("/docs")
    assert r.status_code == 200 and "/openapi.json" in r.text


@pytest.mark.parametrize("name", CREATE_FIXTURES)
def test_vk_create_bodies_fit_the_create_schema(api_doc: dict[str, Any], name: str) -> None:
    """Both VK generations' /create bodies, as an object and as a one-element array."""
    check = validator(api_doc, request_schema(api_doc, "/create", "post"))
    body = fixture(name)
    assert_valid(check, body, name)
    assert_valid(check, [body], f"[{name}]")
    assert not check.is_valid({"configmaps": []})  # no pod: the schema is not vacuous
    assert not check.is_valid([body, body])


def test_vk_status_logs_and_delete_bodies_fit(api_doc: dict[str, Any]) -> None:
    pods = [fixture(n)["pod"] for n in CREATE_FIXTURES]
    assert_valid(validator(api_doc, request_schema(api_doc, "/status", "get")), pods, "status")
    assert_valid(validator(api_doc, request_schema(api_doc, "/delete", "delete")), pods[0],
                 "delete")
    logs = validator(api_doc, request_schema(api_doc, "/getLogs", "get"))
    assert_valid(logs, fixture("logs_request_current.json"), "getLogs")
    assert not logs.is_valid({"Opts": {"Tail": "many"}})
    cache = validator(api_doc, request_schema(api_doc, "/updateCache", "post"))
    assert_valid(cache, pods[0], "updateCache pod")
    assert_valid(cache, pods[0]["metadata"]["uid"], "updateCache UID string")


def test_api_answers_fit_its_reply_schemas(api: Proc, api_doc: dict[str, Any],
                                           plugin) -> None:
    """What the API answers the current VK, checked against what it documents."""
    body = fixture("current_create_notebook.json")
    pod = {**body["pod"], "status": {"phase": "Running"}}
    hdr = {"Content-Type": "application/json", "InterLink-Http-Session": "CreatePod#1"}
    with api.client(timeout=10, headers=hdr) as c:
        created = c.post("/create", json=body)
        statuses = c.request("GET", "/status", json=[pod])
        ping = c.post("/pinglink")
    assert created.status_code == statuses.status_code == ping.status_code == 200
    assert_valid(validator(api_doc, reply_schema(api_doc, "/create", "post")), created.json(),
                 "create reply")
    assert_valid(validator(api_doc, reply_schema(api_doc, "/status", "get")), statuses.json(),
                 "status reply")
    assert_valid(validator(api_doc, reply_schema(api_doc, "/pinglink", "post")), ping.json(),
                 "ping reply")


def test_sidecar_document_lists_every_route(sidecar_doc: dict[str, Any]) -> None:
    assert sidecar_doc["openapi"].startswith("3.1")
    assert sidecar_doc["info"]["title"] == "interLink Docker sidecar"
    assert listed(sidecar_doc) == SIDECAR_ROUTES
    assert "422" in sidecar_doc["paths"]["/create"]["post"]["responses"]
    assert "404" in sidecar_doc["paths"]["/getLogs"]["get"]["responses"]
    assert "security" not in sidecar_doc["paths"]["/create"]["post"]  # no token configured


def test_what_the_api_sends_fits_the_sidecar_schemas(api: Proc, plugin,
                                                     sidecar_doc: dict[str, Any]) -> None:
    """The API server's /create, /status, /delete and /getLogs bodies, as the plugin received
    them, fit the plugin API our sidecar documents: the two documents agree."""
    hdr = {"Content-Type": "application/json", "InterLink-Http-Session": "CreatePod#1"}
    legacy = fixture("legacy_create_two_containers.json")
    current = fixture("current_create_serviceaccount.json")
    with api.client(timeout=10, headers={"Content-Type": "application/json"}) as c:
        assert c.post("/create", json=legacy).status_code == 200
        assert c.post("/create", json=current, headers=hdr).status_code == 200
        pod = {**current["pod"], "status": {"phase": "Running"}}
        assert c.request("GET", "/status", json=[pod]).status_code == 200
        assert c.request("GET", "/getLogs", json=fixture("logs_request_current.json")
                         ).status_code == 200
        assert c.request("DELETE", "/delete", json=current["pod"]).status_code == 200
    checks = {path: validator(sidecar_doc, request_schema(sidecar_doc, path, method))
              for path, method in (("/create", "post"), ("/status", "get"),
                                   ("/getLogs", "get"), ("/delete", "post"))}
    seen = plugin.requests()
    assert [q["path"] for q in seen] == ["/create", "/create", "/status", "/getLogs",
                                         "/delete"]
    for q in seen:
        assert_valid(checks[q["path"]], json.loads(q["body"]), f"{q['method']} {q['path']}")


def test_sidecar_status_reply_fits(sidecar_doc: dict[str, Any]) -> None:
    check = validator(sidecar_doc, reply_schema(sidecar_doc, "/status", "get"))
    assert_valid(check, fixture("plugin_status_reply.json"), "status reply")
    assert_valid(check, fixture("ping_response.json"), "ping reply")
