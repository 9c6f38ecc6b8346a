"""Reachability on the real engine: the tunnel companion shares the pod's localhost, stays out
of the status and comes back when it dies; Sidecar.PublishPorts makes a containerPort
reachable on the node's address, refuses a second pod on the same port, and frees the port
when the pod goes; a sidecar restart finds the companion again by its labels."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import start_test_sidecar
from interlink_spawner.spawner import PORT_CLASH
from kube import container, create_body, pod, state_of
from procs import free_port

BUSYBOX = "interlink-test/busybox:1"
ANNOTATION = "interlink.eu/wstunnel-client-commands"


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tunnel_sidecar(sidecar_factory):
    return sidecar_factory(policy={"TunnelImage": BUSYBOX})


def notebook_with_tunnel(name: str, port: int) -> dict[str, Any]:
    """A notebook serving on its localhost only, and a tunnel command (ending in '&', as the
    VK's) that fetches from that localhost and prints what it got."""
    p = pod(name, [container("notebook", f"mkdir -p /tmp/www; echo hello-{name} > "
                                         f"/tmp/www/i; httpd -f -p 127.0.0.1:{port} -h /tmp/www",
                             ports=[{"containerPort": port}])],
            restart="Never", securityContext={"runAsUser": 1000, "runAsGroup": 100})
    p["metadata"]["annotations"][ANNOTATION] = (
        f"echo uid=$(id -u); until wget -q -O - http://127.0.0.1:{port}/i; do sleep 0.2; "
        "done; sleep 3600 &")
    return p


def test_the_companion_shares_the_notebooks_localhost_and_is_not_in_the_status(
        tunnel_sidecar):
    sc = tunnel_sidecar
    port = free_port()
    p = notebook_with_tunnel("tun-a", port)
    sc.run(create_body(p))
    tunnel = sc.container(p, "TUNNEL")
    logs = until(lambda: b"hello-tun-a" in tunnel.logs(stderr=False)
                 and tunnel.logs(stderr=False), "the companion never reached the notebook")
    assert logs.splitlines()[0] == b"uid=1000"  # the pod's user, not root
    tunnel.reload()
    assert tunnel.labels["io.interlink.container.role"] == "tunnel"
    host = tunnel.attrs["HostConfig"]
    assert host["NetworkMode"] == sc.container(p, "notebook").attrs["HostConfig"]["NetworkMode"]
    assert host["Privileged"] is False and host["CapDrop"] == ["ALL"]
    assert host["RestartPolicy"]["Name"] == "always" and host["PidsLimit"] == 4096
    status = sc.status(p)
    assert [c["name"] for c in status["containers"]] == ["notebook"]
    assert not status.get("initContainers")

    # Killed from outside: Docker's policy brings it back, whatever the pod's restartPolicy.
    os.kill(tunnel.attrs["State"]["Pid"], signal.SIGKILL)
    until(lambda: (tunnel.reload(), tunnel.attrs["RestartCount"] >= 1
                   and tunnel.attrs["State"]["Running"])[1], "the companion was not restarted")
    until(lambda: tunnel.logs(stderr=False).count(b"hello-tun-a") >= 2,
          "the restarted companion did not reach the notebook")
    assert state_of(sc.status(p), "notebook")["restartCount"] == 0

    sc.delete(p)
    label = f"io.interlink.pod.uid={p['metadata']['uid']}"
    assert sc.docker.containers.list(all=True, filters={"label": label}) == []


def test_a_pod_without_the_annotation_gets_no_companion(tunnel_sidecar):
    sc = tunnel_sidecar
    p = pod("tun-none", [container("notebook", "sleep 3600")])
    sc.run(create_body(p))
    label = f"io.interlink.pod.uid={p['metadata']['uid']}"
    roles = sorted(c.labels["io.interlink.container.role"]
                   for c in sc.docker.containers.list(all=True, filters={"label": label}))
    assert roles == ["infra", "main"]
    sc.delete(p)


def test_the_annotation_without_a_tunnel_image_is_refused(sidecar):
    p = notebook_with_tunnel("tun-refused", free_port())
    r = sidecar.create(create_body(p))
    assert r.status_code == 422, r.text
    assert "Sidecar.TunnelImage" in r.text and ANNOTATION in r.text
    label = f"io.interlink.pod.uid={p['metadata']['uid']}"
    assert sidecar.docker.containers.list(all=True, filters={"label": label}) == []


# --- published ports ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def publish_sidecar(sidecar_factory):
    return sidecar_factory(policy={"PublishPorts": True, "PublishAddress": "127.0.0.1"})


def web(name: str, port: int) -> dict[str, Any]:
    return pod(name, [container("notebook", f"echo hi-{name} > /tmp/i; httpd -f -p {port} -h /tmp",
                                ports=[{"containerPort": port, "name": "notebook-port"}])],
               restart="Always")


def test_a_container_port_is_reachable_on_the_node_and_a_second_pod_is_refused(
        publish_sidecar):
    sc = publish_sidecar
    port = free_port()
    first = web("pub-a", port)
    sc.run(create_body(first))

    def fetch() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/i", timeout=2).text
        except httpx.HTTPError:
            return ""
    assert until(fetch, "the published port never answered") == "hi-pub-a\n"

    second = web("pub-b", port)
    r = sc.create(create_body(second))
    assert r.status_code == 422, r.text
    assert f"containerPort {port}/tcp" in r.text and "tests/pub-a" in r.text
    assert "c.KubeSpawner.port" in r.text
    # The words InterLinkSpawner reads to try its next port.
    assert PORT_CLASH.search(r.text).group(1) == str(port)
    label = f"io.interlink.pod.uid={second['metadata']['uid']}"
    assert sc.docker.containers.list(all=True, filters={"label": label}) == []

    sc.delete(first)
    with socket.socket() as s:  # given back with the pod
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    sc.run(create_body(second))  # and the next user can have it
    assert until(fetch, "the second pod's port never answered") == "hi-pub-b\n"
    sc.delete(second)


def test_a_port_held_by_another_program_is_refused(publish_sidecar):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = publish_sidecar.create(create_body(web("pub-held", port)))
    assert r.status_code == 422, r.text
    assert "another program" in r.text and "c.KubeSpawner.port" in r.text
    assert PORT_CLASH.search(r.text).group(1) == str(port)


def test_the_companion_is_recovered_after_a_sidecar_restart(docker_client, tmp_path):
    policy = {"TunnelImage": BUSYBOX}
    sc = start_test_sidecar(tmp_path, docker_client, policy=policy)
    try:
        port = free_port()
        p = notebook_with_tunnel("tun-restart", port)
        sc.run(create_body(p))
        tunnel = sc.container(p, "TUNNEL")
        until(lambda: b"hello-tun-restart" in tunnel.logs(stderr=False), "no tunnel output")
        first_id = tunnel.id
        sc.proc.stop(signal.SIGKILL)
        tunnel.stop(timeout=0)  # stopped while the sidecar is away
        sc.respawn(tmp_path, policy=policy)
        until(lambda: (tunnel.reload(), tunnel.attrs["State"]["Running"])[1],
              "the recovered companion was not started again")
        assert tunnel.id == first_id  # the same container, found by its labels
        label = f"io.interlink.pod.uid={p['metadata']['uid']}"
        roles = sorted(c.labels["io.interlink.container.role"]
                       for c in sc.docker.containers.list(all=True, filters={"label": label}))
        assert roles == ["infra", "main", "tunnel"]
        assert [c["name"] for c in sc.status(p)["containers"]] == ["notebook"]
        sc.delete(p)
        assert sc.docker.containers.list(all=True, filters={"label": label}) == []
    finally:
        sc.proc.stop()
        sc.cleanup()
