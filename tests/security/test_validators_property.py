"""Property tests: no name, UID or path an attacker can write gets out of its place, and no
pod spec, however malformed, crashes the planner instead of being refused."""

from __future__ import annotations

import copy
import json
import os
import string
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from docker_sidecar import host_fs
from docker_sidecar.plan import NodeFacts, PlanError, plan_pod
from docker_sidecar.policy import SidecarPolicy
from interlink_common.identity import (
    IdentityError,
    check_label,
    check_subdomain,
    check_uid,
    is_uid,
)
from interlink_common.wire import (
    LogStruct,
    PodCreateRequests,
    PodStatus,
    RetrievedPodData,
    WireError,
    loads,
    parse_model,
    parse_pod_list,
    unwrap_single,
)
from kube import container, create_body, pod

NASTY = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["..", ".", "/", "../../etc", "a/../..", "/etc/passwd", "a\0b", "a\nb",
                     "A", "-a", "a-", "a.b", "a" * 64, "a" * 254, " ", "ünïcode", "%2e%2e",
                     str(uuid.uuid4()).upper(), "{" + str(uuid.uuid4()) + "}",
                     str(uuid.uuid4()) + "\n", str(uuid.uuid4()) + "/.."]),
    st.uuids().map(str),
)
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(NASTY)
@FAST
def test_an_accepted_uid_is_one_plain_component_below_the_pods_directory(value):
    root = Path("/srv/data")
    if not is_uid(value):
        with pytest.raises(IdentityError):
            host_fs.pod_dir(root, value)
        return
    assert str(uuid.UUID(value)) == value
    path = host_fs.pod_dir(root, value)
    assert path.parent == root / "pods" and path.name == value
    assert os.path.normpath(path) == str(path)


@given(NASTY)
@FAST
def test_an_accepted_name_is_a_plain_file_name(value):
    for check, limit in ((check_label, 63), (check_subdomain, 253)):
        try:
            check(value, "metadata.name", "name")
        except IdentityError as exc:
            assert "metadata.name" in str(exc)
            continue
        assert 0 < len(value) <= limit
        assert set(value) <= set(string.ascii_lowercase + string.digits + "-.")
        assert "/" not in value and value not in (".", "..") and ".." not in value
        assert Path(value).name == value


@given(NASTY)
@FAST
def test_uid_errors_name_the_field_and_stay_short(value):
    if is_uid(value):
        assert check_uid(value) == value
        return
    with pytest.raises(IdentityError) as info:
        check_uid(value, "metadata.uid")
    assert str(info.value).startswith("metadata.uid ") and len(str(info.value)) < 400


COMPONENTS = st.sampled_from(["a", "b", "link", "file", "..", ".", "", "c"])


@given(st.lists(COMPONENTS, min_size=1, max_size=5))
@FAST
def test_host_fs_never_writes_outside_its_root(tmp_path, parts):
    """A tree whose 'link' entries point outside; every creation either stays inside or is
    refused, and the outside stays empty."""
    base = tmp_path / str(uuid.uuid4())
    root, outside = base / "root", base / "outside"
    for d in (root / "a", root / "b", outside):
        d.mkdir(parents=True)
    (root / "link").symlink_to(outside)
    (root / "a" / "link").symlink_to(outside)
    (root / "file").write_text("x")
    target = root.joinpath(*parts)
    for action in (lambda: host_fs.ensure_dir(root, target, 0o755, None, None),
                   lambda: host_fs.write_file(root, target, b"data", 0o644, None, None),
                   lambda: host_fs.create_file(root, target, 0o644)):
        try:
            action()
        except OSError:
            pass
    assert list(outside.iterdir()) == []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            real = os.path.realpath(os.path.join(dirpath, name))
            if not os.path.islink(os.path.join(dirpath, name)):
                assert real.startswith(str(root) + "/")


# --- fuzzing the wire models and the planner ------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)
SPEC_KEYS = st.sampled_from([
    "volumes", "securityContext", "hostNetwork", "hostPID", "initContainers", "containers",
    "restartPolicy", "terminationGracePeriodSeconds", "hostAliases", "imagePullSecrets",
    "hostname", "shareProcessNamespace"])
CONTAINER_KEYS = st.sampled_from([
    "name", "image", "command", "args", "env", "envFrom", "volumeMounts", "ports", "resources",
    "securityContext", "workingDir", "imagePullPolicy", "terminationMessagePath", "lifecycle"])
REFUSALS = (PlanError, IdentityError, WireError, ValidationError)


@given(st.dictionaries(SPEC_KEYS, JSON, max_size=3),
       st.dictionaries(CONTAINER_KEYS, JSON, max_size=3))
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_pod_spec_crashes_the_planner(tmp_path, spec_fields, container_fields):
    p = pod("fuzz", [container("main", "true")],
            volumes=[{"name": "v", "emptyDir": {}}])
    p["spec"].update(copy.deepcopy(spec_fields))
    if isinstance(p["spec"].get("containers"), list) and p["spec"]["containers"] and \
            isinstance(p["spec"]["containers"][0], dict):
        p["spec"]["containers"][0].update(copy.deepcopy(container_fields))
    try:
        data = RetrievedPodData.model_validate(create_body_safe(p))
        plan_pod(data, SidecarPolicy(), data_root=tmp_path, node=NodeFacts())
    except REFUSALS:
        pass


def create_body_safe(p: dict) -> dict:
    """``create_body`` needs container names; a fuzzed spec may have none."""
    try:
        return create_body(p)
    except (KeyError, TypeError, AttributeError):
        return {"pod": p, "container": [], "jobConfig": {}}


RICH = pod("rich", [container(
    "main", "true",
    env=[{"name": "A", "value": "1"},
         {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
         {"name": "C", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
         {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
         {"name": "E", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
    envFrom=[{"configMapRef": {"name": "cm"}, "prefix": "X_"}, {"secretRef": {"name": "s"}}],
    volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"},
                  {"name": "proj", "mountPath": "/proj"}, {"name": "down", "mountPath": "/down"},
                  {"name": "scratch", "mountPath": "/scratch", "subPath": "a"},
                  {"name": "home", "mountPath": "/home", "subPathExpr": "$(A)"}],
    ports=[{"containerPort": 80, "name": "http"}],
    resources={"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
    livenessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
    readinessProbe={"exec": {"command": ["true"]}},
    lifecycle={"preStop": {"exec": {"command": ["true"]}}},
    securityContext={"capabilities": {"drop": ["ALL"]}, "runAsUser": 1000})],
    init=[container("setup", "true")],
    securityContext={"fsGroup": 100, "supplementalGroups": [5]},
    imagePullSecrets=[{"name": "s"}], hostAliases=[{"ip": "10.0.0.1", "hostnames": ["a"]}],
    volumes=[
        {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "k"}],
                                      "defaultMode": 0o644}},
        {"name": "sec", "secret": {"secretName": "s", "optional": True}},
        {"name": "proj", "projected": {"sources": [
            {"configMap": {"name": "cm"}},
            {"secret": {"name": "s", "items": [{"key": "k", "path": "s/k"}]}},
            {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"serviceAccountToken": {"path": "token"}}]}},
        {"name": "down", "downwardAPI": {"items": [
            {"path": "cpu", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}}]}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "home", "persistentVolumeClaim": {"claimName": "home"}}])


def test_the_rich_pod_plans():
    """The fuzzing below starts from a pod the planner accepts, or it would test nothing."""
    data = RetrievedPodData.model_validate(rich_body(RICH))
    assert plan_pod(data, SidecarPolicy(), data_root=Path("/srv"), node=NodeFacts()).main


def rich_body(p: dict) -> dict:
    body = create_body_safe(p)
    for c in body["container"]:
        c["configMaps"] = [{"metadata": {"name": "cm", "namespace": "tests"}, "data": {"k": "v"}}]
        c["secrets"] = [{"metadata": {"name": "s", "namespace": "tests"}, "data": {"k": "dg=="}}]
    return body


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


RICH_PATHS = [p for p in _paths(RICH["spec"]) if p]


@given(st.lists(st.tuples(st.sampled_from(RICH_PATHS), JSON), min_size=1, max_size=3))
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "500")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_corruption_of_a_rich_pod_crashes_the_planner(tmp_path, edits):
    p = copy.deepcopy(RICH)
    for path, value in edits:
        target = p["spec"]
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed the way there
    try:
        data = RetrievedPodData.model_validate(rich_body(p))
        plan_pod(data, SidecarPolicy(), data_root=tmp_path, node=NodeFacts())
    except REFUSALS:
        pass


# --- the wire models: any bytes in, a model or a WireError out --------------------------------

BODIES = st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()))


@given(BODIES)
@FAST
def test_no_body_crashes_the_wire_models(body):
    for model, what in ((RetrievedPodData, "create request"), (LogStruct, "log request"),
                        (PodCreateRequests, "create request"), (PodStatus, "status")):
        try:
            parsed = parse_model(model, unwrap_single(loads(body, what), what), what)
        except WireError as exc:
            assert what in str(exc)
        else:
            parsed.to_wire()
    try:
        parse_pod_list(loads(body, "pod list"))
    except WireError:
        pass
