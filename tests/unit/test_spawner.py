"""InterLinkSpawner without a hub or a node: the pod it sends is KubeSpawner's, ports are one
per server, and start, progress, poll and stop follow what the API answers (httpx's
MockTransport stands in for the API server)."""

from __future__ import annotations

import asyncio
import json
import shlex
import types
from typing import Any
from unittest import mock

import httpx
import pytest
from kubernetes_asyncio.client import ApiClient

import kubespawner.spawner as kubespawner_module
from interlink_spawner import InterLinkSpawner
from interlink_spawner.ports import PortBook, PortsExhausted
from interlink_spawner.spawner import TUNNEL_ANNOTATION, SpawnFailed
from kubespawner import KubeSpawner

HUB = types.SimpleNamespace(public_host="hub.example.org", url="http://10.0.0.1:8081/hub/",
                            base_url="/hub/", api_url="http://10.0.0.1:8081/hub/api")


_IDS: dict[str, int] = {}


def user(name: str) -> Any:
    uid = _IDS.setdefault(name, len(_IDS) + 1)
    return types.SimpleNamespace(name=name, id=uid, url=f"/user/{name}/", escaped_name=name)


@pytest.fixture(autouse=True)
def fresh_ports():
    InterLinkSpawner.ports = PortBook()
    yield
    InterLinkSpawner.ports = PortBook()


async def hub_stop(s: InterLinkSpawner) -> None:
    """What JupyterHub's User.stop does with a spawner: stop only what poll says runs, then
    clear and save the state."""
    try:
        if await s.poll() is None:
            await s.stop()
    finally:
        s.clear_state()
        s.get_state()


class FakeAPI:
    """The API server's answers: pods kept by uid, a status per pod set by the test."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.taken: set[int] = set()  # node ports the node says another pod holds
        self.statuses: dict[str, list[dict[str, Any]]] = {}  # name -> container statuses
        self.deleted: list[dict[str, Any]] = []
        self.refuse: tuple[int, str] | None = None
        self.logs = ""

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer token-for-the-api":
            return httpx.Response(401, text="missing or wrong bearer token")
        body = json.loads(request.content) if request.content else None
        if request.url.path == "/create":
            if self.refuse:
                return httpx.Response(self.refuse[0], text=self.refuse[1])
            pod = body[0]["pod"] if isinstance(body, list) else body["pod"]
            port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
            if port in self.taken:
                return httpx.Response(422, text=(
                    f"pod x cannot run on this node: containerPort {port}/TCP cannot be "
                    f"published: node port {port} is already used by pod default/other"))
            self.pods[pod["metadata"]["uid"]] = pod
            return httpx.Response(200, json={"PodUID": pod["metadata"]["uid"], "PodJID": "j"})
        if request.url.path == "/status":
            out = []
            for p in body:
                uid = p["metadata"]["uid"]
                if uid in self.pods:
                    name = self.pods[uid]["metadata"]["name"]
                    out.append({"name": name, "UID": uid, "namespace": "default",
                                "containers": self.statuses.get(name, [])})
            return httpx.Response(200, json=out)
        if request.url.path == "/delete":
            self.deleted.append(body)
            self.pods.pop(body["metadata"]["uid"], None)
            return httpx.Response(200, text="deleted")
        if request.url.path == "/getLogs":
            return httpx.Response(200, text=self.logs)
        return httpx.Response(404)


def spawner(api: FakeAPI, name: str = "alice", **config: Any) -> InterLinkSpawner:
    config.setdefault("node_address", "192.0.2.10")
    s = InterLinkSpawner(user=user(name), hub=HUB, interlink_url="http://api.example:3000",
                         interlink_token="token-for-the-api", api_token=f"hub-token-for-{name}",
                         status_interval=0.01, port_range=(31000, 31009), **config)
    s.transport = httpx.MockTransport(api.handler)
    return s


async def start(s: InterLinkSpawner) -> str:
    """The hub's call: ``start()`` schedules the start on the running loop."""
    return await s.start()


RUNNING = [{"name": "notebook", "ready": True, "state": {"running": {}}}]


def test_the_pod_is_kubespawners_own_with_a_namespace_and_a_uid() -> None:
    config = {"cpu_limit": 2.0, "mem_limit": "4G", "uid": 1000, "fs_gid": 100,
              "image": "interlink-test/singleuser:1",
              "extra_resource_limits": {"nvidia.com/gpu": "1"},
              "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
              "volume_mounts": [{"name": "home", "mountPath": "/home/jovyan"}]}

    async def both() -> tuple[dict, dict]:
        ours = InterLinkSpawner(user=user("alice"), hub=HUB, **config)
        ours._node_port = 31000
        pod = await ours.interlink_pod()
        # KubeSpawner itself, with its Kubernetes client configuration stubbed out.
        with mock.patch.object(kubespawner_module, "load_config"), \
                mock.patch.object(kubespawner_module, "shared_client"):
            theirs = KubeSpawner(user=user("alice"), hub=HUB, **config)
        async with ApiClient() as api:
            return pod, api.sanitize_for_serialization(await theirs.get_pod_manifest())

    ours, theirs = asyncio.run(both())
    meta = ours["metadata"]
    assert meta.pop("namespace") == "default"
    assert len(meta.pop("uid")) == 36
    assert ours == theirs
    assert ours["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "claim-alice"
    assert ours["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_tunnelled_pod_carries_the_filled_in_command() -> None:
    s = InterLinkSpawner(user=user("bob"), hub=HUB, tunnel_command=(
        "wstunnel client -R tcp://0.0.0.0:{remote_port}:localhost:{port} ws://hub:8080 "
        "# {pod_name} {namespace} {username}"))
    s._node_port = 30007
    s.port = 8000
    pod = asyncio.run(s.interlink_pod())
    assert pod["metadata"]["annotations"][TUNNEL_ANNOTATION] == (
        "wstunnel client -R tcp://0.0.0.0:30007:localhost:8000 ws://hub:8080 "
        "# jupyter-bob default bob")

    # A user's name reaches a shell: quoted, it stays one word.
    eve = InterLinkSpawner(user=user("eve;touch /tmp/owned"), hub=HUB,
                           tunnel_command="client --name {username} -R {remote_port}")
    eve._node_port = 30008
    command = asyncio.run(eve.interlink_pod())["metadata"]["annotations"][TUNNEL_ANNOTATION]
    assert command == "client --name 'eve;touch /tmp/owned' -R 30008"
    assert shlex.split(command)[2] == "eve;touch /tmp/owned"

    s.tunnel_command = "wstunnel -R {remote} ws://hub"
    with pytest.raises(ValueError, match=r"tunnel_command .* cannot be filled in.*\{remote_port\}"):
        asyncio.run(s.interlink_pod())


def test_start_publishes_a_port_of_the_range_and_connects_there() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = RUNNING
    s = spawner(api)
    url = asyncio.run(start(s))
    assert url == "http://192.0.2.10:31000"
    (pod,) = api.pods.values()
    assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 31000
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:31000/"
    # The hub's own token for the notebook, not the one the spawner shows the API.
    assert env["JUPYTERHUB_API_TOKEN"] == "hub-token-for-alice"
    assert s.get_state()["interlink_port"] == 31000


def test_two_servers_never_share_a_port_and_a_stopped_ones_port_is_reused() -> None:
    api = FakeAPI()
    api.statuses = {"jupyter-alice": RUNNING, "jupyter-bob": RUNNING}
    alice, bob = spawner(api, "alice"), spawner(api, "bob")

    async def scenario() -> tuple[str, str, str]:
        a = await alice.start()
        b = await bob.start()
        await alice.stop()
        api.statuses["jupyter-carol"] = RUNNING
        c = await spawner(api, "carol").start()
        return a, b, c

    a, b, c = asyncio.run(scenario())
    assert (a, b, c) == ("http://192.0.2.10:31000", "http://192.0.2.10:31001",
                         "http://192.0.2.10:31000")
    assert api.deleted[0]["metadata"]["name"] == "jupyter-alice"


def test_a_port_the_node_says_is_taken_is_skipped() -> None:
    api = FakeAPI()
    api.taken = {31000, 31001}
    api.statuses["jupyter-alice"] = RUNNING
    s = spawner(api)
    events: list[str] = []

    async def scenario() -> str:
        future = s.start()
        async for e in s.progress():
            events.append(e["message"])
        return await future

    assert asyncio.run(scenario()) == "http://192.0.2.10:31002"
    assert "port 31000 is taken on the node; trying another" in events
    assert events[-1] == "server ready at http://192.0.2.10:31002"


def test_progress_shows_the_nodes_waiting_reasons_and_the_gpu_queue() -> None:
    api = FakeAPI()
    s = spawner(api)
    waits = [
        [{"name": "notebook", "state": {"waiting": {"reason": "ContainerCreating"}}}],
        [{"name": "notebook", "state": {"waiting": {
            "reason": "WaitingForGPU",
            "message": "waiting for 1 nvidia.com/gpu: position 1 in line, 0 free of 2"}}}],
        RUNNING,
    ]

    async def scenario() -> list[dict]:
        future = s.start()
        seen: list[dict] = []
        async for e in s.progress():
            seen.append(e)
            if waits and any("accepted" in x["message"] for x in seen):
                api.statuses["jupyter-alice"] = waits.pop(0)
        await future
        return seen

    seen = asyncio.run(scenario())
    messages = [e["message"] for e in seen]
    assert "container notebook: waiting (ContainerCreating)" in messages
    assert ("all GPUs are in use; waiting for 1 nvidia.com/gpu: position 1 in line, "
            "0 free of 2") in messages


def test_a_refused_pod_fails_the_spawn_with_the_nodes_words_and_frees_the_port() -> None:
    api = FakeAPI()
    api.refuse = (422, "pod default/jupyter-alice cannot run on this node: 2 nvidia.com/gpu "
                       "asked, the node has 1")
    s = spawner(api)
    with pytest.raises(SpawnFailed, match=r"node refused the server \(HTTP 422\).*has 1"):
        asyncio.run(start(s))
    assert InterLinkSpawner.ports.held_by(s._owner) is None

    api.refuse = (401, "token expired")
    with pytest.raises(SpawnFailed, match="refused the hub's token.*interlink_token_file"):
        asyncio.run(start(spawner(api)))


def test_a_notebook_that_exits_before_ready_fails_with_its_log_and_is_removed() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = [{"name": "notebook", "state": {"terminated": {
        "exitCode": 0, "reason": "Completed"}}}]
    api.logs = "jupyterhub-singleuser: error: no such option\n"
    s = spawner(api)
    with pytest.raises(SpawnFailed, match=r"(?s)exited with code 0 \(Completed\).*no such option"):
        asyncio.run(start(s))
    assert api.pods == {} and api.deleted[0]["metadata"]["deletionGracePeriodSeconds"] == 0

    # A crash is retried by the node under OnFailure; one that keeps crashing fails the spawn.
    api.statuses["jupyter-alice"] = [{"name": "notebook", "restartCount": 2, "state": {
        "terminated": {"exitCode": 1, "reason": "Error"}}}]
    with pytest.raises(SpawnFailed, match=r"exited with code 1 \(Error\)"):
        asyncio.run(start(spawner(api)))


def test_poll_follows_the_node() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = RUNNING
    s = spawner(api)

    async def scenario() -> list[int | None]:
        await s.start()
        out = [await s.poll()]
        answer = s.transport
        s.transport = httpx.MockTransport(lambda r: httpx.Response(502, text="plugin down"))
        out.append(await s.poll())  # the node cannot be asked: still running
        s.transport = answer
        api.statuses["jupyter-alice"] = [{"name": "notebook", "state": {"terminated": {
            "exitCode": 3, "reason": "Error"}}}]
        out.append(await s.poll())  # ended: its exit code, and the pod is deleted
        out.append(await s.poll())  # nothing left to ask about
        gone = spawner(api, "bob")
        api.statuses["jupyter-bob"] = RUNNING
        await gone.start()
        api.pods.clear()
        out.append(await gone.poll())  # the node no longer knows it
        return out

    assert asyncio.run(scenario()) == [None, None, 3, 0, 1]
    assert [d["metadata"]["name"] for d in api.deleted] == ["jupyter-alice"]


def test_state_survives_a_hub_restart_and_holds_the_port() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = RUNNING
    first = spawner(api)
    asyncio.run(start(first))
    state = first.get_state()
    InterLinkSpawner.ports = PortBook()  # a new hub process

    again = spawner(api)
    again.load_state(state)
    assert asyncio.run(again.poll()) is None
    other = spawner(api, "bob")
    api.statuses["jupyter-bob"] = RUNNING
    assert asyncio.run(start(other)) == "http://192.0.2.10:31001"
    asyncio.run(again.stop(now=True))
    assert api.deleted[-1]["metadata"]["uid"] == state["interlink_pod"]["uid"]


def test_a_full_range_fails_the_spawn_saying_so() -> None:
    api = FakeAPI()
    api.statuses = {f"jupyter-u{i}": RUNNING for i in range(11)}
    for i in range(10):
        asyncio.run(start(spawner(api, f"u{i}")))
    with pytest.raises(SpawnFailed, match="no node port is free.*all 10 ports of 31000-31009"):
        asyncio.run(start(spawner(api, "u10")))


def test_missing_settings_are_named() -> None:
    api = FakeAPI()
    with pytest.raises(ValueError, match="node_address is not set"):
        asyncio.run(start(spawner(api, node_address="")))
    with pytest.raises(ValueError, match="tunnel_connect_host is not set"):
        asyncio.run(start(spawner(api, tunnel_command="x {remote_port}")))


def test_the_port_book() -> None:
    book = PortBook()
    assert [book.take("a", 5, 7), book.take("b", 5, 7), book.take("a", 5, 7)] == [5, 6, 5]
    assert book.take("c", 5, 7) == 7
    with pytest.raises(PortsExhausted, match="all 3 ports of 5-7"):
        book.take("d", 5, 7)
    book.release("b")
    assert book.take("d", 5, 7) == 6
    # A range of its own (a profile's) overlapping another: still one holder per port.
    assert book.take("e", 6, 9) == 8
    assert not book.hold("f", 5) and not book.hold("f", 0) and book.hold("a", 5)
    with pytest.raises(PortsExhausted):  # 5-8 held, 9 refused by the node
        book.take("g", 5, 9, avoid={9})
    with pytest.raises(ValueError):
        book.take("h", 10, 9)


def test_what_a_status_means_to_the_hub() -> None:
    from interlink_common.wire import PodStatus
    from interlink_spawner.pod_progress import describe, ended, is_ready

    status = PodStatus.model_validate({"name": "p", "UID": "u", "initContainers": [
        {"name": "fetch", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        "containers": [
            {"name": "notebook", "state": {"running": {}}, "ready": False},
            {"name": "side", "state": {"waiting": {"reason": "ErrImagePull",
                                                   "message": "no such image"}}}]})
    assert describe(status) == ["init container fetch: exited with code 0 (Completed)",
                                "container notebook: running, not ready yet",
                                "container side: waiting (ErrImagePull): no such image"]
    assert not is_ready(status, "notebook") and ended(status, "notebook") is None
    assert describe(None) == ["the node does not know the pod yet"]
    assert not is_ready(None, "notebook") and ended(None, "notebook") is None


def test_a_notebook_that_ends_by_itself_is_deleted_and_its_port_freed() -> None:
    """The user shuts the server down from inside: the hub's poll sees it ended and calls
    no stop, so poll is where the pod goes."""
    api = FakeAPI()
    api.statuses["jupyter-alice"] = RUNNING
    s = spawner(api)

    async def scenario() -> None:
        await s.start()
        api.statuses["jupyter-alice"] = [{"name": "notebook", "state": {"terminated": {
            "exitCode": 0, "reason": "Completed"}}}]
        await hub_stop(s)

    asyncio.run(scenario())
    assert api.pods == {} and api.deleted[0]["metadata"]["name"] == "jupyter-alice"
    assert InterLinkSpawner.ports.held_by(s._owner) is None
    assert "interlink_port" not in s.get_state() and "interlink_pod" not in s.get_state()


def test_a_failed_start_gives_its_port_back() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = [{"name": "notebook", "state": {"terminated": {
        "exitCode": 0, "reason": "Completed"}}}]
    s = spawner(api)
    with pytest.raises(SpawnFailed):
        asyncio.run(start(s))
    asyncio.run(hub_stop(s))
    assert InterLinkSpawner.ports.held_by(s._owner) is None and api.pods == {}


def test_a_delete_the_node_does_not_confirm_is_kept_and_tried_again() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = RUNNING
    s = spawner(api)
    asyncio.run(start(s))
    (uid,) = api.pods
    answer = api.handler
    s.transport = httpx.MockTransport(lambda r: httpx.Response(502, text="plugin down")
                                      if r.url.path == "/delete" else answer(r))
    asyncio.run(hub_stop(s))  # the hub goes on: no exception, the port is given back
    assert InterLinkSpawner.ports.held_by(s._owner) is None
    state = s.get_state()
    assert state["interlink_leftovers"] == [{"name": "jupyter-alice", "namespace": "default",
                                             "uid": uid}]

    again = spawner(api)  # after a hub restart, say
    again.load_state(state)
    asyncio.run(start(again))  # the next start deletes the leftover first
    assert uid not in api.pods and len(api.pods) == 1
    assert "interlink_leftovers" not in again.get_state()


def test_a_clash_on_another_port_of_the_pod_is_not_retried() -> None:
    api = FakeAPI()
    api.refuse = (422, "pod default/jupyter-alice cannot run on this node: containerPort "
                       "9000/TCP cannot be published: node port 9000 is already used by "
                       "pod default/other")
    s = spawner(api)
    with pytest.raises(SpawnFailed, match="node port 9000 is already used"):
        asyncio.run(start(s))
    assert len(api.deleted) == 0 and InterLinkSpawner.ports.held_by(s._owner) is None


def test_a_users_log_cannot_forge_lines_on_the_hub() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = [{"name": "notebook", "state": {"terminated": {
        "exitCode": 0, "reason": "Completed"}}}]
    api.logs = "fine\n[I 2026 JupyterHub] admin logged in\x1b[2J\n"
    with pytest.raises(SpawnFailed) as err:
        asyncio.run(start(spawner(api)))
    tail = err.value.jupyterhub_message.split("its last log lines:\n", 1)[1]
    assert tail.splitlines() == ["| fine", "| [I 2026 JupyterHub] admin logged in?[2J"]


def test_the_users_page_does_not_show_the_apis_address() -> None:
    api = FakeAPI()
    api.statuses["jupyter-alice"] = RUNNING
    s = spawner(api)

    async def scenario() -> list[str]:
        future = s.start()
        seen = [e["message"] async for e in s.progress()]
        await future
        return seen

    assert not any("api.example" in m for m in asyncio.run(scenario()))
