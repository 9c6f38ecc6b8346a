import copy, json, uuid
import pytest
from conformance import cases
from conformance.cluster import Cluster
from conformance.runner import Run, CaseFailed
from conformance.vk import VirtualKubelet
from procs import start_api


@pytest.fixture(scope="module")
def api(sidecar, tmp_path_factory):
    host, port = sidecar.proc.base.rsplit(":", 1)
    proc = start_api(tmp_path_factory.mktemp("a"), {"SidecarURL": host, "SidecarPort": int(port)})
    yield proc
    proc.stop()


def run(api, case, profile):
    cluster = Cluster()
    vk = VirtualKubelet(api.base, cluster, profile)
    r = Run(case, vk, cluster)
    try:
        r.run()
        return "PASSED"
    except CaseFailed as exc:
        return str(exc)[:3000]


def test_no_poststart(api):
    case = cases.module("115-lifecycle-hooks.yaml").build(str(uuid.uuid4()))
    del case.pods[0]["spec"]["containers"][0]["lifecycle"]
    print("\nNO-POSTSTART:", run(api, case, "current"))


def test_strict_legacy_120(api, monkeypatch):
    # the 0.2.x VK: only objects named by configMap/secret volumes
    case = cases.module("120-projected-volumes.yaml").build(str(uuid.uuid4()))
    orig = VirtualKubelet._legacy_create
    def strict(self, pod):
        body = orig(self, pod)
        body["configmaps"] = None
        return body
    monkeypatch.setattr(VirtualKubelet, "_legacy_create", strict)
    print("\nSTRICT-LEGACY-120:", run(api, case, "legacy"))
    case = cases.module("000-hello-world.yaml").build(str(uuid.uuid4()))
    print("\nSTRICT-LEGACY-000:", run(api, case, "legacy"))
