"""Shared fixtures: real processes on ephemeral ports and unix sockets."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from procs import Proc, start_fake_plugin


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
