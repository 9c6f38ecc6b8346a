"""Whole pods through the real API server and the real sidecar, as the VK drives them."""

from __future__ import annotations

import json
import time

import pytest

from kube import container, pod, secret, state_of, vk_phase
from procs import start_api
from raw_http import go_request, send


@pytest.fixture(scope="module")
def stack(sidecar, tmp_path_factory):
    host, port = sidecar.proc.base.rsplit(":", 1)
    api = start_api(tmp_path_factory.mktemp("api"), {"SidecarURL": host,
                                                     "SidecarPort": int(port)})
    yield api
    api.stop()


def vk(api, method: str, path: str, body, session: str | None):
    raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return send(api.base, go_request(method, path, api.base.split("://")[1], raw, token="t",
                                     session=session), timeout=60)


def notebook_pod(name: str) -> dict:
    p = pod(name, [container(
        "notebook", "mkdir -p /srv/user; echo ok > /srv/user/api; sleep 1; "
                    "exec httpd -f -p 8888 -h /srv",
        ports=[{"name": "notebook-port", "containerPort": 8888, "protocol": "TCP"}],
        env=[{"name": "JUPYTERHUB_SERVICE_URL", "value": "http://0.0.0.0:8888/user/alice/"},
             {"name": "JUPYTERHUB_API_TOKEN",
              "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}],
        readinessProbe={"httpGet": {"path": "/user/api", "port": "notebook-port"},
                        "periodSeconds": 1},
        volumeMounts=[{"name": "home", "mountPath": "/home/jovyan"}],
        resources={"limits": {"cpu": "1", "memory": "256Mi"},
                   "requests": {"cpu": "100m", "memory": "64Mi"}})],
        restart="OnFailure", namespace="jhub",
        volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": f"claim-{name}"}}])
    return p


def test_current_vk_runs_a_notebook_pod(stack):
    p = notebook_pod("jupyter-alice")
    create = {"pod": p, "configmaps": None,
              "secrets": [secret("hub-token", {"token": "s3cr3t-t0ken"}, namespace="jhub")],
              "projectedvolumesmaps": [], "jobscriptURL": ""}

    r = vk(stack, "POST", "/pinglink", None, "PingInterLink#1")
    assert r.status == 200 and json.loads(r.body)["status"] == "ok"

    r = vk(stack, "POST", "/create", create, "CreatePod#2")
    assert r.status == 200
    assert json.loads(r.body)["PodUID"] == p["metadata"]["uid"]

    deadline = time.monotonic() + 60
    n = 3
    while True:
        p["status"] = {"phase": "Pending"}
        r = vk(stack, "GET", "/status", [p], f"GetPodStatus#{n}")
        n += 1
        statuses = json.loads(r.body)
        if statuses and vk_phase(statuses[0]) == "Running" and all(
                c["ready"] for c in statuses[0]["containers"]):
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.5)
    notebook = state_of(statuses[0], "notebook")
    assert notebook["state"]["running"]["startedAt"].endswith("Z")

    logs = {"Namespace": "jhub", "PodUID": p["metadata"]["uid"], "PodName": "jupyter-alice",
            "ContainerName": "notebook", "Opts": {"Tail": 10}}
    r = vk(stack, "GET", "/getLogs", logs, "GetLogs#90")
    assert r.status == 200

    r = vk(stack, "DELETE", "/delete", p, "DeletePod#91")
    assert r.status == 200
    r = vk(stack, "GET", "/status", [p], "GetPodStatus#92")
    gone = json.loads(r.body)[0]
    assert vk_phase(gone) == "Failed"
    assert state_of(gone, "notebook")["state"]["terminated"]["reason"] == "NotFound"


def test_legacy_vk_runs_and_deletes_a_pod(stack):
    p = pod("legacy-job", [container("main", "echo legacy-ok")], namespace="default")
    r = vk(stack, "POST", "/pinglink", None, None)
    assert (r.status, r.body) == (200, b"0")
    r = vk(stack, "POST", "/create", {"pod": p, "configmaps": [], "secrets": []}, None)
    assert r.status == 200
    deadline = time.monotonic() + 30
    while True:
        r = vk(stack, "GET", "/status", [p], None)
        statuses = json.loads(r.body)
        if statuses and vk_phase(statuses[0]) == "Succeeded":
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.3)
    logs = {"Namespace": "default", "PodUID": p["metadata"]["uid"], "PodName": "legacy-job",
            "ContainerName": "main", "Opts": {}}
    assert vk(stack, "GET", "/getLogs", logs, None).body == b"legacy-ok\n"
    r = vk(stack, "DELETE", "/delete", p, None)
    assert r.status == 200 and json.loads(r.body)[0]["UID"] == p["metadata"]["uid"]


def test_refused_pod_reaches_the_vk_with_the_sidecar_message(stack):
    p = pod("needs-root", [container("main", "true", securityContext={"privileged": True})],
            namespace="jhub")
    r = vk(stack, "POST", "/create", {"pod": p, "configmaps": None, "secrets": None,
                                      "projectedvolumesmaps": None, "jobscriptURL": ""},
           "CreatePod#1")
    assert r.status == 422
    text = r.body.decode()
    assert "jhub/needs-root" in text and "Sidecar.AllowPrivileged" in text
