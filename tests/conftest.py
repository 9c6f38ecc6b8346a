"""Shared fixtures: real processes on ephemeral ports and unix sockets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kube import vk_phase
from procs import ROOT, Proc, start_fake_plugin, start_sidecar


class FakePlugin:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.base = proc.base

    def requests(self) -> list[dict[str, Any]]:
        with self.proc.client() as c:
            out = c.get("/_requests").json()
        for r in out:
            r["body"] = base64.b64decode(r["body"])
        return out

    def reset(self) -> None:
        with self.proc.client() as c:
            c.post("/_reset")

    def program(self, path: str, **spec: Any) -> None:
        with self.proc.client() as c:
            c.post("/_program", content=json.dumps({"path": path, **spec}))


@pytest.fixture(scope="module")
def fake_plugin(tmp_path_factory) -> Iterator[FakePlugin]:
    proc = start_fake_plugin(tmp_path_factory.mktemp("plugin"))
    yield FakePlugin(proc)
    proc.stop()


@pytest.fixture
def plugin(fake_plugin: FakePlugin) -> FakePlugin:
    fake_plugin.reset()
    return fake_plugin


def client_for(base: str, **kwargs: Any) -> httpx.Client:
    if base.startswith("unix://"):
        return httpx.Client(base_url="http://local",
                            transport=httpx.HTTPTransport(uds=base[len("unix://"):]), **kwargs)
    return httpx.Client(base_url=base, **kwargs)


# --- Docker -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    """The real Docker Engine, with the locally built test images. Unreachable: a failure in
    CI (CI=true), a skip elsewhere."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        message = f"Docker Engine unreachable ({exc}); run scripts/ensure-docker"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run([str(ROOT / "tests" / "images" / "build.sh")], check=True)
    yield client
    client.close()


class Sidecar:
    """A running ``docker-sidecar`` process and the calls tests make to it."""

    def __init__(self, proc: Proc, instance: str, data_root: Path, docker_client) -> None:
        self.proc = proc
        self.instance = instance
        self.data_root = data_root
        self.docker = docker_client
        self.http = httpx.Client(base_url=proc.base, timeout=60)

    def restart(self, proc: Proc) -> None:
        self.proc = proc
        self.http.close()
        self.http = httpx.Client(base_url=proc.base, timeout=60)

    def respawn(self, tmp: Path, *, kill: bool = True, **kwargs: Any) -> None:
        """Stop the sidecar (SIGKILL, or SIGTERM with ``kill=False``) and start a new process
        on the same port, data root and label instance, as an operator's restart would."""
        import signal

        self.proc.stop(signal.SIGKILL if kill else signal.SIGTERM)
        port = int(self.proc.base.rsplit(":", 1)[1])
        self.restart(start_sidecar(tmp, instance=self.instance, data_root=self.data_root,
                                   port=port, name=f"sidecar-{time.monotonic_ns()}", **kwargs))

    def create(self, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/create", json=body)

    def status(self, pod: dict[str, Any]) -> dict[str, Any]:
        r = self.http.request("GET", "/status", json=[pod])
        assert r.status_code == 200, r.text
        return r.json()[0]

    def wait(self, pod: dict[str, Any], until: Callable[[dict[str, Any]], bool],
             timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status = self.status(pod)
        while not until(status):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last status: {json.dumps(status, indent=1)}\n"
                                     f"sidecar log tail:\n{self.proc.output()[-3000:]}")
            time.sleep(0.2)
            status = self.status(pod)
        return status

    def wait_phase(self, pod: dict[str, Any], phase: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait(pod, lambda s: vk_phase(s) == phase, timeout)

    def delete(self, pod: dict[str, Any]) -> httpx.Response:
        return self.http.request("DELETE", "/delete", json=pod)

    def logs(self, pod: dict[str, Any], container: str, **opts: Any) -> httpx.Response:
        meta = pod["metadata"]
        return self.http.request("GET", "/getLogs", json={
            "Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"],
            "ContainerName": container, "Opts": opts})

    def container(self, pod: dict[str, Any], name: str):
        meta = pod["metadata"]
        return self.docker.containers.get(
            f"il_{meta['namespace']}_{meta['name']}_{name}_{meta['uid']}")

    def run(self, body: dict[str, Any], phase: str = "Running", timeout: float = 30.0):
        r = self.create(body)
        assert r.status_code == 200, r.text
        return self.wait_phase(body["pod"], phase, timeout)

    def cleanup(self) -> None:
        label = f"io.interlink.managed={self.instance}"
        for c in self.docker.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
        for v in self.docker.volumes.list(filters={"label": label}):
            v.remove(force=True)


def start_test_sidecar(tmp: Path, docker_client, **kwargs: Any) -> Sidecar:
    instance = f"test-{uuid.uuid4().hex[:10]}"
    data_root = tmp / "data"
    proc = start_sidecar(tmp, instance=instance, data_root=data_root, **kwargs)
    return Sidecar(proc, instance, data_root, docker_client)


@pytest.fixture
def own_sidecar(docker_client, tmp_path) -> Iterator[Sidecar]:
    """A sidecar for one test, which it may stop and restart."""
    sc = start_test_sidecar(tmp_path, docker_client)
    yield sc
    sc.proc.stop()
    sc.cleanup()


@pytest.fixture(scope="module")
def sidecar(docker_client, tmp_path_factory) -> Iterator[Sidecar]:
    sc = start_test_sidecar(tmp_path_factory.mktemp("sidecar"), docker_client)
    yield sc
    sc.proc.stop()
    sc.cleanup()


@pytest.fixture(scope="module")
def sidecar_factory(docker_client, tmp_path_factory) -> Iterator[Callable[..., Sidecar]]:
    """Start sidecars with a policy (``Sidecar:`` keys) or env of the module's own; every one
    is stopped and its Docker objects removed when the module is done. For test directories
    whose own conftest shadows this one's module name (tests/security/)."""
    started: list[Sidecar] = []

    def start(**kwargs: Any) -> Sidecar:
        sc = start_test_sidecar(tmp_path_factory.mktemp("sidecar"), docker_client, **kwargs)
        started.append(sc)
        return sc

    yield start
    for sc in started:
        sc.proc.stop()
        sc.cleanup()
