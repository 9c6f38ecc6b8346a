"""Upstream's vk-test-set, re-expressed (tests/conformance/), run through the real interlink-api
and docker-sidecar on the real Docker Engine, once as the current VK drives them and once as
the legacy VK does. docs/CONFORMANCE.md lists every template and its status here."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest
from conformance import cases
from conformance.cluster import SA_MOUNT_PATH, Cluster
from conformance.images import IMAGE_MAP, local_image
from conformance.runner import Run
from conformance.vk import VirtualKubelet
from procs import ROOT, start_api

PROFILES = ("current", "legacy")


@pytest.fixture(scope="module")
def api(sidecar, tmp_path_factory):
    host, port = sidecar.proc.base.rsplit(":", 1)
    proc = start_api(tmp_path_factory.mktemp("conformance-api"),
                     {"SidecarURL": host, "SidecarPort": int(port)})
    yield proc
    proc.stop()


class Cleanup:
    """Clean-up deletes run in the background while the next case runs; all are waited for
    before the sidecar goes away."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.futures: list = []

    def add(self, run: Run) -> None:
        self.futures.extend(run.cleanup(self.pool))

    def close(self) -> None:
        wait(self.futures, timeout=120)
        self.pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def cleanup(sidecar):
    c = Cleanup()
    yield c
    c.close()


@pytest.mark.docker
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("template", cases.IMPLEMENTED)
def test_upstream_template(template, profile, api, sidecar, cleanup):
    case = cases.module(template).build(str(uuid.uuid4()))
    cluster = Cluster()
    run = Run(case, VirtualKubelet(api.base, cluster, profile), cluster,
              diagnostics=lambda: sidecar.proc.output() + "\n--- api log\n" + api.output())
    try:
        run.run()
    finally:
        cleanup.add(run)


def test_every_upstream_template_is_run_or_excluded_with_a_reason():
    implemented, excluded = set(cases.IMPLEMENTED), set(cases.EXCLUDED)
    assert not implemented & excluded
    assert excluded == set(cases.UPSTREAM_TEMPLATES) - implemented, (
        "every upstream template not implemented must be in EXCLUDED, with its reason")
    assert implemented <= set(cases.UPSTREAM_TEMPLATES)
    for template, reason in cases.EXCLUDED.items():
        assert "egress" in reason or "FUSE" in reason, (template, reason)
    for template in cases.IMPLEMENTED:
        case = cases.module(template).build("x")
        for p in case.pods + [j.template for j in case.jobs]:
            for c in p["spec"].get("initContainers", []) + p["spec"]["containers"]:
                local_image(c["image"])  # every image has a local stand-in


def test_the_list_of_upstream_templates_is_current():
    """With a checkout or git mirror of interlink-hq/vk-test-set in $VK_TEST_SET_REPO, the list
    above must match its templates; without one there is nothing to compare."""
    repo = os.environ.get("VK_TEST_SET_REPO")
    if not repo:
        return
    listing = subprocess.run(["git", "-C", repo, "ls-tree", "--name-only", "HEAD",
                              "vktestset/templates/"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert sorted(Path(p).name for p in listing if p.endswith(".yaml")) == sorted(
        cases.UPSTREAM_TEMPLATES)


def test_docs_cover_every_upstream_template():
    doc = (ROOT / "docs" / "CONFORMANCE.md").read_text()
    for template in cases.UPSTREAM_TEMPLATES:
        assert f"`{template}`" in doc, template


def test_image_map_only_names_images_build_sh_builds():
    script = (ROOT / "tests" / "images" / "build.sh").read_text()
    for _, local in IMAGE_MAP:
        assert local in script, local


# --- the two VKs' create requests, without Docker ----------------------------------------------


def _admitted(profile: str):
    case = cases.module("080-configmap-secret-env.yaml").build("u")
    cluster = Cluster()
    for cm in case.config_maps:
        cluster.add_config_map(cm)
    for s in case.secrets:
        cluster.add_secret(s)
    pod = cluster.admit(case.pods[0])
    return VirtualKubelet("http://127.0.0.1:1", cluster, profile), pod


def test_current_vk_sends_resolved_env_and_the_service_account_volume():
    vk, pod = _admitted("current")
    body = vk.create_request(pod)
    assert list(body) == ["pod", "configmaps", "secrets", "projectedvolumesmaps",
                          "jobscriptURL"]
    c = body["pod"]["spec"]["containers"][0]
    assert all("valueFrom" not in e for e in c["env"])
    assert {e["name"]: e["value"] for e in c["env"]}["DB_PASSWORD"] == "super-secret-password"
    assert body["configmaps"] is None and body["secrets"] is None  # no volume names them
    volume = next(v for v in body["pod"]["spec"]["volumes"]
                  if v["name"].startswith("kube-api-access-"))
    assert {"name": volume["name"], "readOnly": True, "mountPath": SA_MOUNT_PATH} in \
        c["volumeMounts"]
    (projected,) = body["projectedvolumesmaps"]
    assert projected["metadata"]["name"] == volume["name"]
    assert set(projected["data"]) == {"token", "ca.crt", "namespace"}
    assert projected["data"]["namespace"] == pod["metadata"]["namespace"]
    ca = projected["data"]["ca.crt"]
    assert ca.startswith("-----BEGIN CERTIFICATE-----\n") and ca.count("\n") > 10
    assert len(projected["data"]["token"].split(".")) == 3


def test_legacy_vk_sends_references_and_the_objects():
    vk, pod = _admitted("legacy")
    body = vk.create_request(pod)
    assert list(body) == ["pod", "configmaps", "secrets"]
    env = body["pod"]["spec"]["containers"][0]["env"]
    assert all("valueFrom" in e for e in env)
    assert sorted(cm["metadata"]["name"] for cm in body["configmaps"]) == [
        "kube-root-ca.crt", "test-config-u"]
    (secret,) = body["secrets"]
    assert base64.b64decode(secret["data"]["token"]) == b"bearer-token-xyz789"
    assert "stringData" not in secret
    json.dumps(body)
