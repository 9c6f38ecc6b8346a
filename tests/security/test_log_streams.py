"""Log streams cannot starve the sidecar: idle ``Follow`` streams hold no worker thread, so pods
are still created and deleted while many are open; follows are capped per pod and in total
(429 naming the key); a client that goes away gives its slot and its Docker connection back."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from kube import container, create_body, pod

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
            # Reading without Follow is never capped.
            plain = tight.http.request("GET", "/getLogs", json=log_request(a, follow=False))
            assert plain.status_code == 200 and plain.text == "hello\n"
            opened = sockets(pid)
        # The clients went away: their slots and Docker connections are given back.
        wait_for("the sockets to close", lambda: sockets(pid) <= opened - 3)

        def accepted() -> bool:
            with client.stream("GET", "/getLogs", json=log_request(c)) as r:
                return r.status_code == 200

        wait_for("a slot to be free again", accepted)
    for p in (a, b, c):
        tight.delete(p)
