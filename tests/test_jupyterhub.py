"""JupyterHub for real: PyPI's jupyterhub with npm's configurable-http-proxy, a login, the
InterLinkSpawner, the API with OIDC, the sidecar on the real engine with (fake) GPUs, and the
locally built single-user image. Everything is done as a person's browser does it, through the
hub's public URL with cookies: log in, spawn (progress seen), work in the notebook through the
proxy, stop, start again, GPUs, and the two ways the hub reaches a notebook (a published port,
a tunnel opened by the pod's companion)."""

from __future__ import annotations

import html
import threading
import time
import uuid
from typing import Any

import pytest

from fake_gpus import dockerd_can_do_gpus, nvml_env
from hub import Browser, Hub, docker_bridge_address
from oidc_issuer import start_issuer
from procs import start_oidc_api
from sidecars import start_test_sidecar
from tunnel.tunnel_server import start_tunnel_server

GPUS = [f"GPU-{uuid.UUID(int=i + 0x1000)}" for i in range(2)]
GROUPS = {"wlcg.groups": ["/interlink"]}
PORTS = (32100, 32139)  # the spawner's range, inside the sidecar's PublishPortRange
TUNNEL_HOST = "127.0.0.2"  # the tunnel's public end: an address nothing publishes on


@pytest.fixture(scope="module")
def node(docker_client, tmp_path_factory):
    """The GPU node: a sidecar that publishes ports on loopback and runs tunnel companions."""
    dockerd_can_do_gpus(docker_client)
    tmp = tmp_path_factory.mktemp("hubnode")
    env, lib = nvml_env(tmp, GPUS)
    sc = start_test_sidecar(tmp, docker_client, env=env, policy={
        "PublishPorts": True, "PublishAddress": "127.0.0.1",
        "PublishPortRange": f"{PORTS[0]}-{PORTS[1]}",
        "TunnelImage": "interlink-test/tunnel:1",
        "GPU": {"Enabled": "on", "NVMLLibrary": lib, "WhenFull": "queue"}})
    yield sc
    sc.proc.stop()
    sc.cleanup()


@pytest.fixture(scope="module")
def api(node, tmp_path_factory):
    issuer = start_issuer()
    tmp = tmp_path_factory.mktemp("hubapi")
    proc = start_oidc_api(tmp, node.proc.base, issuer.url)
    token_file = tmp / "hub-token"
    token_file.write_text(issuer.token({**GROUPS, "exp": int(time.time()) + 3600}))
    token_file.chmod(0o600)
    yield proc, token_file
    proc.stop()
    issuer.stop()


@pytest.fixture(scope="module")
def tunnel():
    server = start_tunnel_server(docker_bridge_address(), public_host=TUNNEL_HOST)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(api, tunnel, tmp_path_factory):
    proc, token_file = api
    tunnel_command = (f"interlink-test-tunnel --server {docker_bridge_address()}:"
                      f"{tunnel.control_port} --remote-port {{remote_port}} "
                      "--local 127.0.0.1:{port}")
    gpu = {"extra_resource_limits": {"nvidia.com/gpu": "1"}}
    profiles = [
        {"display_name": "CPU", "slug": "cpu", "default": True},
        {"display_name": "One GPU", "slug": "gpu", "kubespawner_override": gpu},
        {"display_name": "Three GPUs", "slug": "three-gpus",
         "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "3"}}},
        {"display_name": "CPU, through a tunnel", "slug": "tunnel",
         "kubespawner_override": {"tunnel_command": tunnel_command,
                                  "tunnel_connect_host": TUNNEL_HOST}},
    ]
    # What a notebook sees of its GPUs, written where the user can read it (their home).
    record_gpus = {"postStart": {"exec": {"command": [
        "sh", "-c", 'printf %s "$NVIDIA_VISIBLE_DEVICES" > /home/jovyan/gpus.txt']}}}
    h = Hub(tmp_path_factory.mktemp("hub"), f"""
c.InterLinkSpawner.interlink_url = {proc.base!r}
c.InterLinkSpawner.interlink_token_file = {str(token_file)!r}
c.InterLinkSpawner.node_address = "127.0.0.1"
c.InterLinkSpawner.port_range = {PORTS!r}
c.InterLinkSpawner.status_interval = 0.5
c.KubeSpawner.image = "interlink-test/singleuser:1"
c.KubeSpawner.uid = 1000
c.KubeSpawner.fs_gid = 100
c.KubeSpawner.delete_grace_period = 0
c.KubeSpawner.volumes = [{{"name": "home", "persistentVolumeClaim": {{"claimName": "{{pvc_name}}"}}}}]
c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
c.KubeSpawner.lifecycle_hooks = {record_gpus!r}
c.KubeSpawner.profile_list = {profiles!r}
""")
    yield h
    h.stop()


def spawned(browser: Browser, profile: str) -> list[dict[str, Any]]:
    r = browser.spawn(profile)
    assert r.status_code == 302, (r.status_code, r.text[:500])
    events = browser.progress()
    assert events[-1].get("ready"), events
    return events


def pod_of(node, name: str) -> list[Any]:
    return node.docker.containers.list(all=True, filters={
        "label": f"io.interlink.managed={node.instance}", "name": f"_jupyter-{name}_"})


def test_log_in_spawn_work_stop_and_start_again_with_the_home_kept(hub, node, api) -> None:
    alice = Browser(hub, "alice")
    alice.login()
    events = spawned(alice, "cpu")
    messages = [e.get("message", "") for e in events]
    assert any(m.startswith("sending pod default/jupyter-alice to ") for m in messages)
    assert any(m.startswith("the node accepted the pod (port 321") for m in messages)
    assert any(m.startswith("server ready at http://127.0.0.1:321") for m in messages)

    alice.open_notebook()
    r = alice.put_file("hello.txt", "written through the hub\n")
    assert r.status_code in (200, 201), r.text
    assert alice.get_file("hello.txt").json()["content"] == "written through the hub\n"

    # On the node: the claim's directory, the fsGroup's as the kubelet leaves a fresh volume
    # (group 100, writable by it, set-group-id), and the user's file in it.
    home = node.data_root / "claims" / "default" / "claim-alice"
    st = (home / "hello.txt").stat()
    assert (st.st_uid, st.st_gid) == (1000, 100)
    d = home.stat()
    assert d.st_gid == 100 and d.st_mode & 0o2070 == 0o2070, oct(d.st_mode)

    alice.stop_server()
    assert pod_of(node, "alice") == []  # every container of the pod is gone
    assert (home / "hello.txt").read_text() == "written through the hub\n"

    spawned(alice, "cpu")
    alice.open_notebook()
    assert alice.get_file("hello.txt").json()["content"] == "written through the hub\n"

    # Shut down from inside the notebook: the hub's poll sees it ended, and the pod goes.
    alice.shut_down_from_inside()
    deadline = time.monotonic() + 60
    while alice.server_state() is not None or pod_of(node, "alice"):
        assert time.monotonic() < deadline, (alice.server_state(), pod_of(node, "alice"))
        time.sleep(0.5)
    alice.close()


def test_gpu_users_each_see_their_own_gpu_and_a_third_waits_in_line(hub, node) -> None:
    users = {n: Browser(hub, n) for n in ("gina", "hugo", "iris")}
    for b in users.values():
        b.login()
    seen: dict[str, str] = {}
    for n in ("gina", "hugo"):
        spawned(users[n], "gpu")
        users[n].open_notebook()
        seen[n] = users[n].get_file("gpus.txt").json()["content"]
    assert sorted(seen.values()) == sorted(GPUS)  # one each, never the same one

    # Both GPUs taken: the third user is told they wait for one, then gets the freed one.
    iris = users["iris"]
    assert iris.spawn("gpu").status_code == 302
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=iris.progress, kwargs={"events": events}, daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while not any("all GPUs are in use; waiting for 1 nvidia.com/gpu" in e.get("message", "")
                  for e in list(events)) and reader.is_alive():
        assert time.monotonic() < deadline, events
        time.sleep(0.3)
    if not reader.is_alive():
        pytest.fail(f"the spawn ended before the GPU was freed: {events}")
    users["gina"].stop_server()
    reader.join(120)
    assert events and events[-1].get("ready"), events
    iris.open_notebook()
    assert iris.get_file("gpus.txt").json()["content"] == seen["gina"]

    for n in ("hugo", "iris"):
        users[n].stop_server()
    for b in users.values():
        b.close()


def test_a_spawn_the_node_refuses_shows_the_user_why(hub) -> None:
    jack = Browser(hub, "jack")
    jack.login()
    r = jack.spawn("three-gpus")
    # The refusal comes at once: the hub answers the form with its error page; had it come
    # later, the spawn-pending page's progress stream would have carried it.
    if r.status_code == 302:
        events = jack.progress()
        assert events[-1].get("failed"), events
        shown = events[-1]["message"]
    else:
        assert r.status_code == 500, r.status_code
        shown = html.unescape(r.text)
    assert "the node refused the server (HTTP 422)" in shown and "3 nvidia.com/gpu" in shown
    assert jack.server_state() is None
    jack.close()


def test_a_notebook_reached_through_its_tunnel_companion(hub, node, tunnel) -> None:
    kim = Browser(hub, "kim")
    kim.login()
    events = spawned(kim, "tunnel")
    ready = next(e["message"] for e in events if e.get("message", "").startswith("server ready"))
    port = int(ready.rsplit(":", 1)[1])
    assert ready == f"server ready at http://{TUNNEL_HOST}:{port}"
    assert port in tunnel.registered()
    # The companion shares the notebook's network namespace and is not one of its containers.
    (infra,) = [c for c in pod_of(node, "kim") if c.labels.get("io.interlink.container.role") == "infra"]
    (companion,) = [c for c in pod_of(node, "kim") if c.labels.get("io.interlink.container.role")
                    == "tunnel"]
    assert companion.attrs["HostConfig"]["NetworkMode"] == f"container:{infra.id}"
    kim.open_notebook()
    assert kim.put_file("via-tunnel.txt", "x").status_code in (200, 201)
    kim.stop_server()
    assert pod_of(node, "kim") == []
    deadline = time.monotonic() + 15
    while port in tunnel.registered():
        assert time.monotonic() < deadline, "the tunnel outlived its pod"
        time.sleep(0.2)
    kim.close()
