"""The typed view of Docker's inspect answers (docker_sidecar/containers.py)."""

from __future__ import annotations

from typing import Any

from docker_sidecar import labels as L
from docker_sidecar.containers import Container, Summary, attempts, latest_attempts

ZERO = "0001-01-01T00:00:00Z"


def inspect(name: str, role: str = L.ROLE_MAIN, attempt: int = 0, **state: Any
            ) -> dict[str, Any]:
    labels = {L.POD_UID: "u1", L.ROLE: role, L.CONTAINER: name}
    if attempt:
        labels[L.ATTEMPT] = str(attempt)
    return {"Id": f"{name}-{attempt}", "Name": f"/il_{name}_{attempt}",
            "Config": {"Labels": labels, "Tty": True},
            "State": {"Status": "running", "Running": True, "StartedAt": "2025-01-01T00:00:00Z",
                      "FinishedAt": ZERO, **state},
            "RestartCount": 2, "LogPath": "/var/log/c.log",
            "GraphDriver": {"Data": {"UpperDir": "/upper"}}}


def test_identity_and_files() -> None:
    c = Container(inspect("app", attempt=3))
    assert (c.id, c.pod_uid, c.role, c.name, c.attempt) == ("app-3", "u1", "main", "app", 3)
    assert (c.docker_name, c.tty, c.log_path, c.upper_dir) == ("il_app_3", True,
                                                               "/var/log/c.log", "/upper")
    assert c.restart_count == 2 and not c.is_infra


def test_state() -> None:
    running = Container(inspect("a"))
    assert running.state.running and not running.has_stopped and not running.state.finished
    done = Container(inspect("a", Status="exited", Running=False, ExitCode=3, OOMKilled=True,
                             FinishedAt="2025-01-01T00:01:00Z"))
    assert done.has_stopped and done.state.finished
    assert (done.state.exit_code, done.state.oom_killed) == (3, True)
    failed = Container(inspect("a", Status="created", Running=False, Error="no such file"))
    assert failed.state.start_failed and failed.has_stopped
    created = Container(inspect("a", Status="created", Running=False))
    assert created.state.created_only and not created.has_stopped


def test_latest_attempt_of_each_container() -> None:
    found = [Container(inspect("init", L.ROLE_INIT, 2)), Container(inspect("init", L.ROLE_INIT, 1)),
             Container(inspect("app")), Container(inspect("", L.ROLE_INFRA))]
    latest = latest_attempts(found)
    assert latest[(L.ROLE_INIT, "init")].attempt == 2
    assert latest[(L.ROLE_MAIN, "app")].id == "app-0"
    assert [c.attempt for c in attempts(found, L.ROLE_INIT, "init")] == [1, 2]


def test_missing_parts_read_as_empty() -> None:
    c = Container({"Id": "x"})
    assert (c.labels, c.name, c.attempt, c.state.exit_code, c.log_path) == ({}, "", 0, None, "")
    assert Container.of(None) is None and Container.of(c) is c


def test_list_summaries() -> None:
    s = Summary({"Id": "x", "Labels": {L.ROLE: L.ROLE_INFRA, L.POD_UID: "u"},
                 "State": "running"})
    assert (s.id, s.pod_uid, s.is_infra, s.running) == ("x", "u", True, True)
