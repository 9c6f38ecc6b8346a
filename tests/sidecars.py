"""A running ``docker-sidecar`` for tests, and the calls tests make to it. A module of its own
(not conftest) so that test files in any directory can import it: tests/security/ has a
conftest of its own, which shadows this directory's under the module name ``conftest``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from kube import vk_phase
from procs import Proc, start_sidecar


def _client(proc: Proc) -> httpx.Client:
    # As the API server calls it: the sidecar refuses an untyped body on a credential-less
    # loopback listener (a browser could forge one).
    return httpx.Client(base_url=proc.base, timeout=60,
                        headers={"Content-Type": "application/json"})


class Sidecar:
    """A running ``docker-sidecar`` process and the calls tests make to it."""

    def __init__(self, proc: Proc, instance: str, data_root: Path, docker_client) -> None:
        self.proc = proc
        self.instance = instance
        self.data_root = data_root
        self.docker = docker_client
        self.http = _client(proc)

    def restart(self, proc: Proc) -> None:
        self.proc = proc
        self.http.close()
        self.http = _client(proc)

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
