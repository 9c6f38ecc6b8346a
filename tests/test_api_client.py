"""The Python client of the API against the real pair: the API server with OIDC in front of the
real sidecar on the real engine, as the spawner and the operator's tools will use it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interlink_common.api_client import APIError, APIUnreachable, InterLinkClient
from kube import config_map, container, pod, secret
from oidc_issuer import start_issuer
from procs import Proc, free_port, start_oidc_api

GROUPS = {"wlcg.groups": ["/interlink"]}


@pytest.fixture(scope="module")
def issuer():
    iss = start_issuer()
    yield iss
    iss.stop()


@pytest.fixture(scope="module")
def api(sidecar, issuer, tmp_path_factory) -> Iterator[Proc]:
    proc = start_oidc_api(tmp_path_factory.mktemp("api"), sidecar.proc.base, issuer.url)
    yield proc
    proc.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_pod_from_create_to_delete(api, issuer, sidecar) -> None:
    p = pod("client-pod", [container("main", "cat /cfg/greeting; echo; echo \"$TOKEN\"; "
                                     "exec sleep 3600", env=[{"name": "TOKEN", "valueFrom": {
                                         "secretKeyRef": {"name": "s", "key": "token"}}}],
                                     volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}])],
            volumes=[{"name": "cfg", "configMap": {"name": "greeting"}}], grace=0)

    async def scenario() -> tuple[Any, ...]:
        async with InterLinkClient(api.base, token=issuer.token(GROUPS)) as client:
            ping = await client.ping()
            created = await client.create(p, configmaps=[config_map("greeting", {
                "greeting": "hello from a configmap"})], secrets=[secret("s", {"token": "t0k"})])
            deadline = time.monotonic() + 60
            while (status := await client.pod_status(p)) is None or \
                    not status.containers or not status.containers[0].state.running:
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.3)
            logs = await client.logs(p, "main", tail=5)
            async with client.follow_logs(p, "main") as chunks:
                first = await anext(chunks)
            gone = await client.delete(p)
            return ping, created, status, logs, first, gone

    ping, created, status, logs, first, gone = run(scenario())
    assert ping.status == "ok" and ping.resources is not None
    assert created.PodUID == p["metadata"]["uid"]
    assert status.UID == p["metadata"]["uid"] and status.containers[0].name == "main"
    assert logs == "hello from a configmap\nt0k\n"
    assert first.startswith(b"hello from a configmap")
    assert "deleted" in gone


def test_refusals_carry_the_status_and_the_servers_message(api, issuer, tmp_path: Path) -> None:
    async def refused(**kw: Any) -> APIError:
        async with InterLinkClient(api.base, **kw) as client:
            with pytest.raises(APIError) as err:
                await client.ping()
            return err.value

    no_token = run(refused())
    assert no_token.status == 401 and no_token.route == "/pinglink"
    wrong_group = run(refused(token=issuer.token({"wlcg.groups": ["/other"]})))
    assert wrong_group.status == 403 and "required group" in wrong_group.message

    async def bad_identity() -> APIError:
        async with InterLinkClient(api.base, token=issuer.token(GROUPS)) as client:
            with pytest.raises(APIError) as err:
                await client.status([{"metadata": {"uid": "../../etc", "name": "x",
                                                   "namespace": "y"}}])
            return err.value

    err = run(bad_identity())
    assert err.status == 400 and "metadata.uid" in err.message


def test_the_token_file_is_read_on_every_call(api, issuer, tmp_path: Path) -> None:
    """As the VK's token file is kept fresh by a refresher, a rotated token is used at once."""
    path = tmp_path / "token"
    path.write_text(issuer.token({"wlcg.groups": ["/other"]}) + "\n")

    async def twice() -> tuple[int, str]:
        async with InterLinkClient(api.base, token_file=str(path)) as client:
            with pytest.raises(APIError) as err:
                await client.ping()
            path.write_text(issuer.token(GROUPS))
            return err.value.status, (await client.ping()).status

    assert run(twice()) == (403, "ok")


def test_a_server_that_cannot_be_reached_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def ping() -> APIUnreachable:
        async with InterLinkClient(url, timeout=5) as client:
            with pytest.raises(APIUnreachable) as err:
                await client.ping()
            return err.value

    err = run(ping())
    assert f"{url}/pinglink failed" in str(err)
