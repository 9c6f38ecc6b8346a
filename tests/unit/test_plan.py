"""plan_pod: a pod as the API sends it -> Docker container plans, and plans -> Docker create
arguments. Pure: no Docker, no filesystem. (Env and volumes have their own tests.)"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from kube import container, create_body, pod, secret

from docker_sidecar import labels as L
from docker_sidecar.docker_config import (
    container_create_args,
    container_host_config,
    infra_create_args,
    infra_host_config,
)
from docker_sidecar.plan import NodeFacts, PlanError, PodPlan, plan_pod
from docker_sidecar.policy import SidecarPolicy
from interlink_common.wire import RetrievedPodData
from interlink_common.identity import IdentityError

NODE = NodeFacts(cpus=4, memory=8 << 30, name="node", host_ip="10.0.0.1")
Planner = Callable[..., PodPlan]
# Host ports are refused by default (Pod Security baseline); these tests are about publishing.
PORTS = SidecarPolicy(AllowedHostPorts=["1-65535"])


@pytest.fixture
def plan(tmp_path) -> Planner:
    def run(p: dict[str, Any], *, policy: SidecarPolicy | None = None,
            secrets: list[dict[str, Any]] = (), pod_ip: str = "") -> PodPlan:
        data = RetrievedPodData.model_validate(create_body(p, secrets=list(secrets)))
        return plan_pod(data, policy or SidecarPolicy(), data_root=tmp_path, node=NODE,
                        pod_ip=pod_ip)
    return run


def one(plan: Planner, **fields: Any) -> Any:
    """Plan of a single main container with the given fields."""
    return plan(pod("p", [container("c", **fields)])).main[0]


def refused(plan: Planner, p: dict[str, Any], *needles: str, **kw: Any) -> str:
    with pytest.raises((PlanError, IdentityError)) as info:
        plan(p, **kw)
    for needle in needles:
        assert needle in str(info.value)
    return str(info.value)


# --- containers, names, labels --------------------------------------------------------------------


def test_init_and_main_containers_keep_their_role_and_order(plan: Planner) -> None:
    p = pod("web", [container("b"), container("a")], init=[container("i2"), container("i1")])
    result = plan(p)
    assert [(c.name, c.role, c.index) for c in result.init] == [("i2", "init", 0),
                                                                 ("i1", "init", 1)]
    assert [(c.name, c.role, c.index) for c in result.main] == [("b", "main", 0),
                                                                 ("a", "main", 1)]
    assert [c.name for c in result.containers] == ["i2", "i1", "b", "a"]


def test_docker_names_carry_namespace_pod_container_and_uid(plan: Planner) -> None:
    p1 = pod("web", [container("app")], init=[container("setup")], namespace="team-a")
    p2 = copy.deepcopy(p1)
    p2["metadata"]["uid"] = "7f0c2a3e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
    a, b = plan(p1), plan(p2)
    uid = p1["metadata"]["uid"]
    for part in ("team-a", "web", "app", uid):
        assert part in a.main[0].docker_name
    assert "setup" in a.init[0].docker_name
    names_a = [c.docker_name for c in a.containers] + [a.infra.docker_name]
    names_b = [c.docker_name for c in b.containers] + [b.infra.docker_name]
    assert len(set(names_a)) == 3
    assert not set(names_a) & set(names_b)


def test_labels_identify_the_pod_and_the_container(plan: Planner) -> None:
    p = pod("web", [container("app")], init=[container("setup")], namespace="team-a")
    result = plan(p, policy=SidecarPolicy(Instance="edge-1"))
    pod_labels = {L.MANAGED: "edge-1", L.POD_UID: p["metadata"]["uid"],
                  L.POD_NAMESPACE: "team-a", L.POD_NAME: "web"}
    assert result.init[0].labels == {**pod_labels, L.CONTAINER: "setup", L.ROLE: "init",
                                     L.INDEX: "0"}
    assert result.main[0].labels == {**pod_labels, L.CONTAINER: "app", L.ROLE: "main",
                                     L.INDEX: "0"}
    assert result.infra.labels == {**pod_labels, L.ROLE: "infra", L.CONTAINER: "POD"}
    assert container_create_args(result.main[0], labels={L.ATTEMPT: "2"})["labels"] == {
        **result.main[0].labels, L.ATTEMPT: "2"}


def test_plan_is_deterministic_and_job_id_stable(plan: Planner) -> None:
    p = pod("web", [container("app", "sleep 1", env=[{"name": "A", "value": "1"}],
                              resources={"limits": {"cpu": "1", "memory": "1Gi"}})],
            init=[container("setup")])
    first, second = plan(p), plan(copy.deepcopy(p))
    assert first == second
    assert first.job_id == second.job_id == first.infra.docker_name
    assert p["metadata"]["uid"] in first.job_id


@pytest.mark.parametrize("name", ["", "Upper", "under_score", "-lead", "trail-", "a" * 64,
                                  "dot.ted"])
def test_invalid_container_names_are_refused(plan: Planner, name: str) -> None:
    refused(plan, pod("p", [container(name)]), "spec.containers[0].name", "DNS-1123")


def test_duplicate_container_names_are_refused(plan: Planner) -> None:
    refused(plan, pod("p", [container("x"), container("x")]), "spec.containers[1].name",
            "used twice")
    refused(plan, pod("p", [container("x")], init=[container("x")]), "used twice")


@pytest.mark.parametrize("image", ["", "   "])
def test_empty_image_is_refused(plan: Planner, image: str) -> None:
    refused(plan, pod("p", [container("c", image=image)]), "spec.containers[0].image")


@pytest.mark.parametrize("image", ["\x16", "Busybox", "bad image", "a:b:c", "x@sha256:zz",
                                   "-a", "a/", "busybox:ü", "a" * 256, 5, ["busybox"]])
def test_image_docker_cannot_parse_is_refused(plan: Planner, image: Any) -> None:
    refused(plan, pod("p", [container("c", image=image)]), "spec.containers[0].image")


@pytest.mark.parametrize("image", [
    "busybox", "busybox:1.36", " busybox:1.36 ", "registry.example.com:5000/team/busybox:latest",
    "localhost:5000/x", "ghcr.io/owner/repo-name_x:v1.2.3-rc", "[::1]:5000/a",
    "busybox@sha256:" + "a" * 64, "quay.io/jupyter/scipy-notebook:2024-05-27",
    "Registry.Example.com/team/app"])
def test_valid_image_references_are_accepted(plan: Planner, image: str) -> None:
    assert one(plan, image=image).image == image.strip()


def test_empty_container_list_is_refused(plan: Planner) -> None:
    refused(plan, pod("p", []), "spec.containers")


# --- image pull policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "expected"), [
    ("busybox", "Always"),
    ("busybox:latest", "Always"),
    ("registry.example.com:5000/team/busybox", "Always"),
    ("registry.example.com:5000/team/busybox:latest", "Always"),
    ("busybox:1.36", "IfNotPresent"),
    ("registry.example.com:5000/team/busybox:1.36", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
    ("busybox:latest@sha256:" + "a" * 64, "Always"),
])
def test_default_pull_policy(plan: Planner, image: str, expected: str) -> None:
    assert one(plan, image=image).pull_policy == expected


@pytest.mark.parametrize("policy", ["Always", "IfNotPresent", "Never"])
def test_explicit_pull_policy_wins(plan: Planner, policy: str) -> None:
    assert one(plan, image="busybox:latest", imagePullPolicy=policy).pull_policy == policy


def test_invalid_pull_policy_is_refused(plan: Planner) -> None:
    refused(plan, pod("p", [container("c", imagePullPolicy="Sometimes")]),
            "spec.containers[0].imagePullPolicy", "'Sometimes'")


# --- resources ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cpu", "nano"), [("500m", 500_000_000), ("2", 2_000_000_000),
                                           ("1.5", 1_500_000_000), (3, 3_000_000_000)])
def test_cpu_limit_becomes_nano_cpus(plan: Planner, cpu: Any, nano: int) -> None:
    c = one(plan, resources={"limits": {"cpu": cpu}})
    assert c.nano_cpus == nano
    assert container_host_config(c, "infra")["nano_cpus"] == nano


@pytest.mark.parametrize(("memory", "size"), [("1Gi", 1 << 30), ("16G", 16 * 10**9),
                                              ("6Mi", 6 << 20), ("512Mi", 512 << 20)])
def test_memory_limit_without_swap(plan: Planner, memory: str, size: int) -> None:
    c = one(plan, resources={"limits": {"memory": memory}})
    assert c.mem_limit == size
    config = container_host_config(c, "infra")
    assert config["mem_limit"] == config["memswap_limit"] == size


@pytest.mark.parametrize("memory", ["5Mi", "1M", "100Ki"])
def test_memory_limit_below_docker_minimum_is_refused(plan: Planner, memory: str) -> None:
    refused(plan, pod("p", [container("c", resources={"limits": {"memory": memory}})]),
            "spec.containers[0].resources.limits.memory", "6Mi")


@pytest.mark.parametrize(("cpu", "shares"), [("250m", 256), ("1", 1024), ("2", 2048),
                                             ("1m", 2), ("100m", 102)])
def test_cpu_request_becomes_cpu_shares(plan: Planner, cpu: str, shares: int) -> None:
    c = one(plan, resources={"requests": {"cpu": cpu}})
    assert c.cpu_shares == shares
    assert c.nano_cpus is None


def test_memory_request_becomes_reservation(plan: Planner) -> None:
    c = one(plan, resources={"requests": {"memory": "256Mi"}})
    assert c.mem_reservation == 256 << 20 and c.mem_limit is None
    assert container_host_config(c, "infra")["mem_reservation"] == 256 << 20


def test_no_resources_leave_docker_defaults(plan: Planner) -> None:
    config = container_host_config(one(plan), "infra")
    for key in ("nano_cpus", "mem_limit", "memswap_limit", "mem_reservation", "cpu_shares"):
        assert key not in config


def test_bad_quantity_is_a_plan_error(plan: Planner) -> None:
    refused(plan, pod("p", [container("c", resources={"limits": {"cpu": "lots"}})]), "lots")


# --- GPUs -----------------------------------------------------------------------------------------


def gpu(n: Any, request: Any = None) -> dict[str, Any]:
    res: dict[str, Any] = {"limits": {"nvidia.com/gpu": n}}
    if request is not None:
        res["requests"] = {"nvidia.com/gpu": request}
    return res


@pytest.mark.parametrize(("resources", "count"), [
    (gpu("2"), 2), (gpu(1), 1), (gpu("1", "1"), 1), (gpu("0"), 0), ({}, 0)])
def test_gpu_count(plan: Planner, resources: dict[str, Any], count: int) -> None:
    assert one(plan, resources=resources).gpus == count


@pytest.mark.parametrize(("resources", "message"), [
    ({"requests": {"nvidia.com/gpu": "1"}}, "limits.nvidia.com/gpu must be set"),
    (gpu("2", "1"), "must equal"),
    (gpu("1.5"), "whole number"),
    (gpu("500m"), "whole number"),
    (gpu("-1"), "negative"),
])
def test_bad_gpu_requests_are_refused(plan: Planner, resources: dict[str, Any],
                                      message: str) -> None:
    refused(plan, pod("p", [container("c", resources=resources)]), "spec.containers[0]", message)


@pytest.mark.parametrize(("init", "mains", "total"), [
    ([], [1], 1), ([3], [1, 1], 3), ([1, 2], [1, 2], 3), ([0], [0, 0], 0), ([2], [], 2)])
def test_pod_gpus_is_max_of_init_and_sum_of_mains(plan: Planner, init: list[int],
                                                   mains: list[int], total: int) -> None:
    p = pod("p", [container(f"m{i}", resources=gpu(n)) for i, n in enumerate(mains)]
            or [container("m")],
            init=[container(f"i{i}", resources=gpu(n)) for i, n in enumerate(init)])
    assert plan(p).gpus == total


def test_device_requests_only_with_gpu_uuids(plan: Planner) -> None:
    c = one(plan, resources=gpu("1"))
    assert "device_requests" not in container_host_config(c, "infra")
    assert "device_requests" not in container_host_config(c, "infra", gpu_uuids=[])
    (request,) = container_host_config(c, "infra", gpu_uuids=["GPU-1", "GPU-2"])[
        "device_requests"]
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["GPU-1", "GPU-2"]
    assert request["Capabilities"] == [["gpu"]]


# --- security context -----------------------------------------------------------------------------


@pytest.mark.parametrize(("pod_sc", "container_sc", "user"), [
    ({}, {}, None),
    ({"runAsUser": 1000}, {}, "1000"),
    ({"runAsUser": 1000, "runAsGroup": 100}, {}, "1000:100"),
    ({}, {"runAsUser": 1000, "runAsGroup": 100}, "1000:100"),
    ({"runAsUser": 1000, "runAsGroup": 100}, {"runAsUser": 2000}, "2000:100"),
    ({"runAsUser": 1000, "runAsGroup": 100}, {"runAsGroup": 200}, "1000:200"),
    ({"runAsUser": 1000}, {"runAsUser": 0}, "0"),
])
def test_run_as_user_and_group(plan: Planner, pod_sc: dict[str, Any],
                               container_sc: dict[str, Any], user: str | None) -> None:
    p = pod("p", [container("c", securityContext=container_sc)], securityContext=pod_sc)
    c = plan(p).main[0]
    assert c.user == user
    assert container_create_args(c)["user"] == user


@pytest.mark.parametrize(("pod_sc", "container_sc"), [
    ({"runAsGroup": 100}, {}), ({}, {"runAsGroup": 100})])
def test_run_as_group_without_user_is_refused(plan: Planner, pod_sc: dict[str, Any],
                                              container_sc: dict[str, Any]) -> None:
    p = pod("p", [container("c", securityContext=container_sc)], securityContext=pod_sc)
    refused(plan, p, "runAsGroup", "runAsUser")


@pytest.mark.parametrize("value", [-1, "1000", 1.5, True])
def test_run_as_user_must_be_a_non_negative_integer(plan: Planner, value: Any) -> None:
    p = pod("p", [container("c", securityContext={"runAsUser": value})])
    refused(plan, p, "spec.containers[0].securityContext.runAsUser",
            "non-negative integer" if value == -1 else "must be an integer")


def test_supplemental_groups_and_fs_group_are_added(plan: Planner) -> None:
    p = pod("p", [container("a")], init=[container("i")],
            securityContext={"runAsUser": 1000, "supplementalGroups": [4, 27], "fsGroup": 2000})
    result = plan(p)
    for c in result.containers:
        assert c.group_add == ["4", "27", "2000"]
        assert container_host_config(c, "infra")["group_add"] == ["4", "27", "2000"]
    assert "group_add" not in container_host_config(one(plan), "infra")


def test_capabilities_and_read_only_root(plan: Planner) -> None:
    c = plan(pod("p", [container("c", securityContext={
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        "readOnlyRootFilesystem": True})]),
        policy=SidecarPolicy(AllowedCapabilities=["NET_ADMIN"])).main[0]
    assert (c.cap_add, c.cap_drop, c.read_only_rootfs) == (["NET_ADMIN"], ["ALL"], True)
    config = container_host_config(c, "infra")
    assert config["cap_add"] == ["NET_ADMIN"] and config["cap_drop"] == ["ALL"]
    assert config["read_only"] is True
    plain = container_host_config(one(plan), "infra")
    assert "cap_add" not in plain and "cap_drop" not in plain and plain["read_only"] is False


@pytest.mark.parametrize(("escalation", "no_new"), [(False, True), (True, False), (None, False)])
def test_allow_privilege_escalation(plan: Planner, escalation: bool | None,
                                    no_new: bool) -> None:
    sc = {} if escalation is None else {"allowPrivilegeEscalation": escalation}
    c = one(plan, securityContext=sc)
    assert ("no-new-privileges:true" in c.security_opt) is no_new
    config = container_host_config(c, "infra")
    assert config.get("security_opt") == (["no-new-privileges:true"] if no_new else None)


def test_privileged_is_refused_unless_allowed(plan: Planner) -> None:
    p = pod("p", [container("c", securityContext={"privileged": True})])
    refused(plan, p, "spec.containers[0].securityContext.privileged", "Sidecar.AllowPrivileged")
    c = plan(p, policy=SidecarPolicy(AllowPrivileged=True)).main[0]
    assert c.privileged is True
    assert container_host_config(c, "infra")["privileged"] is True


@pytest.mark.parametrize(("key", "config_key", "attr"), [
    ("hostNetwork", "AllowHostNetwork", "network_mode"),
    ("hostPID", "AllowHostPID", "pid_mode"),
    ("hostIPC", "AllowHostIPC", "ipc_mode"),
])
def test_host_namespaces_are_refused_unless_allowed(plan: Planner, key: str, config_key: str,
                                                    attr: str) -> None:
    p = pod("p", [container("c")], **{key: True})
    refused(plan, p, f"spec.{key}", f"Sidecar.{config_key}")
    result = plan(p, policy=SidecarPolicy(**{config_key: True}))
    assert getattr(result.infra, attr) == "host"
    assert infra_host_config(result.infra)[attr] == "host"
    if key == "hostPID":  # the pod's containers see the host's processes too
        assert container_host_config(result.main[0], "infra")["pid_mode"] == "host"


def test_default_infra_namespaces(plan: Planner) -> None:
    infra = plan(pod("p", [container("c")])).infra
    config = infra_host_config(infra)
    assert (config["network_mode"], config["pid_mode"], config["ipc_mode"]) == (
        None, None, "shareable")
    assert config["restart_policy"] == {"Name": "unless-stopped"}


def test_host_network_infra_has_no_hostname(plan: Planner) -> None:
    p = pod("p", [container("c")], hostNetwork=True)
    infra = plan(p, policy=SidecarPolicy(AllowHostNetwork=True)).infra
    assert infra_create_args(infra)["hostname"] is None


# --- restart policy and grace period --------------------------------------------------------------


@pytest.mark.parametrize(("restart", "docker"), [
    ("Always", {"Name": "always"}), ("OnFailure", {"Name": "on-failure"}), ("Never", None)])
def test_restart_policy_applies_to_main_containers_only(plan: Planner, restart: str,
                                                        docker: dict[str, str] | None) -> None:
    result = plan(pod("p", [container("a"), container("b")], init=[container("i")],
                      restart=restart))
    assert result.restart_policy == restart
    assert [c.restart_policy for c in result.main] == [docker, docker]
    assert result.init[0].restart_policy is None
    assert container_host_config(result.main[0], "infra").get("restart_policy") == docker
    assert "restart_policy" not in container_host_config(result.init[0], "infra")
    assert "restart_policy" not in container_host_config(result.main[0], "infra", restart=False)


def test_missing_restart_policy_defaults_to_always(plan: Planner) -> None:
    p = pod("p", [container("c")])
    del p["spec"]["restartPolicy"]
    result = plan(p)
    assert result.restart_policy == "Always"
    assert result.main[0].restart_policy == {"Name": "always"}


def test_invalid_restart_policy_is_refused(plan: Planner) -> None:
    refused(plan, pod("p", [container("c")], restart="Sometimes"), "spec.restartPolicy",
            "'Sometimes'")


@pytest.mark.parametrize(("deletion", "termination", "grace"), [
    (5, 60, 5), (0, 60, 0), (None, 60, 60), (None, 0, 0), (None, None, 17)])
def test_grace_period(plan: Planner, deletion: int | None, termination: int | None,
                      grace: int) -> None:
    p = pod("p", [container("c")], grace=termination)
    if deletion is not None:
        p["metadata"]["deletionGracePeriodSeconds"] = deletion
    assert plan(p, policy=SidecarPolicy(DefaultGracePeriodSeconds=17)).grace_period == grace


# --- infra: ports, host aliases, hostname ---------------------------------------------------------


def test_host_ports_are_published_on_the_infra(plan: Planner) -> None:
    p = pod("p", [
        container("web", ports=[{"containerPort": 8888, "hostPort": 30888},
                                {"containerPort": 9090}]),
        container("dns", ports=[{"containerPort": 53, "hostPort": 5353, "protocol": "UDP",
                                 "hostIP": "127.0.0.1"}]),
    ], init=[container("i", ports=[{"containerPort": 7000, "hostPort": 7000}])])
    infra = plan(p, policy=PORTS).infra
    assert sorted((b.key, b.host_ip, b.host_port) for b in infra.ports) == [
        ("53/udp", "127.0.0.1", 5353), ("7000/tcp", "", 7000), ("8888/tcp", "", 30888)]
    assert sorted(infra_create_args(infra)["ports"]) == [("53", "udp"), ("7000", "tcp"),
                                                          ("8888", "tcp")]
    assert infra_host_config(infra)["port_bindings"] == {
        "8888/tcp": [30888], "53/udp": [("127.0.0.1", 5353)], "7000/tcp": [7000]}


def test_one_container_port_on_two_host_ports(plan: Planner) -> None:
    infra = plan(pod("p", [container("web", ports=[
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 80, "hostPort": 8081, "hostIP": "127.0.0.1"}])]), policy=PORTS).infra
    assert infra_host_config(infra)["port_bindings"] == {"80/tcp": [8080, ("127.0.0.1", 8081)]}
    assert infra_create_args(infra)["ports"] == [("80", "tcp")]


def test_same_host_port_on_any_address_and_a_specific_one_clash(plan: Planner) -> None:
    p = pod("p", [container("a", ports=[{"containerPort": 80, "hostPort": 8080,
                                         "hostIP": "0.0.0.0"}]),
                  container("b", ports=[{"containerPort": 81, "hostPort": 8080,
                                         "hostIP": "127.0.0.1"}])])
    refused(plan, p, "spec.containers[1].ports[0].hostPort", "8080", policy=PORTS)


def test_container_port_alone_is_not_published(plan: Planner) -> None:
    infra = plan(pod("p", [container("c", ports=[{"containerPort": 8888}])])).infra
    assert infra.ports == []
    assert infra_create_args(infra)["ports"] is None
    assert infra_host_config(infra)["port_bindings"] is None


def test_same_host_port_twice_in_a_pod_is_refused(plan: Planner) -> None:
    p = pod("p", [container("a", ports=[{"containerPort": 80, "hostPort": 8080}]),
                  container("b", ports=[{"containerPort": 81, "hostPort": 8080}])])
    refused(plan, p, "spec.containers[1].ports[0].hostPort", "8080", "spec.containers[0]",
            policy=PORTS)
    # The same number on another protocol is a different port.
    ok = pod("p", [container("a", ports=[{"containerPort": 80, "hostPort": 8080}]),
                   container("b", ports=[{"containerPort": 81, "hostPort": 8080,
                                          "protocol": "UDP"}])])
    assert sorted((b.key, b.host_port) for b in plan(ok, policy=PORTS).infra.ports) == [
        ("80/tcp", 8080), ("81/udp", 8080)]


@pytest.mark.parametrize(("port", "message"), [
    ({"containerPort": 80, "hostPort": 70000}, "hostPort must be a port number"),
    ({"containerPort": 0, "hostPort": 8080}, "containerPort must be a port number"),
    ({"containerPort": 80, "hostPort": 8080, "protocol": "ICMP"}, "'ICMP'"),
])
def test_bad_host_ports_are_refused(plan: Planner, port: dict[str, Any], message: str) -> None:
    refused(plan, pod("p", [container("c", ports=[port])]), "spec.containers[0].ports[0]",
            message, policy=PORTS)


def test_host_aliases_become_extra_hosts(plan: Planner) -> None:
    p = pod("p", [container("c")], hostAliases=[
        {"ip": "10.1.2.3", "hostnames": ["db", "db.local"]},
        {"ip": "fd00::1", "hostnames": ["v6"]}])
    infra = plan(p).infra
    assert infra.extra_hosts == {"db": "10.1.2.3", "db.local": "10.1.2.3", "v6": "fd00::1"}
    assert infra_host_config(infra)["extra_hosts"] == infra.extra_hosts
    assert infra_host_config(plan(pod("p", [container("c")])).infra)["extra_hosts"] is None


@pytest.mark.parametrize(("name", "hostname", "expected"), [
    ("web", None, "web"),
    ("web", "jupyter", "jupyter"),
    ("n" * 80, None, "n" * 63),
    ("a" * 62 + "-b", None, "a" * 62),  # no trailing '-' after the cut
])
def test_hostname(plan: Planner, name: str, hostname: str | None, expected: str) -> None:
    extra = {"hostname": hostname} if hostname else {}
    infra = plan(pod(name, [container("c")], **extra)).infra
    assert infra.hostname == expected
    assert infra_create_args(infra)["hostname"] == expected


# --- registry credentials -------------------------------------------------------------------------


def pull_secret(name: str, auths: dict[str, Any]) -> dict[str, Any]:
    return secret(name, {".dockerconfigjson": json.dumps({"auths": auths})},
                  type_="kubernetes.io/dockerconfigjson")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_image_pull_secrets_give_registry_auth_by_host(plan: Planner) -> None:
    secrets = [
        pull_secret("hub", {"https://index.docker.io/v1/": {"auth": b64("bob:pa:ss")}}),
        pull_secret("private", {
            "registry.example.com:5000": {"username": "alice", "password": "s3cret"},
            "https://ghcr.io/v2/": {"auth": b64("carol:tok")}}),
    ]
    p = pod("p", [container("c")],
            imagePullSecrets=[{"name": "hub"}, {"name": "private"}, {"name": "absent"}])
    assert plan(p, secrets=secrets).registry_auth == {
        "docker.io": {"username": "bob", "password": "pa:ss"},
        "registry.example.com:5000": {"username": "alice", "password": "s3cret"},
        "ghcr.io": {"username": "carol", "password": "tok"},
    }


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io",
                                      "https://index.docker.io/v1/"])
def test_docker_hub_aliases(plan: Planner, registry: str) -> None:
    p = pod("p", [container("c")], imagePullSecrets=[{"name": "hub"}])
    auth = plan(p, secrets=[pull_secret("hub", {registry: {"username": "u", "password": "p"}})])
    assert auth.registry_auth == {"docker.io": {"username": "u", "password": "p"}}


def test_missing_pull_secret_is_ignored(plan: Planner) -> None:
    p = pod("p", [container("c")], imagePullSecrets=[{"name": "absent"}])
    assert plan(p).registry_auth == {}


@pytest.mark.parametrize("content", [
    "{not json",
    '{"auths": {"r.io": {"auth": "notbase64!"}}}',
    "[]",
    '{"auths": {"r.io": "x"}}',
    '{"auths": {"r.io": {"auth": "/w=="}}}',  # decodes to bytes that are not text
])
def test_malformed_pull_secret_is_refused_naming_it(plan: Planner, content: str) -> None:
    bad = secret("hub", {".dockerconfigjson": content}, type_="kubernetes.io/dockerconfigjson")
    p = pod("p", [container("c")], imagePullSecrets=[{"name": "hub"}])
    refused(plan, p, "spec.imagePullSecrets[0]", "'hub'", ".dockerconfigjson", secrets=[bad])


@pytest.mark.parametrize(("spec", "pid_mode"), [
    ({}, None),
    ({"shareProcessNamespace": True}, "container:INFRA"),
])
def test_process_namespace(plan: Planner, spec: dict[str, Any], pid_mode: str | None) -> None:
    planned = plan(pod("p", [container("c")], **spec))
    config = container_host_config(planned.main[0], "INFRA")
    assert config.get("pid_mode") == pid_mode


# --- environment and command reaching Docker ------------------------------------------------------


def test_pod_ip_and_node_facts_reach_the_env(plan: Planner) -> None:
    env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": path}}}
           for n, path in (("POD_IP", "status.podIP"), ("HOST_IP", "status.hostIP"),
                           ("POD_NAME", "metadata.name"))]
    p = pod("web", [container("c", env=env)])
    assert plan(p, pod_ip="10.244.0.7").main[0].env == [
        ("POD_IP", "10.244.0.7"), ("HOST_IP", "10.0.0.1"), ("POD_NAME", "web")]


def test_env_is_passed_as_key_value_strings_verbatim(plan: Planner) -> None:
    c = one(plan, env=[{"name": "URL", "value": "a=b&c==d"}, {"name": "MULTI", "value": "x\ny\n"},
                       {"name": "EMPTY", "value": ""}])
    # NVIDIA_VISIBLE_DEVICES=void goes last: no GPU without a grant (tests/test_floors.py).
    assert container_create_args(c)["environment"] == ["URL=a=b&c==d", "MULTI=x\ny\n", "EMPTY=",
                                                       "NVIDIA_VISIBLE_DEVICES=void"]


@pytest.mark.parametrize(("fields", "entrypoint", "command"), [
    ({}, None, None),
    ({"command": ["sh", "-c", "run"]}, ["sh", "-c", "run"], []),
    ({"command": ["sh"], "args": ["-c", "run"]}, ["sh"], ["-c", "run"]),
    ({"args": ["--port", "80"]}, None, ["--port", "80"]),
])
def test_entrypoint_and_command_in_create_args(plan: Planner, fields: dict[str, Any],
                                               entrypoint: list[str] | None,
                                               command: list[str] | None) -> None:
    args = container_create_args(one(plan, **fields))
    assert args.get("entrypoint", "absent") == ("absent" if entrypoint is None else entrypoint)
    assert args.get("command", "absent") == ("absent" if command is None else command)


def test_create_args_basics(plan: Planner) -> None:
    c = one(plan, image="  busybox:1.36 ", workingDir="/work", tty=True, stdin=True)
    args = container_create_args(c, name="il_custom")
    assert (args["image"], args["name"], args["working_dir"]) == ("busybox:1.36", "il_custom",
                                                                  "/work")
    assert args["tty"] is True and args["stdin_open"] is True
    assert container_create_args(c)["name"] == c.docker_name


def test_containers_join_the_infra_namespaces(plan: Planner) -> None:
    result = plan(pod("p", [container("c")], init=[container("i")]))
    for c in result.containers:
        config = container_host_config(c, result.infra.docker_name)
        assert config["network_mode"] == f"container:{result.infra.docker_name}"
        assert config["ipc_mode"] == f"container:{result.infra.docker_name}"


def test_grace_period_is_capped_by_the_node(plan: Planner) -> None:
    p = pod("p", [container("c")], terminationGracePeriodSeconds=10**12)
    assert plan(p).grace_period == SidecarPolicy().MaxGracePeriodSeconds
    assert plan(p, policy=SidecarPolicy(MaxGracePeriodSeconds=5)).grace_period == 5


@pytest.mark.parametrize("field_ref", [{"fieldPath": None}, {}, None])
def test_a_field_ref_without_a_path_is_refused_naming_the_field(plan: Planner,
                                                                field_ref: Any) -> None:
    """Found by the property tests: a null fieldPath crashed the planner (a 500 at /create)."""
    refused(plan, pod("p", [container("c", env=[{"name": "X", "valueFrom": {
        "fieldRef": field_ref}}])]), "spec.containers[0].env[0].valueFrom.fieldRef",
        "fieldPath")
