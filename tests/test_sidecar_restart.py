"""Restart safety: a sidecar killed while pods run comes back with the same view and loses
nothing; half-created pods are finished; leftovers of deleted pods are cleaned up."""

from __future__ import annotations

import json
import signal


from kube import container, create_body, pod, state_of, vk_phase


def test_killed_sidecar_comes_back_with_every_pod_and_kills_none(own_sidecar, tmp_path):
    sc = own_sidecar
    running = pod("keeps-running", [container("main", "echo started; sleep 3600")],
                  restart="Always")
    done = pod("already-done", [container("main", "echo finished; exit 7")])
    with_init = pod("with-init", [container("main", "cat /work/log; sleep 3600")],
                    init=[container("setup", "echo ran-once >> /work/log",
                                    volumeMounts=[{"name": "work", "mountPath": "/work"}])],
                    volumes=[{"name": "work", "emptyDir": {}}])
    with_init["spec"]["containers"][0]["volumeMounts"] = [{"name": "work", "mountPath": "/work"}]
    sc.run(create_body(running))
    sc.run(create_body(with_init))
    sc.run(create_body(done), phase="Failed")
    before = {p["metadata"]["name"]: sc.status(p) for p in (running, done, with_init)}
    ids = {p["metadata"]["name"]: sc.container(p, "main").id for p in (running, done, with_init)}

    sc.respawn(tmp_path)

    for p in (running, done, with_init):
        after = sc.status(p)
        name = p["metadata"]["name"]
        assert after == before[name], name
        assert sc.container(p, "main").id == ids[name]  # same container, never recreated
    assert sc.logs(with_init, "main").text.startswith("ran-once\n")
    assert sc.logs(with_init, "main").text.count("ran-once") == 1
    assert "recovered 3 pods" in sc.proc.output()
    # the restarted sidecar still deletes what the first one created
    for p in (running, done, with_init):
        assert sc.delete(p).status_code == 200
        assert sc.docker.containers.list(
            all=True, filters={"label": f"io.interlink.pod.uid={p['metadata']['uid']}"}) == []


def test_pod_in_its_init_phase_finishes_after_a_restart(own_sidecar, tmp_path):
    sc = own_sidecar
    p = pod("slow-init", [container("main", "cat /work/log; sleep 3600",
                                    volumeMounts=[{"name": "work", "mountPath": "/work"}])],
            init=[container("setup", "echo init-ran >> /work/log; sleep 2",
                            volumeMounts=[{"name": "work", "mountPath": "/work"}])],
            volumes=[{"name": "work", "emptyDir": {}}])
    assert sc.create(create_body(p)).status_code == 200
    sc.wait(p, lambda s: "running" in state_of(s, "setup", init=True)["state"])
    sc.respawn(tmp_path)
    status = sc.wait_phase(p, "Running")
    assert state_of(status, "setup", init=True)["restartCount"] == 0
    assert sc.logs(p, "main").text == "init-ran\n"
    sc.delete(p)


def test_half_created_pod_is_finished_on_start(own_sidecar, tmp_path):
    sc = own_sidecar
    p = pod("half-made", [container("main", "echo finished-after-restart; sleep 3600")])
    sc.proc.stop(signal.SIGKILL)
    # What a crash right after answering /create leaves: the request, no containers yet.
    pod_dir = sc.data_root / "pods" / p["metadata"]["uid"]
    pod_dir.mkdir(parents=True)
    (pod_dir / "request.json").write_text(json.dumps(create_body(p)))
    sc.respawn(tmp_path)
    sc.wait_phase(p, "Running")
    sc.wait(p, lambda s: sc.logs(p, "main").text == "finished-after-restart\n")
    sc.delete(p)


def test_directories_of_pods_that_no_longer_exist_are_removed(own_sidecar, tmp_path):
    sc = own_sidecar
    sc.proc.stop()
    stale = sc.data_root / "pods" / "0d7c1c57-2f4a-4b8e-9d1e-0a6c5b7e9a99"
    (stale / "volumes" / "cache").mkdir(parents=True)
    (stale / "volumes" / "cache" / "junk").write_text("left behind")
    claim = sc.data_root / "claims" / "tests" / "claim-alice"
    claim.mkdir(parents=True)
    (claim / "notebook.ipynb").write_text("{}")
    sc.respawn(tmp_path)
    assert not stale.exists()
    assert (claim / "notebook.ipynb").read_text() == "{}"  # claims are never touched


def test_graceful_stop_leaves_pods_running(own_sidecar, tmp_path):
    sc = own_sidecar
    p = pod("outlives-sidecar", [container("main", "sleep 3600")])
    sc.run(create_body(p))
    sc.respawn(tmp_path, kill=False)
    assert vk_phase(sc.status(p)) == "Running"
    sc.delete(p)
