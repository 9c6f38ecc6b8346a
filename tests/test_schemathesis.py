"""Generated requests against both real services, from the documents they publish.

schemathesis reads each service's ``/openapi.json`` and sends, per operation, bodies and headers
that fit the schema and bodies that do not. Whatever it sends, a service must answer, and not
with a 5xx: bad input gets a 4xx that names the field. The sidecar under test has a data root of
its own; a generated ``/delete`` names a pod by its UID, which must never lead outside it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from procs import Proc, start_api
from sidecars import start_test_sidecar

# Small enough for a couple of minutes on two cores, per service; derandomized, so a run
# repeats the same requests and a failure reproduces.
MAX_EXAMPLES = 80
SETTINGS = settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))


def load(proc: Proc) -> Any:
    schema = schemathesis.openapi.from_url(f"{proc.base}/openapi.json")
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True,
                                    database="none")
    return schema


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, fake_plugin) -> Iterator[Any]:
    host, port = fake_plugin.base.rsplit(":", 1)
    proc = start_api(tmp_path_factory.mktemp("api"), {"SidecarURL": host,
                                                      "SidecarPort": int(port)})
    yield load(proc)
    alive = proc.popen.poll() is None
    out = proc.output()
    proc.stop()
    assert alive, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``, with a digest of each file's content."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = hashlib.sha256(
                Path(path).read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Iterator[Path]:
    """A directory beside the sidecar's data root, as a host path a crafted UID might reach."""
    root = tmp_path_factory.mktemp("fuzzed-sidecar")
    (root / "canary").mkdir()
    (root / "canary" / "keep.txt").write_text("must survive\n")
    (root / "canary" / "sub").mkdir()
    yield root


@pytest.fixture(scope="module")
def sidecar_schema(canary: Path, docker_client) -> Iterator[Any]:
    before = tree(canary / "canary")
    sc = start_test_sidecar(canary, docker_client)
    yield load(sc.proc)
    alive = sc.proc.popen.poll() is None
    out = sc.proc.output()
    sc.proc.stop()
    sc.cleanup()
    assert alive, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    # Nothing outside the data root was touched: the canary beside it is as it was.
    assert tree(canary / "canary") == before
    assert sorted(p.name for p in canary.iterdir()) == sorted(["canary", "data", "sidecar.log",
                                                               "sidecar.yaml"])


API_OPERATIONS = [("/create", "POST"), ("/delete", "DELETE"), ("/status", "GET"),
                  ("/getLogs", "GET"), ("/pinglink", "POST"), ("/updateCache", "POST"),
                  ("/healthz", "GET"), ("/readyz", "GET"), ("/metrics", "GET")]
SIDECAR_OPERATIONS = [("/create", "POST"), ("/delete", "POST"), ("/status", "GET"),
                      ("/getLogs", "GET"), ("/healthz", "GET"), ("/metrics", "GET"),
                      ("/gpus", "GET")]


def fuzz(schema: Any, path: str, method: str, timeout: float) -> None:
    """Send the operation's generated requests, valid and invalid ones; fail on any 5xx."""
    operation = schema[path][method]
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]

    @SETTINGS
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        response = case.call(timeout=timeout)
        case.validate_response(response, checks=[not_a_server_error])

    run()


@pytest.mark.parametrize("path, method", API_OPERATIONS)
def test_api_never_answers_5xx(api_schema: Any, path: str, method: str) -> None:
    fuzz(api_schema, path, method, timeout=30)


@pytest.mark.parametrize("path, method", SIDECAR_OPERATIONS)
def test_sidecar_never_answers_5xx(sidecar_schema: Any, path: str, method: str) -> None:
    fuzz(sidecar_schema, path, method, timeout=60)
