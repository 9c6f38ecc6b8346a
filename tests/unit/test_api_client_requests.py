"""What the API client puts on the wire, through httpx's MockTransport (no server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from interlink_common.api_client import APIError, InterLinkClient

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "5d3e2c1b-6a7f-4e8d-9c0b-1a2b3c4d5e6f"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def recording(answer: httpx.Response) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    return seen, httpx.MockTransport(handle)


def test_calls_speak_as_the_current_vk() -> None:
    seen, transport = recording(httpx.Response(200, json=[]))

    async def calls() -> None:
        async with InterLinkClient("http://api", token="tok", transport=transport) as client:
            assert await client.status([POD]) == []
            assert await client.pod_status(POD) is None

    asyncio.run(calls())
    assert [r.headers["InterLink-Http-Session"] for r in seen] == ["GetPodStatus#1",
                                                                   "GetPodStatus#2"]
    assert all(r.headers["Authorization"] == "Bearer tok" for r in seen)
    assert seen[0].headers["Content-Type"] == "application/json"
    body = json.loads(seen[0].content)
    assert body[0]["status"] == {"phase": "Pending"}  # asked afresh, not from the cache


def test_log_options_use_the_kubelets_names_and_refuse_others() -> None:
    seen, transport = recording(httpx.Response(200, text="line\n"))

    async def calls() -> Any:
        async with InterLinkClient("http://api", transport=transport) as client:
            assert await client.logs(POD, "c", tail=3, timestamps=True) == "line\n"
            with pytest.raises(TypeError, match="taill"):
                await client.logs(POD, "c", taill=3)

    asyncio.run(calls())
    sent = json.loads(seen[0].content)
    assert sent["PodUID"] == POD["metadata"]["uid"] and sent["ContainerName"] == "c"
    assert sent["Opts"]["Tail"] == 3 and sent["Opts"]["Timestamps"] is True
    assert "Authorization" not in seen[0].headers


@pytest.mark.parametrize("answer, status, text", [
    (httpx.Response(422, text="pod ns/p cannot run on this node: spec.x"), 422, "spec.x"),
    (httpx.Response(200, text="not json"), 200, "not JSON"),
    (httpx.Response(200, json=["not", "a", "CreateStruct"]), 200, "does not fit CreateStruct"),
])
def test_a_refusal_or_a_bad_answer_is_an_api_error(answer: httpx.Response, status: int,
                                                   text: str) -> None:
    _, transport = recording(answer)

    async def create() -> APIError:
        async with InterLinkClient("http://api", transport=transport) as client:
            with pytest.raises(APIError) as err:
                await client.create(POD)
            return err.value

    err = asyncio.run(create())
    assert err.status == status and text in err.message and err.route == "/create"
