"""PodCreateRequests -> RetrievedPodData: each container gets exactly the objects it uses."""

from __future__ import annotations

import json
from pathlib import Path

from interlink_api.pod_data import retrieved_pod_data
from interlink_common.wire import PodCreateRequests

FIXTURES = Path(__file__).parent.parent / "fixtures"


def load(name: str) -> PodCreateRequests:
    return PodCreateRequests.model_validate(json.loads((FIXTURES / name).read_text()))


def names(objs):
    return [o["metadata"]["name"] for o in objs or []]


def test_init_containers_come_first_and_empty_dirs_are_null():
    out = retrieved_pod_data(load("current_create_notebook.json")).to_wire()
    assert [c["name"] for c in out["container"]] == ["block-cloud-metadata", "notebook"]
    assert all(c["emptyDirs"] is None for c in out["container"])
    assert out["jobConfig"] == {}
    assert "jobScript" not in out


def test_volume_and_env_references_are_distributed_per_container():
    out = retrieved_pod_data(load("legacy_create_configmap_secret.json")).to_wire()
    (app,) = out["container"]
    assert names(app["configMaps"]) == ["app-config"]
    assert names(app["secrets"]) == ["db-creds"]
    # secret data stays base64, byte for byte
    assert app["secrets"][0]["data"]["password"] == "cyBwYXNzIHdpdGggc3BhY2VzICciCg=="


def test_projected_volume_gets_its_synthetic_map_and_referenced_config_map():
    out = retrieved_pod_data(load("current_create_serviceaccount.json")).to_wire()
    (main,) = out["container"]
    assert names(main["projectedvolumemaps"]) == ["kube-api-access-x7k2p"]
    assert names(main["configMaps"]) == ["kube-root-ca.crt"]
    assert main["projectedvolumemaps"][0]["data"]["namespace"] == "default"


def test_container_without_mounts_gets_nothing():
    req = load("legacy_create_configmap_secret.json")
    req.pod.spec["containers"].append({"name": "sidecar", "image": "busybox"})
    out = retrieved_pod_data(req).to_wire()
    side = out["container"][1]
    assert side == {"name": "sidecar", "configMaps": [], "projectedvolumemaps": [],
                    "secrets": [], "emptyDirs": None}


def test_export_pod_data_false_sends_no_objects():
    out = retrieved_pod_data(load("legacy_create_configmap_secret.json"),
                             export_pod_data=False).to_wire()
    assert out["container"][0]["configMaps"] is None
    assert out["container"][0]["secrets"] is None


def test_pod_is_passed_through_unchanged():
    raw = json.loads((FIXTURES / "current_create_notebook.json").read_text())
    out = retrieved_pod_data(PodCreateRequests.model_validate(raw)).to_wire()
    assert out["pod"] == raw["pod"]
