"""Pod Security admission (pure): each control, its exemption, and what reaches Docker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docker_sidecar.admission import (
    AdmissionError,
    admit,
    container_security,
    non_root_violation,
    pod_sysctls,
)
from docker_sidecar.policy import SidecarPolicy
from kube import container, pod


def refused(p: dict[str, Any], policy: SidecarPolicy, *needles: str) -> str:
    with pytest.raises(AdmissionError) as info:
        admit(p, policy)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    return str(info.value)


def sc(**fields: Any) -> dict[str, Any]:
    return pod("p", [container("main", securityContext=fields)],
               init=[container("setup")])


BASELINE = SidecarPolicy()


# (pod, control, field, exemption that admits it)
CONTROLS = [
    (sc(privileged=True), "privileged", "spec.containers[0].securityContext.privileged",
     {"AllowPrivileged": True}),
    (pod("p", [container("c")], hostNetwork=True), "host namespaces", "spec.hostNetwork",
     {"AllowHostNetwork": True}),
    (pod("p", [container("c")], hostIPC=True), "host namespaces", "spec.hostIPC",
     {"AllowHostIPC": True}),
    (sc(capabilities={"add": ["SYS_PTRACE"]}), "non-default capabilities",
     "capabilities.add[0]", {"AllowedCapabilities": ["SYS_PTRACE"]}),
    (sc(capabilities={"add": ["cap_sys_ptrace"]}), "non-default capabilities",
     "capabilities.add[0]", {"AllowedCapabilities": ["CAP_SYS_PTRACE"]}),
    (pod("p", [container("c", ports=[{"containerPort": 80, "hostPort": 8080}])]), "hostPort",
     "spec.containers[0].ports[0].hostPort", {"AllowedHostPorts": ["8000-8100"]}),
    (pod("p", [container("c")], volumes=[{"name": "h", "hostPath": {"path": "/data"}}]),
     "hostPath volumes", "spec.volumes[0].hostPath", {"HostPathPrefixes": ["/data"]}),
    (sc(seccompProfile={"type": "Unconfined"}), "seccompProfile",
     "spec.containers[0].securityContext.seccompProfile.type", {"AllowUnconfinedSeccomp": True}),
    (pod("p", [container("c")], securityContext={"seccompProfile": {"type": "Unconfined"}}),
     "seccompProfile", "spec.securityContext.seccompProfile.type",
     {"AllowUnconfinedSeccomp": True}),
    (sc(appArmorProfile={"type": "Unconfined"}), "forbidden AppArmor profile",
     "appArmorProfile.type", {"AllowUnconfinedAppArmor": True}),
    (sc(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions", "seLinuxOptions.type",
     {"AllowSELinuxOptions": True}),
    (sc(seLinuxOptions={"user": "system_u"}), "seLinuxOptions", "seLinuxOptions.user",
     {"AllowSELinuxOptions": True}),
    (sc(procMount="Unmasked"), "procMount", "securityContext.procMount",
     {"AllowUnmaskedProcMount": True}),
    (pod("p", [container("c")], securityContext={"sysctls": [
        {"name": "net.core.somaxconn", "value": "1024"}]}), "forbidden sysctls",
     "spec.securityContext.sysctls[0].name", {"AllowedUnsafeSysctls": ["net.core.*"]}),
]


@pytest.mark.parametrize("p, control, field, exemption", CONTROLS,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(CONTROLS)])
def test_each_baseline_control_and_its_exemption(p, control, field, exemption):
    key = next(iter(exemption))
    message = refused(p, BASELINE, 'violates PodSecurity "baseline"', control, field,
                      f"Sidecar.{key}")
    assert message.count("(") >= 1
    admit(p, SidecarPolicy(**exemption))  # the exemption admits it
    admit(p, SidecarPolicy(PodSecurity="privileged", **(
        {"HostPathPrefixes": ["/data"]} if key == "HostPathPrefixes" else {})))


def test_baseline_allows_what_a_plain_pod_uses():
    admit(sc(capabilities={"add": ["NET_BIND_SERVICE", "chown"], "drop": ["ALL"]},
             seccompProfile={"type": "RuntimeDefault"}, appArmorProfile={"type": "RuntimeDefault"},
             seLinuxOptions={"type": "container_t", "level": "s0:c123,c456"},
             procMount="Default", runAsUser=0), BASELINE)
    admit(pod("p", [container("c")], securityContext={"sysctls": [
        {"name": "net.ipv4.ping_group_range", "value": "0 1000"},
        {"name": "kernel.shm_rmid_forced", "value": "1"}]}), BASELINE)


def test_every_violation_is_listed_at_once():
    p = pod("p", [container("a", securityContext={"privileged": True}),
                  container("b", securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})],
            hostPID=True)
    message = refused(p, BASELINE, "privileged", "non-default capabilities", "host namespaces")
    assert "spec.containers[0]" in message and "spec.containers[1]" in message


def test_init_containers_are_checked_too():
    p = pod("p", [container("c")], init=[container("i", securityContext={"privileged": True})])
    refused(p, BASELINE, "spec.initContainers[0].securityContext.privileged")


def test_a_windows_host_process_is_never_admitted():
    p = sc(windowsOptions={"hostProcess": True})
    refused(p, SidecarPolicy(AllowPrivileged=True), "hostProcess", "no exemption")


def test_apparmor_annotation_unconfined_is_refused():
    p = pod("p", [container("c")])
    p["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/c": "unconfined"}
    refused(p, BASELINE, "forbidden AppArmor profile", "Sidecar.AllowUnconfinedAppArmor")


RESTRICTED = SidecarPolicy(PodSecurity="restricted")
HARDENED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def hardened(**pod_sc: Any) -> dict[str, Any]:
    return pod("p", [container("c", securityContext=dict(HARDENED))],
               securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                **pod_sc})


def test_restricted_admits_a_hardened_pod():
    admit(hardened(), RESTRICTED)
    p = hardened()
    p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    admit(p, RESTRICTED)


@pytest.mark.parametrize("mutate, control", [
    (lambda p: p["spec"]["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
     "allowPrivilegeEscalation != false"),
    (lambda p: p["spec"]["containers"][0]["securityContext"].update(capabilities={}),
     "unrestricted capabilities"),
    (lambda p: p["spec"]["containers"][0]["securityContext"]["capabilities"].update(
        add=["CHOWN"]), "unrestricted capabilities"),
    (lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot != true"),
    (lambda p: p["spec"]["containers"][0]["securityContext"].update(runAsNonRoot=False),
     "runAsNonRoot != true"),
    (lambda p: p["spec"]["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser=0"),
    (lambda p: p["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile"),
    (lambda p: p["spec"].update(volumes=[{"name": "v", "gitRepo": {"repository": "x"}}]),
     "restricted volume types"),
])
def test_each_restricted_control(mutate, control):
    p = hardened()
    mutate(p)
    refused(p, RESTRICTED, 'violates PodSecurity "restricted"', control)


def test_restricted_includes_baseline():
    p = hardened()
    p["spec"]["containers"][0]["securityContext"]["privileged"] = True
    refused(p, RESTRICTED, "privileged")


def test_allowed_settings_become_docker_options():
    p = pod("p", [container("c", securityContext={
        "capabilities": {"add": ["cap_net_bind_service"], "drop": ["all"]},
        "allowPrivilegeEscalation": False, "procMount": "Unmasked",
        "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}})],
        securityContext={"seccompProfile": {"type": "Localhost",
                                            "localhostProfile": "profiles/audit.json"},
                         "appArmorProfile": {"type": "Localhost",
                                             "localhostProfile": "k8s-apparmor-example"}})
    out = container_security(p, p["spec"]["containers"][0])
    assert out.cap_add == ["NET_BIND_SERVICE"] and out.cap_drop == ["ALL"]
    assert out.seccomp_localhost == "profiles/audit.json"
    assert out.security_opt == ["no-new-privileges:true", "apparmor=k8s-apparmor-example",
                                "label=type:container_t", "label=level:s0:c1,c2",
                                "systempaths=unconfined"]
    plain = container_security(pod("p", [container("c")]), container("c"))
    assert (plain.cap_add, plain.cap_drop, plain.security_opt) == ([], [], [])


def test_container_profile_wins_over_the_pod_profile():
    p = pod("p", [container("c", securityContext={"seccompProfile": {"type": "Unconfined"}})],
            securityContext={"seccompProfile": {"type": "RuntimeDefault"}})
    assert "seccomp=unconfined" in container_security(p, p["spec"]["containers"][0]).security_opt


@pytest.mark.parametrize("profile", ["../../etc/shadow", "/etc/shadow", ""])
def test_localhost_seccomp_profile_must_stay_under_the_profile_root(profile):
    p = sc(seccompProfile={"type": "Localhost", "localhostProfile": profile})
    refused(p, BASELINE, "localhostProfile", "Sidecar.SeccompProfileRoot")


def test_sysctls_go_to_the_sandbox():
    p = pod("p", [container("c")], securityContext={"sysctls": [
        {"name": "net.ipv4.tcp_syncookies", "value": "1"}]})
    assert pod_sysctls(p) == {"net.ipv4.tcp_syncookies": "1"}
    assert pod_sysctls(pod("p", [container("c")])) == {}


@pytest.mark.parametrize("user, violation", [
    ("", "will run as root"), ("0", "will run as root"), ("root", "will run as root"),
    ("0:0", "will run as root"), ("jovyan", "non-numeric user (jovyan)"), ("1000", None),
    ("1000:100", None)])
def test_run_as_non_root_checks_the_image_user(user, violation):
    found = non_root_violation(user)
    assert (found is None) if violation is None else (violation in found)


@pytest.mark.parametrize("p", [
    sc(appArmorProfile={"type": "Localhost", "localhostProfile": "unconfined"}),
    sc(appArmorProfile={"type": "Localhost", "localhostProfile": "my-profile\n"}),
    pod("p", [container("main")]) | {"metadata": {
        "name": "p", "namespace": "tests", "uid": "0b6e2c1a-8a5d-4a7e-9c8e-3f1f2d4b5a6c",
        "annotations": {"container.apparmor.security.beta.kubernetes.io/main":
                        "localhost/unconfined"}}},
], ids=["localhost-unconfined", "trailing-newline", "annotation-localhost-unconfined"])
def test_apparmor_unconfined_cannot_come_in_as_a_localhost_profile(p):
    refused(p, BASELINE, "forbidden AppArmor profile")
    refused(p, RESTRICTED, "forbidden AppArmor profile")



@pytest.mark.parametrize("prefix, overlap", [
    ("/", "/srv/interlink"), ("/srv", "/srv/interlink"), ("/srv/interlink/pods", "/srv/interlink"),
    ("/var/lib", "/var/lib/docker"), ("/run", "/run"), ("/data", None)])
def test_host_path_prefixes_cannot_reach_the_data_root_or_docker(prefix, overlap):
    from docker_sidecar.cli import host_path_problem

    problem = host_path_problem([prefix], [Path("/srv/interlink"), Path("/var/lib/docker"),
                                           Path("/run")])
    if overlap is None:
        assert problem is None
    else:
        assert problem is not None and "Sidecar.HostPathPrefixes" in problem and overlap in problem
