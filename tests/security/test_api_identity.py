"""A tenant who can shape the VK's requests (or reach the API directly) sends pod identities
Kubernetes would never make: path traversal in a UID, slashes in a namespace, shell in a
container name. The real API process must answer 400 naming the field, and forward nothing."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs import Proc, start_api
from raw_http import go_request, send

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOOD = json.loads((FIXTURES / "legacy_create_configmap_secret.json").read_text())
GOOD_UID = GOOD["pod"]["metadata"]["uid"]


@pytest.fixture
def api(tmp_path: Path, plugin: Any) -> Iterator[Proc]:
    host, port = plugin.base.rsplit(":", 1)
    proc = start_api(tmp_path, {"SidecarURL": host, "SidecarPort": int(port)})
    yield proc
    proc.stop()


def call(api: Proc, method: str, path: str, body: bytes) -> Any:
    return send(api.base, go_request(method, path, api.base.split("://", 1)[1], body,
                                     token="t", session="CreatePod#1"))


def with_change(obj: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with the value at ``a.b.0.c`` replaced."""
    out = copy.deepcopy(obj)
    *parents, last = dotted.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return out


BAD_CREATES = [
    ("pod.metadata.uid", "../../../../etc/cron.d/x", "metadata.uid"),
    ("pod.metadata.uid", "5D3E2C1B-6A7F-4E8D-9C0B-1A2B3C4D5E6F", "metadata.uid"),
    ("pod.metadata.uid", "", "metadata.uid"),
    ("pod.metadata.namespace", "../root", "metadata.namespace"),
    ("pod.metadata.namespace", "Team-A", "metadata.namespace"),
    ("pod.metadata.name", "x/../../y", "metadata.name"),
    ("pod.metadata.name", "a" * 254, "metadata.name"),
    ("pod.spec.containers.0.name", "app;rm -rf /", "spec.containers[0].name"),
    ("pod.spec.initContainers", [{"name": "../init", "image": "busybox"}],
     "spec.initContainers[0].name"),
]


@pytest.mark.parametrize("field, value, named", BAD_CREATES)
def test_create_with_a_forged_identity_is_refused(api: Proc, plugin: Any, field: str,
                                                  value: Any, named: str) -> None:
    body = json.dumps(with_change(GOOD, field, value)).encode()
    r = call(api, "POST", "/create", body)
    assert r.status == 400, r.body
    text = r.body.decode()
    assert text.startswith("create request: pod ") and named in text
    assert "DNS-1123" in text or "UUID" in text  # the rule, so the sender can fix it
    assert plugin.requests() == []
    # The control: the same request, untouched, reaches the plugin.
    assert call(api, "POST", "/create", json.dumps(GOOD).encode()).status == 200
    assert [q["path"] for q in plugin.requests()] == ["/create"]


@pytest.mark.parametrize("field, value, named", [
    ("metadata.uid", "../x", "metadata.uid"),
    ("metadata.namespace", "a/b", "metadata.namespace"),
    ("metadata.name", "UPPER", "metadata.name"),
])
def test_delete_with_a_forged_identity_is_refused(api: Proc, plugin: Any, field: str,
                                                  value: Any, named: str) -> None:
    r = call(api, "DELETE", "/delete", json.dumps(with_change(GOOD["pod"], field, value)).encode())
    assert r.status == 400, r.body
    assert r.body.decode().startswith("delete request: pod ") and named in r.body.decode()
    assert plugin.requests() == []


@pytest.mark.parametrize("field, value, named", [
    ("metadata.uid", "*", "metadata.uid"),
    ("metadata.uid", 42, "metadata.uid"),
    ("metadata.namespace", "../../var", "metadata.namespace"),
    ("metadata.name", "a b", "metadata.name"),
])
def test_status_with_a_forged_identity_is_refused(api: Proc, plugin: Any, field: str,
                                                  value: Any, named: str) -> None:
    """Even behind a valid pod in the same batch: nothing of the batch is forwarded."""
    bad = with_change(GOOD["pod"], field, value)
    r = call(api, "GET", "/status", json.dumps([GOOD["pod"], bad]).encode())
    assert r.status == 400, r.body
    text = r.body.decode()
    assert text.startswith("status request: pod [1] ") and named in text
    assert "DNS-1123" in text or "UUID" in text
    assert plugin.requests() == []
    # Only the UID is required in a status request; namespace and name when present.
    r = call(api, "GET", "/status", json.dumps([{"metadata": {"uid": GOOD_UID}}]).encode())
    assert r.status == 200, r.body


@pytest.mark.parametrize("body", [
    b"../../etc/passwd",                                      # legacy: raw bytes
    json.dumps("not-a-uid").encode(),                         # a JSON string
    json.dumps({"metadata": {"uid": "../x", "name": "p", "namespace": "ns"}}).encode(),
    b"",
])
def test_update_cache_with_a_forged_uid_is_refused(api: Proc, plugin: Any,
                                                   body: bytes) -> None:
    r = call(api, "POST", "/updateCache", body)
    assert r.status == 400, r.body
    assert "updateCache request:" in r.body.decode() and "UUID" in r.body.decode()
    assert plugin.requests() == []
    # What the VKs send still works: legacy raw UID bytes, current the pod.
    for good in (GOOD_UID.encode(), json.dumps(GOOD["pod"]).encode()):
        assert call(api, "POST", "/updateCache", good).body == b"Updated cache"


@pytest.mark.parametrize("path", ["/create", "/delete", "/status", "/getLogs", "/updateCache"])
def test_a_body_nested_past_the_parser_is_400_not_a_crash(api: Proc, plugin: Any,
                                                          path: str) -> None:
    r = call(api, "POST", path, b"[" * 100_000)
    assert r.status == 400, r.body[:300]
    assert len(r.body) < 2000  # the message does not echo the body back
    assert plugin.requests() == []
    assert "Traceback" not in api.output()


@pytest.mark.parametrize("status", ["Running", 7, [], {"phase": ["Running"]}])
def test_status_with_a_pod_status_of_the_wrong_type_is_served(api: Proc, plugin: Any,
                                                              status: Any) -> None:
    body = json.dumps([{"metadata": {"uid": GOOD_UID, "namespace": "default", "name": "p"},
                        "status": status}]).encode()
    r = call(api, "GET", "/status", body)
    assert r.status == 200, r.body
    assert "Traceback" not in api.output()
