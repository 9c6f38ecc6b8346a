"""What a kubelet would do for running containers, done by the sidecar on the real engine:
startup/liveness probes, lifecycle hooks, termination messages, back-off, stdin and tty."""

from __future__ import annotations

import time


from kube import container, create_body, pod, state_of, vk_phase

EXEC = lambda *cmd: {"exec": {"command": list(cmd)}}  # noqa: E731


def probe(handler: dict, **settings) -> dict:
    return {**handler, "periodSeconds": 1, "timeoutSeconds": 1, **settings}


def test_startup_probe_gates_started_and_ready(sidecar):
    p = pod("startup", [container(
        "main", "sleep 4; touch /tmp/started; sleep 3600",
        startupProbe=probe(EXEC("test", "-f", "/tmp/started"), failureThreshold=30),
        readinessProbe=probe(EXEC("true")))], restart="Always")
    status = sidecar.run(create_body(p))
    main = state_of(status, "main")
    assert main["started"] is False and main["ready"] is False
    status = sidecar.wait(p, lambda s: state_of(s, "main")["ready"], timeout=20)
    assert state_of(status, "main")["started"] is True
    assert state_of(status, "main")["restartCount"] == 0
    sidecar.delete(p)


def test_failing_liveness_probe_restarts_the_container(sidecar):
    p = pod("liveness", [container(
        "main", "echo run >> /data/runs; sleep 3600",
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        livenessProbe=probe(EXEC("false"), failureThreshold=2))],
        volumes=[{"name": "data", "emptyDir": {}}], restart="Always", grace=1)
    sidecar.run(create_body(p))
    status = sidecar.wait(p, lambda s: state_of(s, "main")["restartCount"] >= 2, timeout=40)
    assert vk_phase(status) in ("Running", "Pending")
    runs = (sidecar.data_root / "pods" / p["metadata"]["uid"] / "volumes" / "data" / "runs")
    assert runs.read_text().count("run") >= 2  # really started again, not just counted
    sidecar.delete(p)


def test_liveness_failure_under_never_ends_the_pod(sidecar):
    p = pod("liveness-never", [container(
        "main", "sleep 3600", livenessProbe=probe(EXEC("false"), failureThreshold=1))],
        restart="Never", grace=1)
    status = sidecar.run(create_body(p), phase="Failed", timeout=30)
    term = state_of(status, "main")["state"]["terminated"]
    assert term["exitCode"] != 0 and "liveness probe failed" in term["message"]


def test_startup_probe_that_never_passes_kills_the_container(sidecar):
    p = pod("never-starts", [container(
        "main", "sleep 3600", startupProbe=probe(EXEC("false"), failureThreshold=2))],
        restart="Never", grace=1)
    status = sidecar.run(create_body(p), phase="Failed", timeout=30)
    assert "startup probe failed" in state_of(status, "main")["state"]["terminated"]["message"]


def test_post_start_hook_runs_right_after_start(sidecar):
    p = pod("post-start", [container(
        "main", "for i in 1 2 3 4 5 6 7 8 9 10; do [ -f /tmp/marker ] && break; sleep 0.5; done;"
                " echo marker: $(cat /tmp/marker); sleep 3600",
        lifecycle={"postStart": EXEC("sh", "-c", "echo from-post-start > /tmp/marker")})],
        restart="Always")
    sidecar.run(create_body(p))
    sidecar.wait(p, lambda s: "marker: from-post-start" in sidecar.logs(p, "main").text)
    sidecar.delete(p)


def test_failing_post_start_hook_kills_the_container(sidecar):
    p = pod("post-start-fails", [container(
        "main", "sleep 3600", lifecycle={"postStart": EXEC("sh", "-c", "exit 3")})],
        restart="Never", grace=1)
    status = sidecar.run(create_body(p), phase="Failed", timeout=30)
    term = state_of(status, "main")["state"]["terminated"]
    assert term["exitCode"] != 0 and "FailedPostStartHook" in term["message"]


def test_pre_stop_hook_runs_before_sigterm(sidecar):
    p = pod("pre-stop", [container(
        "main", "trap 'echo term >> /data/order; exit 0' TERM; "
                "while true; do sleep 0.1; done",
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        lifecycle={"preStop": EXEC("sh", "-c", "echo pre-stop >> /data/order")})],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "pre-stop-claim"}}],
        restart="Always", grace=10)
    sidecar.run(create_body(p))
    assert sidecar.delete(p).status_code == 200
    order = (sidecar.data_root / "claims" / "tests" / "pre-stop-claim" / "order").read_text()
    assert order == "pre-stop\nterm\n"


def test_termination_message_file_and_fallback_to_logs(sidecar):
    written = pod("message-file", [container(
        "main", "echo 'disk quota exceeded on /scratch' > /dev/termination-log; exit 3")])
    custom = pod("message-custom", [container(
        "main", "echo custom-path > /tmp/why; exit 4", terminationMessagePath="/tmp/why")])
    fallback = pod("message-logs", [container(
        "main", "for i in $(seq 1 100); do echo log-$i; done; exit 5",
        terminationMessagePolicy="FallbackToLogsOnError")])
    huge = pod("message-huge", [container(
        "main", "head -c 10000 /dev/zero | tr '\\0' x > /dev/termination-log; exit 6")])
    for p in (written, custom, fallback, huge):
        assert sidecar.create(create_body(p)).status_code == 200

    def message(p) -> str:
        status = sidecar.wait(p, lambda s: state_of(s, "main")["state"].get(
            "terminated", {}).get("message"), timeout=30)
        return state_of(status, "main")["state"]["terminated"]["message"]

    assert message(written) == "disk quota exceeded on /scratch\n"
    assert message(custom) == "custom-path\n"
    from_logs = message(fallback)
    assert from_logs.endswith("log-99\nlog-100\n") and "log-1\n" not in from_logs
    assert len(from_logs.splitlines()) <= 80
    assert len(message(huge)) == 4096
    for p in (written, custom, fallback, huge):
        sidecar.delete(p)


def test_container_that_cannot_start_backs_off_under_on_failure(sidecar):
    p = pod("crash-loop", [container("main", command=["/no/such/program"])],
            restart="OnFailure")
    assert sidecar.create(create_body(p)).status_code == 200
    messages = []

    def backing_off(s) -> bool:
        waiting = state_of(s, "main")["state"].get("waiting", {})
        if waiting.get("reason") == "CrashLoopBackOff" and waiting["message"] not in messages:
            messages.append(waiting["message"])
        return len(messages) >= 2

    status = sidecar.wait(p, backing_off, timeout=30)
    assert vk_phase(status) == "Pending"  # retried, not Failed, not stuck without a reason
    assert "/no/such/program" in messages[0]
    delays = [float(m.split("back-off ", 1)[1].split("s", 1)[0]) for m in messages]
    assert delays[1] > delays[0]  # growing delays
    last = state_of(status, "main")
    assert last["lastState"]["terminated"]["exitCode"] != 0
    sidecar.wait(p, lambda s: state_of(s, "main")["restartCount"] >= 1)
    sidecar.delete(p)


def test_tty_and_stdin(sidecar):
    tty = pod("tty", [container("main", "[ -t 1 ] && echo has-tty; sleep 3600", tty=True)],
              restart="Always")
    stdin = pod("stdin", [container("main", "cat; echo stdin-closed", stdin=True)])
    no_stdin = pod("no-stdin", [container("main", "cat; echo stdin-closed")])
    for p in (tty, stdin, no_stdin):
        assert sidecar.create(create_body(p)).status_code == 200
    sidecar.wait(tty, lambda s: "has-tty" in sidecar.logs(tty, "main").text)
    sidecar.wait_phase(no_stdin, "Succeeded")  # stdin closed: cat ends at once
    time.sleep(1)
    assert vk_phase(sidecar.status(stdin)) == "Running"  # stdin open: cat keeps waiting
    for p in (tty, stdin, no_stdin):
        sidecar.delete(p)


def test_probes_survive_a_sidecar_restart(own_sidecar, tmp_path):
    sc = own_sidecar
    p = pod("probed", [container(
        "main", "sleep 3600", readinessProbe=probe(EXEC("test", "-f", "/tmp/ready")),
        livenessProbe=probe(EXEC("test", "!", "-f", "/tmp/dead"), failureThreshold=1))],
        restart="Always", grace=1)
    sc.run(create_body(p))
    sc.container(p, "main").exec_run(["touch", "/tmp/ready"])
    sc.wait(p, lambda s: state_of(s, "main")["ready"])
    sc.respawn(tmp_path)
    sc.wait(p, lambda s: state_of(s, "main")["ready"])  # readiness probed again
    sc.container(p, "main").exec_run(["touch", "/tmp/dead"])
    sc.wait(p, lambda s: state_of(s, "main")["restartCount"] >= 1, timeout=30)  # liveness too
    sc.delete(p)
