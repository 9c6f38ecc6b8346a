"""Log streams cannot starve the sidecar or the API server: idle ``Follow`` streams hold no
worker thread, so pods are still created and deleted while many are open; streams are capped
per pod and in total (429 naming the key); a client that goes away gives its slot and its Docker
connection back. Through the API, streams have a connection pool of their own: more of them
than ``PluginMaxConnections`` leave every other call answering."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from kube import container, create_body, pod
from procs import start_api

FOLLOWS = 80  # more than the 64 worker threads every Docker call shares


def wait_for(what: str, until: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := until()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def log_request(p: dict[str, Any], follow: bool = True) -> dict[str, Any]:
    meta = p["metadata"]
    return {"Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"],
            "ContainerName": "main", "Opts": {"Follow": follow}}


def follow(stack: ExitStack, client: httpx.Client, p: dict[str, Any]) -> httpx.Response:
    """Open a follow stream and keep it open until ``stack`` closes."""
    return stack.enter_context(client.stream("GET", "/getLogs", json=log_request(p)))


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def sockets(pid: int) -> int:
    fds = f"/proc/{pid}/fd"
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(f"{fds}/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


@pytest.fixture(scope="module")
def roomy(sidecar_factory):
    return sidecar_factory(policy={"MaxLogFollowsPerPod": 100, "MaxLogFollows": 100})


@pytest.fixture(scope="module")
def tight(sidecar_factory):
    return sidecar_factory(policy={"MaxLogFollowsPerPod": 2, "MaxLogFollows": 3})


def quiet_pod(name: str) -> dict[str, Any]:
    return pod(name, [container("main", "echo hello; exec sleep 3600")], grace=0)


def test_many_idle_follows_hold_no_thread_and_create_still_answers(roomy):
    quiet = quiet_pod("quiet")
    roomy.run(create_body(quiet))
    pid = roomy.proc.popen.pid
    before = threads(pid)
    limits = httpx.Limits(max_connections=FOLLOWS + 10)
    with httpx.Client(base_url=roomy.proc.base, timeout=60, limits=limits) as client, \
            ExitStack() as stack:
        streams = [follow(stack, client, quiet) for _ in range(FOLLOWS)]
        assert all(r.status_code == 200 for r in streams)
        assert threads(pid) <= before + 16, (before, threads(pid))
        # Everything else still works while they are open.
        p = pod("while-following", [container("main", "echo made; exec sleep 3600")],
                grace=0)
        roomy.run(create_body(p))
        assert roomy.logs(p, "main").text == "made\n"
        assert roomy.delete(p).status_code == 200
        assert roomy.http.request("GET", "/status", content=b"[]").status_code == 200
        # The streams are live: each got the line already written.
        first = streams[0].iter_raw()
        assert next(first).startswith(b"hello")
    roomy.delete(quiet)


def test_follows_are_capped_per_pod_and_in_total_and_freed_on_disconnect(tight):
    a, b, c = quiet_pod("cap-a"), quiet_pod("cap-b"), quiet_pod("cap-c")
    for p in (a, b, c):
        tight.run(create_body(p))
    pid = tight.proc.popen.pid
    with httpx.Client(base_url=tight.proc.base, timeout=60) as client:
        with ExitStack() as stack:
            assert follow(stack, client, a).status_code == 200
            assert follow(stack, client, a).status_code == 200
            third = tight.http.request("GET", "/getLogs", json=log_request(a))
            assert third.status_code == 429
            assert "Sidecar.MaxLogFollowsPerPod" in third.text and "2" in third.text
            assert follow(stack, client, b).status_code == 200
            over = tight.http.request("GET", "/getLogs", json=log_request(c))
            assert over.status_code == 429
            assert "Sidecar.MaxLogFollows" in over.text and "3" in over.text
            # A read without Follow holds a connection as long as its client does not read:
            # it counts too.
            plain = tight.http.request("GET", "/getLogs", json=log_request(a, follow=False))
            assert plain.status_code == 429, plain.text
            opened = sockets(pid)
        # The clients went away: their slots and Docker connections are given back.
        wait_for("the sockets to close", lambda: sockets(pid) <= opened - 3)

        def accepted() -> bool:
            with client.stream("GET", "/getLogs", json=log_request(c)) as r:
                return r.status_code == 200

        wait_for("a slot to be free again", accepted)
        plain = tight.http.request("GET", "/getLogs", json=log_request(a, follow=False))
        assert plain.status_code == 200 and plain.text == "hello\n"
    for p in (a, b, c):
        tight.delete(p)


def test_follows_through_the_api_leave_its_calls_alone(roomy, tmp_path):
    """Before: the API's follows shared its pool of PluginMaxConnections with every call, so
    that many idle follows made /create and /status wait for ever."""
    quiet = quiet_pod("through-api")
    roomy.run(create_body(quiet))
    port = int(roomy.proc.base.rsplit(":", 1)[1])
    api = start_api(tmp_path, {"SidecarURL": "http://127.0.0.1", "SidecarPort": port,
                               "PluginMaxConnections": 4, "MaxLogStreams": 12})
    limits = httpx.Limits(max_connections=20)
    try:
        with httpx.Client(base_url=api.base, timeout=30, limits=limits) as client, \
                ExitStack() as stack:
            streams = [follow(stack, client, quiet) for _ in range(12)]
            assert all(r.status_code == 200 for r in streams)
            last = streams[-1].iter_raw()  # kept: a dropped iterator closes its stream
            assert next(last).startswith(b"hello")
            for opts in (True, False):
                over = client.request("GET", "/getLogs", json=log_request(quiet, opts))
                assert over.status_code == 429, over.text
                assert "MaxLogStreams" in over.text and "12" in over.text
            # Three times more calls than the pool holds, all answered.
            made = pod("api-while-following", [container("main", "exec sleep 3600")], grace=0)
            assert client.post("/create", json=create_body(made)).status_code == 200
            for _ in range(12):
                r = client.request("GET", "/status", json=[made])
                assert r.status_code == 200 and r.json()[0]["UID"] == made["metadata"]["uid"]
            assert client.post("/pinglink").status_code == 200
            assert client.request("POST", "/delete", json=made).status_code == 200
        # The followers left: their slots come back.
        with httpx.Client(base_url=api.base, timeout=30) as client:
            def served() -> bool:
                r = client.request("GET", "/getLogs", json=log_request(quiet, follow=False))
                return r.status_code == 200 and r.text == "hello\n"

            wait_for("the API's log slots to be free again", served)
    finally:
        api.stop()
        roomy.delete(quiet)
