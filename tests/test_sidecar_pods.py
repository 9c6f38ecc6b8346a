"""The Docker sidecar on the real engine: pods as Docker objects, create, status, logs, delete."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from kube import container, create_body, pod, state_of, vk_phase
from conftest import start_test_sidecar
from procs import free_port


def test_containers_of_a_pod_share_localhost_and_the_pod_name_as_hostname(sidecar):
    p = pod("web-pair", [
        container("server", "echo hello-from-server > /tmp/index.html; "
                            "httpd -f -p 8080 -h /tmp"),
        container("client", "hostname; until wget -q -O - http://localhost:8080/index.html; "
                            "do sleep 0.2; done; sleep 3600"),
    ], restart="Always")
    sidecar.run(create_body(p))
    deadline = time.monotonic() + 20
    while b"hello-from-server" not in sidecar.container(p, "client").logs():
        assert time.monotonic() < deadline, sidecar.container(p, "client").logs()
        time.sleep(0.2)
    # stdout alone: Docker copies stderr (wget's retries) on its own, in any order.
    assert sidecar.container(p, "client").logs(stderr=False).splitlines()[0] == b"web-pair"
    sidecar.delete(p)


def test_every_object_is_labelled_and_container_ports_are_not_published(sidecar):
    p = pod("labelled", [container("main", "sleep 3600",
                                   ports=[{"containerPort": 8888, "name": "http"}])])
    sidecar.run(create_body(p))
    main = sidecar.container(p, "main")
    labels = main.labels
    assert labels["io.interlink.pod.uid"] == p["metadata"]["uid"]
    assert labels["io.interlink.pod.namespace"] == "tests"
    assert labels["io.interlink.pod.name"] == "labelled"
    assert labels["io.interlink.container.name"] == "main"
    assert labels["io.interlink.container.role"] == "main"
    infra = sidecar.docker.containers.get(main.attrs["HostConfig"]["NetworkMode"].split(":", 1)[1])
    assert infra.labels["io.interlink.container.role"] == "infra"
    assert infra.attrs["HostConfig"]["PortBindings"] in (None, {})
    sidecar.delete(p)


@pytest.fixture
def ports_sidecar(docker_client, tmp_path):
    """A sidecar whose operator lets pods bind host ports (refused by default, as in the Pod
    Security baseline)."""
    sc = start_test_sidecar(tmp_path, docker_client, policy={"AllowedHostPorts": ["1024-65535"]})
    yield sc
    sc.proc.stop()
    sc.cleanup()


def test_host_port_is_refused_by_default(sidecar):
    p = pod("hostport-x", [container("web", "sleep 1", ports=[{"containerPort": 80,
                                                               "hostPort": free_port()}])])
    r = sidecar.create(create_body(p))
    assert r.status_code == 422
    assert "spec.containers[0].ports[0].hostPort" in r.text and "Sidecar.AllowedHostPorts" in r.text


def test_host_port_is_published_and_a_clash_is_refused(ports_sidecar):
    sidecar = ports_sidecar
    port = free_port()
    first = pod("hostport-a", [container("web", "echo hi > /tmp/i; httpd -f -p 80 -h /tmp",
                                         ports=[{"containerPort": 80, "hostPort": port}])])
    sidecar.run(create_body(first))
    deadline = time.monotonic() + 15
    while True:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/i", timeout=2).text == "hi\n"
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    second = pod("hostport-b", [container("web", "sleep 3600",
                                          ports=[{"containerPort": 80, "hostPort": port}])])
    r = sidecar.create(create_body(second))
    assert r.status_code == 422
    assert f"hostPort {port}/tcp" in r.text and "tests/hostport-a" in r.text
    sidecar.delete(first)
    with socket.socket() as s:  # port given back after delete
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))


def test_same_container_names_in_two_pods_never_collide(sidecar):
    a = pod("jupyter-alice", [container("notebook", "echo I am alice; sleep 3600")])
    b = pod("jupyter-bob", [container("notebook", "echo I am bob; sleep 3600")])
    b["metadata"]["name"] = "jupyter-alice"  # even the same pod name in another incarnation
    sidecar.run(create_body(a))
    sidecar.run(create_body(b))
    assert sidecar.logs(a, "notebook").text == "I am alice\n"
    assert sidecar.logs(b, "notebook").text == "I am bob\n"
    sidecar.delete(a)
    assert vk_phase(sidecar.status(b)) == "Running"
    sidecar.delete(b)


def test_create_twice_does_not_duplicate(sidecar):
    p = pod("twice", [container("main", "sleep 3600")])
    first = sidecar.create(create_body(p)).json()
    second = sidecar.create(create_body(p)).json()
    assert first == second and first["PodUID"] == p["metadata"]["uid"]
    sidecar.wait_phase(p, "Running")
    found = sidecar.docker.containers.list(
        all=True, filters={"label": f"io.interlink.pod.uid={p['metadata']['uid']}"})
    assert len(found) == 2  # infra + main
    sidecar.delete(p)


@pytest.mark.parametrize("shape", ["array", "nested"])
def test_create_accepts_array_shapes(sidecar, shape):
    p = pod(f"shape-{shape}", [container("main", "true")])
    body = [create_body(p)] if shape == "array" else [[create_body(p)]]
    r = sidecar.http.post("/create", json=body)
    assert r.status_code == 200
    sidecar.wait_phase(p, "Succeeded")
    sidecar.delete(p)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["spec"]["containers"][0].update(image=""), "spec.containers[0].image is empty"),
    # Found by generated requests: Docker cannot parse these, and once failed the pod late
    # with a traceback in the log; now they are refused at /create, naming the field.
    (lambda p: p["spec"]["containers"][0].update(image="\x16"),
     "spec.containers[0].image '\\x16' is not a valid image reference"),
    (lambda p: p["spec"]["containers"][0].update(image="Busybox:1.36"),
     "is not a valid image reference"),
    (lambda p: p["spec"]["containers"][0].update(image=5),
     "spec.containers[0].image must be a string"),
    (lambda p: p["spec"]["containers"][0].update(securityContext={"privileged": True}),
     "Sidecar.AllowPrivileged"),
    (lambda p: p["spec"].update(hostNetwork=True), "Sidecar.AllowHostNetwork"),
    (lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/etc"}}]),
     "Sidecar.HostPathPrefixes"),
    (lambda p: p["spec"]["containers"][0].update(
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]),
     "spec.containers[0].env[0]"),
    (lambda p: p["spec"]["containers"][0].update(resources={"limits": {"cpu": "lots"}}),
     "not a Kubernetes quantity"),
    (lambda p: p["spec"].update(restartPolicy="Sometimes"), "spec.restartPolicy"),
    (lambda p: p["spec"]["containers"].append(dict(p["spec"]["containers"][0])),
     "used twice"),
])
def test_spec_we_cannot_honour_is_refused_and_nothing_is_created(sidecar, mutate, message):
    p = pod("refused", [container("main", "sleep 1")])
    mutate(p)
    r = sidecar.create(create_body(p))
    assert r.status_code == 422, r.text
    assert message in r.text and "tests/refused" in r.text
    uid = p["metadata"]["uid"]
    assert sidecar.docker.containers.list(all=True, filters={"label": f"io.interlink.pod.uid={uid}"}) == []
    assert not (sidecar.data_root / "pods" / uid).exists()
    status = sidecar.status(p)
    assert state_of(status, p["spec"]["containers"][0]["name"])["state"]["terminated"]["reason"] == "NotFound"


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"pod": 5}', b'"text"'])
def test_malformed_create_is_400(sidecar, body):
    r = sidecar.http.post("/create", content=body)
    assert r.status_code == 400 and "create request" in r.text


def test_missing_image_reports_err_image_pull_then_back_off(sidecar):
    p = pod("no-image", [container("main", "true", image="interlink-test/does-not-exist:1")])
    assert sidecar.create(create_body(p)).status_code == 200
    first = sidecar.wait(p, lambda s: "waiting" in state_of(s, "main")["state"] and state_of(
        s, "main")["state"]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff"))
    waiting = state_of(first, "main")["state"]["waiting"]
    assert "interlink-test/does-not-exist:1" in waiting["message"]
    sidecar.wait(p, lambda s: state_of(s, "main")["state"].get("waiting", {}).get(
        "reason") == "ImagePullBackOff")
    assert vk_phase(sidecar.status(p)) == "Pending"
    sidecar.delete(p)


def test_pull_policy_never_without_the_image(sidecar):
    p = pod("never-pull", [container("main", "true", image="interlink-test/absent:2",
                                     imagePullPolicy="Never")])
    sidecar.create(create_body(p))
    status = sidecar.wait(p, lambda s: "waiting" in state_of(s, "main")["state"]
                          and state_of(s, "main")["state"]["waiting"]["reason"] == "ErrImageNeverPull")
    assert "imagePullPolicy is Never" in state_of(status, "main")["state"]["waiting"]["message"]
    sidecar.delete(p)


def test_terminated_status_carries_exit_code_reason_times_and_ids(sidecar):
    p = pod("exit-42", [container("main", "echo bye; exit 42")])
    status = sidecar.run(create_body(p), phase="Failed")
    main = state_of(status, "main")
    term = main["state"]["terminated"]
    assert term["exitCode"] == 42 and term["reason"] == "Error"
    assert term["startedAt"].endswith("Z") and term["finishedAt"].endswith("Z")
    assert term["finishedAt"] >= term["startedAt"]
    assert main["containerID"] == term["containerID"] == f"docker://{sidecar.container(p, 'main').id}"
    assert main["imageID"].startswith("docker://sha256:")
    assert status["JID"] and status["name"] == "exit-42" and status["namespace"] == "tests"
    sidecar.delete(p)


def test_completed_pod_succeeds(sidecar):
    p = pod("done", [container("main", "exit 0")])
    status = sidecar.run(create_body(p), phase="Succeeded")
    assert state_of(status, "main")["state"]["terminated"]["reason"] == "Completed"
    sidecar.delete(p)


def test_oom_killed(sidecar):
    p = pod("oom", [container("main", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo $x",
                              resources={"limits": {"memory": "16Mi"}})])
    status = sidecar.run(create_body(p), phase="Failed", timeout=60)
    term = state_of(status, "main")["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] != 0


def test_unknown_pod_is_reported_not_found_never_empty(sidecar):
    p = pod("ghost", [container("a", "true"), container("b", "true")],
            init=[container("setup", "true")])
    status = sidecar.status(p)
    assert [c["name"] for c in status["containers"]] == ["a", "b"]
    for c in status["containers"] + status["initContainers"]:
        assert c["state"]["terminated"]["reason"] == "NotFound"
        assert c["state"]["terminated"]["exitCode"] != 0
        assert "not known" in c["state"]["terminated"]["message"]


@pytest.mark.parametrize("mutate", [
    lambda p: p["spec"]["containers"][0].update(image=5),
    lambda p: p["spec"]["containers"][0].update(name=["a"]),
    lambda p: p["metadata"].update(name=7),
    lambda p: p.update(spec="no spec"),
    lambda p: p["spec"].update(containers={"a": 1}),
    lambda p: p["spec"].update(containers=["a"], initContainers=7),
])
def test_status_of_an_unknown_pod_of_odd_shape_is_not_found(sidecar, mutate):
    """Only the UID of a status request is checked; a pod whose other fields have the wrong
    type (a refused /create's, say) is reported NotFound, not a 500."""
    p = pod("odd", [container("main", "true")])
    mutate(p)
    status = sidecar.status(p)
    assert status["UID"] == p["metadata"]["uid"]
    assert status["containers"] and all(
        c["state"]["terminated"]["reason"] == "NotFound" for c in status["containers"])


def test_ping_reports_node_capacity(sidecar):
    r = sidecar.http.request("GET", "/status", content=b"[]")
    ping = r.json()
    assert r.status_code == 200 and ping["status"] == "ok"
    assert int(ping["resources"]["cpu"]) >= 1 and ping["resources"]["pods"] == "110"
    assert ping["resources"]["memory"].endswith(("Ki", "Mi", "Gi"))


def test_status_of_many_pods_makes_no_docker_calls(sidecar):
    pods = [pod(f"many-{i}", [container("main", "sleep 3600")]) for i in range(5)]
    for p in pods:
        assert sidecar.create(create_body(p)).status_code == 200
    for p in pods:
        sidecar.wait_phase(p, "Running")

    def docker_calls() -> float:
        text = sidecar.http.get("/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("interlink_sidecar_docker_call_duration_seconds_count"))

    before = docker_calls()
    for _ in range(3):
        r = sidecar.http.request("GET", "/status", json=pods)
        assert [s["UID"] for s in r.json()] == [p["metadata"]["uid"] for p in pods]
    assert docker_calls() == before
    metrics = sidecar.http.get("/metrics").text
    assert 'interlink_sidecar_pods{phase="Running"}' in metrics
    for p in pods:
        sidecar.delete(p)


def test_logs_options(sidecar):
    # Docker copies stdout and stderr separately: a pause keeps their order predictable.
    p = pod("chatty", [container("main", "for i in 1 2 3 4 5; do echo line-$i; done; "
                                         "sleep 0.5; echo to-stderr >&2; sleep 3600")])
    sidecar.run(create_body(p))
    sidecar.wait(p, lambda s: b"to-stderr" in sidecar.container(p, "main").logs())
    assert sidecar.logs(p, "main").text == "line-1\nline-2\nline-3\nline-4\nline-5\nto-stderr\n"
    assert sidecar.logs(p, "main", Tail=2).text == "line-5\nto-stderr\n"
    assert sidecar.logs(p, "main", Bytes=9).text == "line-1\nli"
    stamped = sidecar.logs(p, "main", Timestamps=True).text.splitlines()
    assert stamped[0].split(" ", 1)[1] == "line-1" and stamped[0][:4].isdigit()
    assert sidecar.logs(p, "main", SinceSeconds=3600).text.startswith("line-1")
    time.sleep(1.5)
    assert sidecar.logs(p, "main", SinceSeconds=1).text == ""
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    assert sidecar.logs(p, "main", SinceTime=future).text == ""
    assert sidecar.logs(p, "", Tail=1).text == "to-stderr\n"  # the only container
    r = sidecar.logs(p, "nope")
    assert r.status_code == 404 and "main" in r.text
    ghost = pod("ghost-logs", [container("main")])
    assert sidecar.logs(ghost, "main").status_code == 404
    sidecar.delete(p)


def test_follow_streams_until_the_container_stops(sidecar):
    p = pod("follow", [container("main", "for i in 1 2 3; do echo tick-$i; sleep 0.5; done")])
    sidecar.run(create_body(p), phase="Running")
    meta = p["metadata"]
    chunks = []
    start = time.monotonic()
    with sidecar.http.stream("GET", "/getLogs", json={
            "Namespace": "tests", "PodUID": meta["uid"], "PodName": meta["name"],
            "ContainerName": "main", "Opts": {"Follow": True}}) as r:
        for chunk in r.iter_bytes():
            chunks.append((time.monotonic() - start, chunk))
    text = b"".join(c for _, c in chunks).decode()
    assert text == "tick-1\ntick-2\ntick-3\n"
    assert chunks[-1][0] - chunks[0][0] >= 0.5  # delivered as written, not at the end
    sidecar.delete(p)


def test_delete_uses_the_grace_period_and_removes_everything(sidecar):
    p = pod("graceful", [container(
        "main", "trap 'echo got TERM > /data/term; exit 0' TERM; while true; do sleep 0.1; done",
        volumeMounts=[{"name": "data", "mountPath": "/data"}])],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "grace-claim"}}],
        grace=5)
    sidecar.run(create_body(p))
    uid = p["metadata"]["uid"]
    assert (sidecar.data_root / "pods" / uid).exists()
    start = time.monotonic()
    r = sidecar.delete(p)
    assert r.status_code == 200 and "deleted" in r.text
    assert time.monotonic() - start < 5  # SIGTERM honoured, no wait for the SIGKILL
    claim = sidecar.data_root / "claims" / "tests" / "grace-claim"
    assert (claim / "term").read_text() == "got TERM\n"
    assert sidecar.docker.containers.list(all=True, filters={"label": f"io.interlink.pod.uid={uid}"}) == []
    assert not (sidecar.data_root / "pods" / uid).exists()
    assert vk_phase(sidecar.status(p)) == "Failed"  # unknown now: NotFound, never Succeeded
    again = sidecar.delete(p)
    assert again.status_code == 200 and "not found" in again.text


def test_delete_kills_after_the_grace_period(sidecar):
    p = pod("stubborn", [container("main", "trap '' TERM; while true; do sleep 0.1; done")],
            grace=1)
    sidecar.run(create_body(p))
    start = time.monotonic()
    assert sidecar.delete(p).status_code == 200
    assert 0.9 <= time.monotonic() - start < 10


def test_concurrent_creates_deletes_and_polls_stay_consistent(sidecar):
    from concurrent.futures import ThreadPoolExecutor

    first = [pod(f"burst-{i}", [container("main", "sleep 3600")], grace=0) for i in range(8)]
    second = [pod(f"late-{i}", [container("main", "sleep 3600")], grace=0) for i in range(4)]
    with ThreadPoolExecutor(12) as pool:
        created = list(pool.map(lambda p: sidecar.create(create_body(p)), first))
        assert all(r.status_code == 200 for r in created)
        # delete half of the burst while the rest start, new pods arrive and polls run
        jobs = [pool.submit(sidecar.delete, p) for p in first[:4]]
        jobs += [pool.submit(sidecar.create, create_body(p)) for p in second]
        jobs += [pool.submit(sidecar.http.request, "GET", "/status", json=first + second)
                 for _ in range(6)]
        assert all(j.result().status_code == 200 for j in jobs)
    for p in first[4:] + second:
        sidecar.wait_phase(p, "Running")
    for p in first[:4]:
        uid = p["metadata"]["uid"]
        assert sidecar.docker.containers.list(
            all=True, filters={"label": f"io.interlink.pod.uid={uid}"}) == []
        assert state_of(sidecar.status(p), "main")["state"]["terminated"]["reason"] == "NotFound"
    with ThreadPoolExecutor(8) as pool:
        assert all(r.status_code == 200 for r in pool.map(sidecar.delete, first[4:] + second))
    label = f"io.interlink.managed={sidecar.instance}"
    leftovers = [c.name for c in sidecar.docker.containers.list(all=True, filters={"label": label})
                 if any(p["metadata"]["uid"] in c.name for p in first + second)]
    assert leftovers == []
