"""Workloads on the real engine: what runs inside the containers, and what the VK is told.

Init containers, command/args, environment, restart policies, readiness probes and containers
that cannot start. Pods of one test run at once; every pod is deleted when its test ends.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest

from kube import config_map, container, create_body, pod, secret, state_of, vk_phase

ENTRYPOINT_IMAGE = "interlink-test/entrypoint:1"
BROKEN_IMAGE = "interlink-test/broken:1"
WORK = [{"name": "work", "mountPath": "/w"}]
WORK_VOLUME = [{"name": "work", "emptyDir": {}}]


@pytest.fixture
def launch(sidecar):
    """Create pods (all at once) and delete them, in parallel, when the test ends."""
    created: list[dict[str, Any]] = []

    def _launch(*bodies: dict[str, Any]) -> None:
        for body in bodies:
            r = sidecar.create(body)
            assert r.status_code == 200, r.text
            created.append(body["pod"])

    yield _launch

    def delete(p: dict[str, Any]) -> None:
        httpx.request("DELETE", f"{sidecar.proc.base}/delete", json=p, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(delete, created))


def state(status: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    return state_of(status, name, init)["state"]


def docker_containers(sidecar, p: dict[str, Any], role: str) -> list[Any]:
    return sidecar.docker.containers.list(all=True, filters={"label": [
        f"io.interlink.pod.uid={p['metadata']['uid']}", f"io.interlink.container.role={role}"]})


def docker_time(text: str) -> datetime:
    """Docker's RFC 3339 time with up to nanoseconds (trailing zeros dropped), to microseconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def environ(sidecar, p: dict[str, Any], name: str) -> dict[str, str]:
    """The container's environment exactly as its process got it (/proc/self/environ)."""
    raw = sidecar.logs(p, name).text
    return dict(entry.split("=", 1) for entry in raw.split("\0") if entry)


# --- 1-3. init containers ------------------------------------------------------------------------


def test_init_containers_run_one_after_another_before_the_main_containers(sidecar, launch):
    # Shorter sleeps later: run in parallel, they would append in the opposite order.
    p = pod("init-order", [container("main", "cat /w/order", volumeMounts=WORK)], init=[
        container("first", "sleep 1.2; echo first >> /w/order", volumeMounts=WORK),
        container("second", "sleep 0.4; echo second >> /w/order", volumeMounts=WORK),
        container("third", "echo third >> /w/order", volumeMounts=WORK),
    ], volumes=WORK_VOLUME)
    launch(create_body(p))
    during = sidecar.wait(p, lambda s: "running" in state(s, "first", init=True))
    assert vk_phase(during) == "Pending"
    assert state(during, "main")["waiting"]["reason"] == "PodInitializing"
    assert "waiting" in state(during, "second", init=True)
    assert docker_containers(sidecar, p, "main") == []

    done = sidecar.wait_phase(p, "Succeeded")
    assert sidecar.logs(p, "main").text == "first\nsecond\nthird\n"
    for name in ("first", "second", "third"):
        term = state(done, name, init=True)["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
    # Each one started only after the one before had exited (Docker's own clock).
    runs = [sidecar.container(p, n).attrs["State"] for n in ("first", "second", "third", "main")]
    for before, after in zip(runs, runs[1:]):
        assert docker_time(after["StartedAt"]) >= docker_time(before["FinishedAt"])


def test_failing_init_container_fails_the_pod_under_never(sidecar, launch):
    p = pod("init-fails", [container("app", "echo should not run"),
                           container("helper", "echo should not run either")], init=[
        container("setup", "echo setting up; exit 7"),
        container("later", "echo never reached"),
    ])
    launch(create_body(p))
    status = sidecar.wait_phase(p, "Failed")
    setup = state(status, "setup", init=True)["terminated"]
    assert setup["exitCode"] == 7 and setup["reason"] == "Error"
    assert sidecar.logs(p, "setup").text == "setting up\n"
    for name in ("app", "helper"):
        term = state(status, name)["terminated"]
        assert term["exitCode"] != 0
        assert "setup" in term["message"]
    # Neither the init container after it nor any main container ever ran.
    assert "running" not in state(status, "later", init=True)
    names = {c.labels["io.interlink.container.name"] for c in docker_containers(sidecar, p, "init")}
    assert names == {"setup"}
    assert docker_containers(sidecar, p, "main") == []
    time.sleep(0.5)  # and it stays that way
    assert vk_phase(sidecar.status(p)) == "Failed"
    assert docker_containers(sidecar, p, "main") == []


def test_failing_init_container_is_rerun_under_on_failure(sidecar, launch):
    flaky = "n=$(cat /w/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /w/count; " \
            "echo attempt $n; [ $n -ge 2 ]"
    p = pod("init-retry", [container("main", "echo main saw $(cat /w/count)", volumeMounts=WORK)],
            init=[container("flaky", flaky, volumeMounts=WORK)],
            volumes=WORK_VOLUME, restart="OnFailure")
    launch(create_body(p))
    status = sidecar.wait_phase(p, "Succeeded")
    flaky_status = state_of(status, "flaky", init=True)
    assert flaky_status["restartCount"] >= 1
    assert flaky_status["state"]["terminated"]["reason"] == "Completed"
    assert sidecar.logs(p, "main").text == "main saw 2\n"
    assert sidecar.logs(p, "flaky").text == "attempt 2\n"


# --- 4. command and args --------------------------------------------------------------------------


@pytest.mark.parametrize("fields, expected", [
    ({}, "from-entrypoint from-cmd"),
    ({"args": ["one", "two words"]}, "from-entrypoint one two words"),
    ({"command": ["/bin/echo", "own-command"]}, "own-command"),
    ({"command": ["/bin/echo", "own"], "args": ["and", "args"]}, "own and args"),
])
def test_command_and_args_follow_kubernetes_semantics(sidecar, launch, fields, expected):
    p = pod("cmd-args", [container("main", image=ENTRYPOINT_IMAGE, **fields)])
    launch(create_body(p))
    sidecar.wait_phase(p, "Succeeded")
    assert sidecar.logs(p, "main").text == expected + "\n"


def test_working_dir_is_honoured_even_when_the_image_lacks_it(sidecar, launch):
    a = pod("wd-existing", [container("main", "pwd", workingDir="/tmp")])
    b = pod("wd-new", [container("main", "pwd; ls -d /srv/app/data",
                                 workingDir="/srv/app/data")])
    launch(create_body(a), create_body(b))
    sidecar.wait_phase(a, "Succeeded")
    sidecar.wait_phase(b, "Succeeded")
    assert sidecar.logs(a, "main").text == "/tmp\n"
    assert sidecar.logs(b, "main").text == "/srv/app/data\n/srv/app/data\n"


# --- 5. environment -------------------------------------------------------------------------------

TRICKY = {
    "PLAIN": "hello",
    "QUOTES": "it's \"quoted\"",
    "SPACES": "  two  spaces  ",
    "JSON": '{"a": [1, 2], "b": {"c": "d"}}',
    "NEWLINES": "line one\nline two\n",
    "DOLLAR_HOME": "$HOME/not-expanded",
    "BACKTICKS": "`id` and $(id -u) stay",
    "SEMICOLON": "a; rm -rf /; b",
    "UNICODE": "gr\u00fc\u00dfe \u2603",
}


def test_env_values_reach_the_process_untouched(sidecar, launch):
    p = pod("env-plain", [container("main", command=["cat", "/proc/self/environ"],
                                    env=[{"name": k, "value": v} for k, v in TRICKY.items()])])
    launch(create_body(p))
    sidecar.wait_phase(p, "Succeeded")
    env = environ(sidecar, p, "main")
    for key, value in TRICKY.items():
        assert env[key] == value, key
    assert env["HOSTNAME"] == "env-plain"


def test_env_from_objects_downward_api_and_resources(sidecar, launch):
    cm = config_map("settings", {"mode": "fast", "level": "3", "bad-key!": "skipped"})
    sec = secret("creds", {"password": "s3cr3t with space\n", "user": "alice"})
    env = [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MISSING_OK", "valueFrom": {"configMapKeyRef": {
            "name": "settings", "key": "nope", "optional": True}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {
            "resource": "limits.memory", "divisor": "1Mi"}}},
    ]
    p = pod("env-sources", [container(
        "main", command=["cat", "/proc/self/environ"], env=env,
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                 {"secretRef": {"name": "creds"}}],
        resources={"limits": {"memory": "64Mi"}})], labels={"app": "portal", "tier": "web"})
    launch(create_body(p, config_maps=[cm], secrets=[sec]))
    sidecar.wait_phase(p, "Succeeded")
    got = environ(sidecar, p, "main")
    assert got["MODE"] == "fast"
    assert got["PASSWORD"] == "s3cr3t with space\n"
    assert "MISSING_OK" not in got
    assert got["POD_NAME"] == "env-sources" and got["POD_NAMESPACE"] == "tests"
    assert got["POD_UID"] == p["metadata"]["uid"]
    assert got["APP"] == "portal" and got["NODE"] == "interlink-node"
    assert got["MEM_MI"] == "64"
    assert got["CFG_mode"] == "fast" and got["CFG_level"] == "3"
    assert got["user"] == "alice" and got["password"] == "s3cr3t with space\n"
    assert not any("bad-key" in k for k in got)
    main = sidecar.container(p, "main")
    infra = sidecar.docker.containers.get(main.attrs["HostConfig"]["NetworkMode"].split(":", 1)[1])
    assert got["POD_IP"] == infra.attrs["NetworkSettings"]["IPAddress"] != ""


def test_dollar_parenthesis_expansion(sidecar, launch):
    env = [
        {"name": "GREETING", "value": "hi"},
        {"name": "WHO", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "COMBINED", "value": "$(GREETING) $(WHO)!"},
        {"name": "ESCAPED", "value": "$$(GREETING)"},
        {"name": "UNKNOWN", "value": "$(NOT_DEFINED) stays"},
        {"name": "LATER", "value": "$(DEFINED_AFTER)"},
        {"name": "DEFINED_AFTER", "value": "x"},
    ]
    shows = pod("expand-env", [container("main", command=["cat", "/proc/self/environ"], env=env)])
    echo = pod("expand-args", [container(
        "main", command=["/bin/echo", "$(GREETING)"],
        args=["$(WHO)", "$$(GREETING)", "$(NOT_DEFINED)", "$GREETING", "$(COMBINED)"], env=env)])
    launch(create_body(shows), create_body(echo))
    sidecar.wait_phase(shows, "Succeeded")
    sidecar.wait_phase(echo, "Succeeded")
    got = environ(sidecar, shows, "main")
    assert got["COMBINED"] == "hi expand-env!"
    assert got["ESCAPED"] == "$(GREETING)"
    assert got["UNKNOWN"] == "$(NOT_DEFINED) stays"
    assert got["LATER"] == "$(DEFINED_AFTER)"  # only names defined before are expanded
    assert sidecar.logs(echo, "main").text == \
        "hi expand-args $(GREETING) $(NOT_DEFINED) $GREETING hi expand-args!\n"


# --- 6. restart policies --------------------------------------------------------------------------


def test_restart_policies(sidecar, launch):
    flaky = "n=$(cat /w/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /w/count; " \
            "echo run $n; [ $n -ge 3 ]"
    on_failure = pod("restart-onfailure", [container("main", flaky, volumeMounts=WORK)],
                     volumes=WORK_VOLUME, restart="OnFailure")
    always = pod("restart-always", [container("main", "echo up; sleep 0.3; exit 2")],
                 restart="Always", grace=0)
    never = pod("restart-never", [container("main", "echo once; exit 3")])
    launch(create_body(on_failure), create_body(always), create_body(never))

    status = sidecar.wait_phase(never, "Failed")
    assert state(status, "main")["terminated"]["exitCode"] == 3
    assert state_of(status, "main")["restartCount"] == 0
    assert sidecar.container(never, "main").attrs["RestartCount"] == 0

    status = sidecar.wait_phase(on_failure, "Succeeded")
    main = state_of(status, "main")
    assert main["restartCount"] == 2 == sidecar.container(on_failure, "main").attrs["RestartCount"]
    assert main["state"]["terminated"]["reason"] == "Completed"
    assert sidecar.logs(on_failure, "main").text == "run 1\nrun 2\nrun 3\n"

    seen: list[dict[str, Any]] = []

    def crash_looped(s: dict[str, Any]) -> bool:
        if state_of(s, "main").get("containerID"):  # created
            seen.append(state_of(s, "main"))
        return bool(seen) and seen[-1]["restartCount"] >= 3 and any(
            "waiting" in c["state"] for c in seen if c["restartCount"] >= 1)

    sidecar.wait(always, crash_looped, timeout=20)
    counts = [c["restartCount"] for c in seen]
    assert counts == sorted(counts)
    for c in seen:
        assert "terminated" not in c["state"]  # Always: never reported as finished
        if "waiting" in c["state"]:
            assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            assert c["lastState"]["terminated"]["exitCode"] == 2
    assert sidecar.container(always, "main").attrs["RestartCount"] >= 3


# --- 7. readiness probes --------------------------------------------------------------------------


def serve(port: int, delay: float) -> str:
    return f"sleep {delay}; echo ok > /tmp/index.html; exec httpd -f -p {port} -h /tmp"


FAST = {"periodSeconds": 1, "timeoutSeconds": 1}
FLIPPING = ("http", "named", "tcp", "exec")


@pytest.fixture(scope="module")
def probed(sidecar):
    """One pod whose probed containers become ready ~2 s after they start, except one that
    never does; every status seen from Running until every flip happened (and at least 4 s)."""
    p = pod("probed", [
        container("http", serve(8080, 2), readinessProbe={
            "httpGet": {"path": "/index.html", "port": 8080}, **FAST}),
        container("named", serve(8081, 2), ports=[{"name": "web", "containerPort": 8081}],
                  readinessProbe={"httpGet": {"path": "/", "port": "web"}, **FAST}),
        container("tcp", "sleep 2; exec nc -ll -p 9000 -e true",
                  readinessProbe={"tcpSocket": {"port": 9000}, **FAST}),
        container("exec", "sleep 2; touch /tmp/ready; exec sleep 3600",
                  readinessProbe={"exec": {"command": ["test", "-f", "/tmp/ready"]}, **FAST}),
        container("never", serve(8082, 0), readinessProbe={
            "httpGet": {"path": "/missing", "port": 8082}, **FAST}),
        container("plain", "exec sleep 3600"),
    ], restart="Always", grace=0)
    r = sidecar.create(create_body(p))
    assert r.status_code == 200, r.text
    history = [sidecar.wait_phase(p, "Running")]
    start = time.monotonic()
    while time.monotonic() - start < 20:
        time.sleep(0.2)
        history.append(sidecar.status(p))
        if time.monotonic() - start > 4 and all(
                state_of(history[-1], n)["ready"] for n in FLIPPING):
            break
    yield p, history
    sidecar.delete(p)


@pytest.mark.parametrize("name", FLIPPING)
def test_readiness_probe_turns_ready_once_the_check_passes(probed, name):
    _, history = probed
    running = [state_of(s, name)["ready"] for s in history if "running" in state(s, name)]
    assert running and running[0] is False  # not ready the moment it runs
    assert running[-1] is True, f"{name} never became ready"
    flip = running.index(True)
    assert flip >= 2 and all(running[flip:])  # ~2 s later, and it stays ready
    assert all(state_of(s, name)["ready"] is False for s in history
               if "running" not in state(s, name))


def test_readiness_probe_that_keeps_failing_keeps_the_container_unready(sidecar, probed):
    p, history = probed
    running = [s for s in history if "running" in state(s, "never")]
    assert len(running) >= 10  # several probe periods
    for s in history:
        assert state_of(s, "never")["ready"] is False
    for s in running:
        assert vk_phase(s) == "Running"
    # The server does answer, only not on the probed path.
    code, out = sidecar.container(p, "never").exec_run(
        ["wget", "-q", "-O", "-", "http://127.0.0.1:8082/index.html"])
    assert code == 0 and out == b"ok\n"


def test_container_without_probe_is_ready_while_running(probed):
    _, history = probed
    plain = [state_of(s, "plain") for s in history]
    assert any("running" in c["state"] for c in plain)
    assert all(c["ready"] is ("running" in c["state"]) for c in plain)


# --- 8. containers that cannot start ------------------------------------------------------------


def test_container_that_cannot_start_fails_the_pod(sidecar, launch):
    broken = pod("broken-image", [container("main", image=BROKEN_IMAGE)])
    missing = pod("missing-binary", [container("main", image=BROKEN_IMAGE,
                                               command=["/no/such/binary", "arg"])])
    sibling = pod("broken-sibling", [container("ok", "echo fine"),
                                     container("bad", command=["/no/such/binary"])])
    bad_init = pod("broken-init", [container("main", "echo never")],
                   init=[container("setup", command=["/no/such/binary"])])
    launch(*(create_body(p) for p in (broken, missing, sibling, bad_init)))
    for p, name, path, init in ((broken, "main", "/bin/no-such-program", False),
                                (missing, "main", "/no/such/binary", False),
                                (sibling, "bad", "/no/such/binary", False),
                                (bad_init, "setup", "/no/such/binary", True)):
        status = sidecar.wait_phase(p, "Failed", timeout=20)
        term = state(status, name, init=init)["terminated"]
        assert term["exitCode"] != 0 and term["reason"] not in ("", "Completed"), term
        assert path in term["message"] and "no such file or directory" in term["message"]
        assert term["message"] == sidecar.container(p, name).attrs["State"]["Error"]
    assert sidecar.logs(sibling, "ok").text == "fine\n"
    assert state(sidecar.status(sibling), "ok")["terminated"]["exitCode"] == 0
    main = state(sidecar.status(bad_init), "main")["terminated"]
    assert main["exitCode"] != 0 and "setup" in main["message"]
    assert docker_containers(sidecar, bad_init, "main") == []
