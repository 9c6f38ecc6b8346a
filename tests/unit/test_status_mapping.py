"""Docker inspect -> Kubernetes ContainerStatus, not-found statuses and the VK's phase rule
(docs/PROTOCOL.md sections 3-4). Pure: the inspect dicts are written here as Docker returns
them."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
from kube import container, pod, vk_phase

from docker_sidecar.status import (
    ContainerFacts,
    Waiting,
    container_status,
    not_found_status,
    phase_of,
)
from interlink_common.wire import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodStatus,
)

ZERO = "0001-01-01T00:00:00Z"
STARTED = "2025-03-04T10:15:40.123456789Z"
FINISHED = "2025-03-04T10:16:02.987654321Z"
CID = "4f2a" * 16
IMAGE_ID = "sha256:" + "ab" * 32
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def inspect(status: str, *, running: bool = False, restarting: bool = False, exit_code: int = 0,
            oom: bool = False, error: str = "", started: str = ZERO,
            finished: str = ZERO) -> dict[str, Any]:
    """A Docker ``inspect`` result, trimmed to what a status needs plus realistic noise."""
    return {
        "Id": CID, "Created": "2025-03-04T10:15:39.5Z", "Image": IMAGE_ID,
        "Name": "/il_ns_pod_c_uid", "RestartCount": 0,
        "State": {"Status": status, "Running": running, "Paused": False,
                  "Restarting": restarting, "OOMKilled": oom, "Dead": False, "Pid": 0,
                  "ExitCode": exit_code, "Error": error, "StartedAt": started,
                  "FinishedAt": finished},
        "Config": {"Image": "busybox:1.36", "Labels": {}},
    }


def running() -> dict[str, Any]:
    return inspect("running", running=True, started=STARTED)


def exited(code: int, **kw: Any) -> dict[str, Any]:
    return inspect("exited", exit_code=code, started=STARTED, finished=FINISHED, **kw)


def status_of(docker: dict[str, Any] | None = None, **kw: Any) -> ContainerStatus:
    return container_status(ContainerFacts(name="c", image="busybox:1.36", docker=docker, **kw))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# --- running --------------------------------------------------------------------------------------


def test_running_container() -> None:
    s = status_of(running(), restart_count=3)
    assert s.state.running is not None and s.state.waiting is None and s.state.terminated is None
    assert s.state.running.startedAt == at("2025-03-04T10:15:40.123456")
    assert (s.ready, s.started, s.restartCount) == (True, True, 3)
    assert (s.containerID, s.imageID) == (f"docker://{CID}", f"docker://{IMAGE_ID}")
    wire = s.to_wire()
    assert wire["state"] == {"running": {"startedAt": "2025-03-04T10:15:40Z"}}
    assert wire["lastState"] == {}


@pytest.mark.parametrize(("verdict", "ready"), [(None, True), (True, True), (False, False)])
def test_running_ready_follows_the_probe_verdict(verdict: bool | None, ready: bool) -> None:
    assert status_of(running(), ready=verdict).ready is ready


def test_paused_container_still_counts_as_running() -> None:
    info = running()
    info["State"].update(Status="paused", Paused=True)
    assert status_of(info).state.running is not None


# --- terminated -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("info", "code", "reason"), [
    (exited(0), 0, "Completed"),
    (exited(42), 42, "Error"),
    (exited(137, oom=True), 137, "OOMKilled"),
    (inspect("dead", exit_code=1, started=STARTED, finished=FINISHED), 1, "Error"),
])
def test_terminated_container(info: dict[str, Any], code: int, reason: str) -> None:
    s = status_of(info)
    t = s.state.terminated
    assert t is not None and s.state.running is None and s.state.waiting is None
    assert (t.exitCode, t.reason) == (code, reason)
    assert t.startedAt == at("2025-03-04T10:15:40.123456")
    assert t.finishedAt == at("2025-03-04T10:16:02.987654")
    assert t.containerID == s.containerID == f"docker://{CID}"
    assert (s.ready, s.started) == (False, False)
    assert s.to_wire()["state"]["terminated"]["finishedAt"] == "2025-03-04T10:16:02Z"


@pytest.mark.parametrize("exit_code", [0, 127, 128])
def test_start_failure_is_a_start_error_with_dockers_message(exit_code: int) -> None:
    message = ('failed to create task for container: exec: "/no/such": stat /no/such: '
               'no such file or directory: unknown')
    s = status_of(inspect("created", exit_code=exit_code, error=message))
    t = s.state.terminated
    assert t is not None
    assert t.reason == "StartError" and t.message == message
    assert t.exitCode != 0 and (exit_code == 0 or t.exitCode == exit_code)
    assert t.startedAt is None
    wire = s.to_wire()["state"]["terminated"]
    assert wire["startedAt"] is None and wire["message"] == message


def test_created_without_error_is_waiting_container_creating() -> None:
    s = status_of(inspect("created"))
    assert s.state.waiting == ContainerStateWaiting(reason="ContainerCreating")
    assert s.containerID == f"docker://{CID}"
    assert s.ready is False


def test_restarting_is_crash_loop_back_off_with_the_last_run() -> None:
    info = inspect("restarting", running=True, restarting=True, exit_code=3, started=STARTED,
                   finished=FINISHED)
    s = status_of(info, restart_count=2)
    assert s.state.waiting is not None and s.state.running is None
    assert s.state.waiting.reason == "CrashLoopBackOff"
    assert s.state.waiting.message.endswith("container c")
    last = s.lastState.terminated
    assert last is not None and (last.exitCode, last.reason) == (3, "Error")
    assert s.restartCount == 2
    assert s.to_wire()["lastState"]["terminated"]["exitCode"] == 3


# --- no Docker container, overrides -------------------------------------------------------------


@pytest.mark.parametrize(("waiting", "reason", "message"), [
    (None, "ContainerCreating", ""),
    (Waiting("ErrImagePull", "pull access denied for nope"), "ErrImagePull",
     "pull access denied for nope"),
    (Waiting("PodInitializing"), "PodInitializing", ""),
])
def test_without_a_docker_container(waiting: Waiting | None, reason: str, message: str) -> None:
    s = status_of(None, waiting=waiting)
    assert s.state.waiting == ContainerStateWaiting(reason=reason, message=message)
    assert (s.containerID, s.imageID, s.ready) == ("", "", False)
    wire_waiting = s.to_wire()["state"]["waiting"]
    assert wire_waiting == ({"reason": reason, "message": message} if message
                            else {"reason": reason})


def test_terminated_override_wins_over_docker() -> None:
    override = ContainerStateTerminated(exitCode=1, reason="DeadlineExceeded", message="too long")
    for docker in (running(), exited(0), None):
        s = status_of(docker, terminated_override=override, waiting=Waiting("Ignored"))
        assert s.state == ContainerState(terminated=override)


# --- not found ------------------------------------------------------------------------------------


def test_not_found_terminates_every_container() -> None:
    p = pod("gone", [container("a"), container("b", image="other:2")], init=[container("i")],
            namespace="team-a")
    st = not_found_status(p, "the sidecar has no record of this pod")
    assert (st.name, st.UID, st.namespace) == ("gone", p["metadata"]["uid"], "team-a")
    assert [c.name for c in st.containers] == ["a", "b"]
    assert [c.name for c in st.initContainers] == ["i"]
    assert st.containers[1].image == "other:2"
    for c in st.containers + st.initContainers:
        t = c.state.terminated
        assert t is not None and t.reason == "NotFound" and t.exitCode != 0
        assert t.message == "the sidecar has no record of this pod"
    assert phase_of(st) == vk_phase(st.to_wire()) == "Failed"


def test_not_found_without_containers_still_lists_one() -> None:
    st = not_found_status({"metadata": {"name": "x", "uid": "u"}, "spec": {}}, "why")
    assert len(st.containers) == 1
    assert st.containers[0].state.terminated.exitCode != 0
    assert st.initContainers == []
    assert phase_of(st) == "Failed"


# --- phase (docs/PROTOCOL.md section 4) -------------------------------------------------------


def waiting_s(name: str) -> ContainerStatus:
    return ContainerStatus(name=name, state=ContainerState(
        waiting=ContainerStateWaiting(reason="ContainerCreating")))


def running_s(name: str) -> ContainerStatus:
    return ContainerStatus(name=name, state=ContainerState(running=ContainerStateRunning()))


def done_s(name: str, code: int = 0) -> ContainerStatus:
    return ContainerStatus(name=name, state=ContainerState(
        terminated=ContainerStateTerminated(exitCode=code)))


@pytest.mark.parametrize(("init", "main", "phase"), [
    ([waiting_s("i")], [waiting_s("m")], "Pending"),
    ([running_s("i")], [waiting_s("m")], "Pending"),
    ([done_s("i"), running_s("j")], [done_s("m", 1)], "Pending"),
    ([done_s("i")], [waiting_s("m")], "Pending"),
    ([done_s("i")], [running_s("m")], "Running"),
    ([], [running_s("a"), done_s("b", 1)], "Running"),
    ([], [running_s("a"), waiting_s("b")], "Running"),
    ([], [done_s("a"), waiting_s("b")], "Pending"),
    ([], [done_s("a"), done_s("b", 2)], "Failed"),
    ([done_s("i", 1)], [done_s("a")], "Succeeded"),
    ([], [done_s("a"), done_s("b")], "Succeeded"),
    ([], [], "Succeeded"),
])
def test_phase_follows_the_vk(init: list[ContainerStatus], main: list[ContainerStatus],
                              phase: str) -> None:
    st = PodStatus(name="p", UID="u", namespace="n", containers=main, initContainers=init)
    assert phase_of(st) == phase
    assert vk_phase(st.to_wire()) == phase


# --- wire JSON ------------------------------------------------------------------------------------

STATUS_KEYS = ["name", "state", "lastState", "ready", "restartCount", "image", "imageID",
               "containerID", "started"]
TERMINATED_KEYS = {"exitCode", "signal", "reason", "message", "startedAt", "finishedAt",
                   "containerID"}


def all_timestamps(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k in ("startedAt", "finishedAt")] + [
            t for v in value.values() for t in all_timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in all_timestamps(v)]
    return []


@pytest.mark.parametrize("facts", [
    ContainerFacts(name="c", image="i", docker=running()),
    ContainerFacts(name="c", image="i", docker=exited(42)),
    ContainerFacts(name="c", image="i", docker=inspect("created", error="boom")),
    ContainerFacts(name="c", image="i", docker=inspect(
        "restarting", running=True, restarting=True, exit_code=1, started=STARTED,
        finished=FINISHED)),
    ContainerFacts(name="c", image="i", waiting=Waiting("ErrImagePull", "denied")),
], ids=["running", "exited", "start-error", "restarting", "no-container"])
def test_wire_json_keys_and_timestamps(facts: ContainerFacts) -> None:
    wire = container_status(facts).to_wire()
    assert list(wire) == STATUS_KEYS
    states = [wire["state"]] + ([wire["lastState"]] if wire["lastState"] else [])
    for state in states:
        assert len(state) == 1 and set(state) <= {"waiting", "running", "terminated"}
        if "terminated" in state:
            assert set(state["terminated"]) <= TERMINATED_KEYS
            assert {"exitCode", "startedAt", "finishedAt"} <= set(state["terminated"])
        if "running" in state:
            assert list(state["running"]) == ["startedAt"]
        if "waiting" in state:
            assert set(state["waiting"]) <= {"reason", "message"}
    for ts in all_timestamps(wire):
        assert ts is None or RFC3339.match(ts), ts


def test_pod_status_wire_keys() -> None:
    st = not_found_status(pod("p", [container("a")]), "gone")
    wire = st.to_wire()
    assert list(wire) == ["name", "UID", "namespace", "JID", "containers", "initContainers"]
    assert wire["initContainers"] == []
    terminated = wire["containers"][0]["state"]["terminated"]
    assert terminated["startedAt"] is None and terminated["finishedAt"] is None
    assert terminated["reason"] == "NotFound" and terminated["exitCode"] != 0
