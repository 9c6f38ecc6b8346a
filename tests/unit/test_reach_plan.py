"""Reachability, pure parts: Sidecar.PublishPorts (containerPorts published on the node) and
the tunnel companion of interlink.eu/wstunnel-client-commands, from pod to plan to Docker
create arguments, and the status that leaves the companion out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kube import container, create_body, pod

from docker_sidecar import labels as L
from docker_sidecar.containers import Container
from docker_sidecar.docker_config import (
    container_create_args,
    container_host_config,
    infra_create_args,
    infra_host_config,
)
from docker_sidecar.floors import Floors
from docker_sidecar.plan import TUNNEL_ANNOTATION, NodeFacts, PlanError, PodPlan, plan_pod
from docker_sidecar.pod_worker import PodRecord
from docker_sidecar.policy import SidecarPolicy
from docker_sidecar.status import pod_status
from interlink_common.wire import RetrievedPodData

NODE = NodeFacts(cpus=4, memory=8 << 30, name="node", host_ip="10.0.0.1")
Planner = Callable[..., PodPlan]
PUBLISH = SidecarPolicy(PublishPorts=True, PublishPortRange="1-65535")
TUNNEL = SidecarPolicy(TunnelImage="interlink-test/busybox:1")
# What upstream's VK writes by default (its DefaultWstunnelCommand, filled in).
VK_COMMAND = ("curl  -L -f -k https://example.org/wstunnel.tar.gz -o wstunnel.tar.gz && "
              "tar -xzvf wstunnel.tar.gz && chmod +x wstunnel && ./wstunnel client "
              "--http-upgrade-path-prefix secret -R tcp://0.0.0.0:8888:localhost:8888 "
              "ws://tunnel.example.org:80 &")


@pytest.fixture
def plan(tmp_path) -> Planner:
    def run(p: dict[str, Any], policy: SidecarPolicy) -> PodPlan:
        data = RetrievedPodData.model_validate(create_body(p))
        return plan_pod(data, policy, data_root=tmp_path, node=NODE)
    return run


def notebook(**spec: Any) -> dict[str, Any]:
    return pod("jupyter-alice", [container("notebook", ports=[
        {"containerPort": 8888, "name": "notebook-port"}])], **spec)


def tunnelled(command: str = VK_COMMAND, **spec: Any) -> dict[str, Any]:
    p = notebook(**spec)
    p["metadata"]["annotations"][TUNNEL_ANNOTATION] = command
    return p


# --- published ports ------------------------------------------------------------------------


def test_nothing_is_published_by_default(plan: Planner) -> None:
    assert plan(notebook(), SidecarPolicy()).infra.ports == []


def test_each_container_port_is_published_on_the_same_node_port(plan: Planner) -> None:
    p = pod("p", [container("a", ports=[{"containerPort": 8888}, {"containerPort": 53,
                                                                   "protocol": "UDP"}]),
                  container("b", ports=[{"containerPort": 9000}])])
    infra = plan(p, PUBLISH).infra
    assert [(b.container_port, b.protocol, b.host_port, b.host_ip, b.published)
            for b in infra.ports] == [(8888, "tcp", 8888, "", True), (53, "udp", 53, "", True),
                                      (9000, "tcp", 9000, "", True)]
    assert infra_host_config(infra)["port_bindings"] == {
        "8888/tcp": [8888], "53/udp": [53], "9000/tcp": [9000]}
    assert infra_create_args(infra)["ports"] == [("53", "udp"), ("8888", "tcp"),
                                                 ("9000", "tcp")]


def test_publish_address_is_the_host_ip_of_the_binding(plan: Planner) -> None:
    policy = SidecarPolicy(PublishPorts=True, PublishAddress="127.0.0.1")
    infra = plan(notebook(), policy).infra
    assert infra_host_config(infra)["port_bindings"] == {"8888/tcp": [("127.0.0.1", 8888)]}


def test_a_host_port_is_kept_and_not_published_twice(plan: Planner) -> None:
    policy = SidecarPolicy(PublishPorts=True, AllowedHostPorts=["1-65535"])
    p = pod("p", [container("a", ports=[{"containerPort": 80, "hostPort": 8080},
                                         {"containerPort": 8888}])])
    ports = plan(p, policy).infra.ports
    assert [(b.container_port, b.host_port, b.published) for b in ports] == [
        (80, 8080, False), (8888, 8888, True)]


def test_a_port_declared_by_two_containers_is_published_once(plan: Planner) -> None:
    p = pod("p", [container("a", ports=[{"containerPort": 8888}]),
                  container("b", ports=[{"containerPort": 8888}])])
    assert len(plan(p, PUBLISH).infra.ports) == 1


def test_a_published_port_on_a_host_port_of_the_same_pod_is_refused(plan: Planner) -> None:
    policy = SidecarPolicy(PublishPorts=True, AllowedHostPorts=["1-65535"])
    p = pod("p", [container("a", ports=[{"containerPort": 80, "hostPort": 8888}]),
                  container("b", ports=[{"containerPort": 8888}])])
    with pytest.raises(PlanError, match=r"spec.containers\[1\].ports\[0\].containerPort "
                                        r"8888/tcp .*hostPort"):
        plan(p, policy)


def test_host_network_pods_publish_nothing(plan: Planner) -> None:
    policy = SidecarPolicy(PublishPorts=True, AllowHostNetwork=True)
    assert plan(notebook(hostNetwork=True), policy).infra.ports == []


@pytest.mark.parametrize("port", [{"containerPort": "8888"}, {"containerPort": 0},
                                  {"containerPort": 70000}, {"containerPort": True}])
def test_a_bad_container_port_names_the_field(plan: Planner, port: dict[str, Any]) -> None:
    p = pod("p", [container("a", ports=[port])])
    with pytest.raises(PlanError, match=r"spec.containers\[0\].ports\[0\].containerPort"):
        plan(p, PUBLISH)


def test_publish_address_must_be_an_ip() -> None:
    with pytest.raises(ValueError, match="PublishAddress"):
        SidecarPolicy(PublishAddress="node.example.org")
    assert SidecarPolicy(PublishAddress="0.0.0.0").PublishAddress == ""


# --- the tunnel companion -------------------------------------------------------------------


def test_no_annotation_no_companion(plan: Planner) -> None:
    assert plan(notebook(), TUNNEL).tunnel is None


def test_annotation_without_a_tunnel_image_is_refused_naming_the_key(plan: Planner) -> None:
    with pytest.raises(PlanError, match="Sidecar.TunnelImage") as info:
        plan(tunnelled(), SidecarPolicy())
    assert TUNNEL_ANNOTATION in str(info.value)


@pytest.mark.parametrize("command", ["", "   ", "a\0b", "x" * (64 * 1024 + 1)])
def test_an_unusable_command_is_refused(plan: Planner, command: str) -> None:
    with pytest.raises(PlanError, match=TUNNEL_ANNOTATION):
        plan(tunnelled(command), TUNNEL)


def test_the_companion_runs_the_command_in_the_pods_namespaces(plan: Planner) -> None:
    pp = plan(tunnelled(), TUNNEL)
    c = pp.tunnel
    assert c is not None and c not in pp.containers
    assert [m.name for m in pp.main] == ["notebook"] and pp.init == []
    assert c.role == L.ROLE_TUNNEL and c.name == L.TUNNEL_NAME
    assert c.image == "interlink-test/busybox:1"
    # The VK's command ends in '&': the shell waits for it.
    assert c.entrypoint == ["/bin/sh", "-c"] and c.cmd == [VK_COMMAND + "\nwait"]
    args = container_create_args(c)
    assert args["name"] == (f"il_tests_jupyter-alice_TUNNEL_{pp.uid}")
    assert args["labels"][L.ROLE] == "tunnel" and args["labels"][L.POD_UID] == pp.uid
    assert args["working_dir"] == "/tmp"
    floors = Floors.from_policy(TUNNEL)
    host = container_host_config(c, pp.infra.docker_name, floors=floors)
    assert host["network_mode"] == f"container:{pp.infra.docker_name}"
    assert host["restart_policy"] == {"Name": "always"}
    assert host["privileged"] is False and host["cap_drop"] == ["ALL"]
    assert "cap_add" not in host and "no-new-privileges:true" in host["security_opt"]
    assert host["pids_limit"] == TUNNEL.PidsLimit
    assert host["log_config"] == floors.host_config()["log_config"]


@pytest.mark.parametrize("restart", ["Never", "OnFailure", "Always"])
def test_the_companion_restarts_whatever_the_pods_policy(plan: Planner, restart: str) -> None:
    c = plan(tunnelled(restartPolicy=restart), TUNNEL).tunnel
    assert c is not None and c.restart_policy == {"Name": "always"}


def test_the_companion_runs_as_the_pods_user(plan: Planner) -> None:
    p = tunnelled(securityContext={"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100,
                                   "runAsNonRoot": True})
    c = plan(p, TUNNEL).tunnel
    assert c is not None and c.user == "1000:100" and not c.run_as_non_root
    c = plan(tunnelled(securityContext={"runAsNonRoot": True}), TUNNEL).tunnel
    assert c is not None and c.user is None and c.run_as_non_root  # the image's user, checked


def test_under_restricted_the_companion_must_run_as_non_root(plan: Planner) -> None:
    policy = SidecarPolicy(TunnelImage="interlink-test/busybox:1", PodSecurity="restricted")
    sc = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    p = pod("p", [container("c", securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, **sc})])
    p["metadata"]["annotations"][TUNNEL_ANNOTATION] = "sleep 1"
    c = plan(p, policy).tunnel
    assert c is not None and c.run_as_non_root


def test_a_bad_tunnel_image_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="TunnelImage"):
        SidecarPolicy(TunnelImage="Not An Image")


def test_status_leaves_the_companion_out(plan: Planner) -> None:
    pp = plan(tunnelled(), TUNNEL)
    record = PodRecord(uid=pp.uid, namespace=pp.namespace, name=pp.name, plan=pp,
                       pod=tunnelled())
    state = {"Status": "running", "Running": True, "StartedAt": "2026-01-01T00:00:00Z",
             "FinishedAt": "0001-01-01T00:00:00Z", "ExitCode": 0, "Pid": 10}

    def inspect(c: Any, cid: str) -> Container:
        view = Container.of({"Id": cid, "Name": "/" + c.docker_name, "State": state,
                             "Config": {"Labels": c.labels, "Image": c.image},
                             "RestartCount": 0, "Created": "2026-01-01T00:00:00Z"})
        assert view is not None
        return view

    assert pp.tunnel is not None
    containers = [inspect(pp.main[0], "a" * 64), inspect(pp.tunnel, "b" * 64)]
    status = pod_status(record, containers, health=lambda name: None,
                        message=lambda c, h: "").to_wire()
    assert [c["name"] for c in status["containers"]] == ["notebook"]
    assert status["containers"][0]["state"].get("running")
    assert not status.get("initContainers")


def test_the_companion_has_bounds_of_its_own(plan: Planner) -> None:
    """It runs the pod author's command outside the pod's containers: never unbounded, and
    the node's defaults for containers do not decide it."""
    c = plan(tunnelled(), TUNNEL).tunnel
    assert c is not None and c.nano_cpus == 500_000_000 and c.mem_limit == 256 << 20
    policy = SidecarPolicy(TunnelImage="interlink-test/busybox:1", TunnelCPULimit="2",
                           TunnelMemoryLimit="1Gi", DefaultCPULimit="100m")
    c = plan(tunnelled(), policy).tunnel
    assert c is not None and c.nano_cpus == 2_000_000_000 and c.mem_limit == 1 << 30


def test_published_ports_stay_in_the_configured_range(plan: Planner) -> None:
    """Ports below 1024 are the node's own services' (sshd, a web server) by default."""
    p = pod("p", [container("a", ports=[{"containerPort": 22}])])
    with pytest.raises(PlanError, match=r"spec.containers\[0\].ports\[0\].containerPort 22 .*"
                                        r"1024-65535 \(Sidecar.PublishPortRange\)"):
        plan(p, SidecarPolicy(PublishPorts=True))
    assert plan(pod("p", [container("a", ports=[{"containerPort": 8888}])]),
                SidecarPolicy(PublishPorts=True)).infra.ports[0].host_port == 8888
