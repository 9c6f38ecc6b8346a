"""Shared fixtures: real processes on ephemeral ports and unix sockets."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from procs import ROOT, Proc, start_fake_plugin
from sidecars import Sidecar, start_test_sidecar  # noqa: F401 (also for tests that import them from here)


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
    # PYTHON: the single-user image's packages are installed by this venv's pip, which exists
    # even where the system's python3 has none.
    subprocess.run([str(ROOT / "tests" / "images" / "build.sh")], check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    yield client
    client.close()


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
    is stopped and its Docker objects removed when the module is done."""
    started: list[Sidecar] = []

    def start(**kwargs: Any) -> Sidecar:
        sc = start_test_sidecar(tmp_path_factory.mktemp("sidecar"), docker_client, **kwargs)
        started.append(sc)
        return sc

    yield start
    for sc in started:
        sc.proc.stop()
        sc.cleanup()


# --- markers ------------------------------------------------------------------------------------

SECURITY_DIR = Path(__file__).resolve().parent / "security"
UNIT_DIR = Path(__file__).resolve().parent / "unit"
FAULTS_DIR = Path(__file__).resolve().parent / "faults"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/security/ is an attack on the node, made as a hostile tenant
    would make it: marked ``security`` (``-m security`` runs them alone). Every test under
    tests/unit/ needs no process and no engine: marked ``unit`` (``-m unit``, ``-m "not
    unit"``). Every test under tests/faults/ breaks a part of the node on purpose: marked
    ``faults``."""
    for item in items:
        parents = Path(str(item.fspath)).resolve().parents
        if SECURITY_DIR in parents:
            item.add_marker(pytest.mark.security)
        if UNIT_DIR in parents:
            item.add_marker(pytest.mark.unit)
        if FAULTS_DIR in parents:
            item.add_marker(pytest.mark.faults)
