"""Wire models: golden fixtures round-trip, Go JSON rules hold, create bodies parse in every shape."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from interlink_common.wire import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStatus,
    CreateStruct,
    LogStruct,
    PingResponse,
    PodCreateRequests,
    PodStatus,
    RetrievedPodData,
    WireError,
    loads,
    parse_model,
    unwrap_single,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
CREATE_FIXTURES = sorted(p.name for p in FIXTURES.glob("*_create_*.json"))


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", CREATE_FIXTURES)
def test_create_requests_round_trip_unchanged(name):
    raw = fixture(name)
    assert PodCreateRequests.model_validate(raw).to_wire() == raw


def test_unmodelled_pod_fields_survive_re_encoding():
    raw = fixture("current_create_notebook.json")
    out = PodCreateRequests.model_validate(raw).to_wire()
    assert out["pod"]["metadata"]["managedFields"] == raw["pod"]["metadata"]["managedFields"]
    assert out["pod"]["spec"]["tolerations"] == raw["pod"]["spec"]["tolerations"]
    assert out["pod"]["metadata"]["ownerReferences"] == []


def test_null_creation_timestamp_kept_as_null():
    raw = fixture("current_create_serviceaccount.json")
    out = PodCreateRequests.model_validate(raw).to_wire()
    assert out["pod"]["metadata"]["creationTimestamp"] is None


def test_plugin_status_round_trips_with_exact_keys_in_order():
    raw = fixture("plugin_status_reply.json")
    statuses = [PodStatus.model_validate(s) for s in raw]
    out = [s.to_wire() for s in statuses]
    assert out == raw
    assert list(out[0]) == ["name", "UID", "namespace", "JID", "containers", "initContainers"]
    assert list(out[0]["containers"][0]) == ["name", "state", "lastState", "ready",
                                             "restartCount", "image", "imageID", "containerID",
                                             "started"]


def test_timestamps_are_rfc3339_utc_seconds_or_null():
    started = datetime(2026, 3, 4, 11, 15, 40, 123456, tzinfo=timezone.utc)
    status = ContainerStatus(name="c", state=ContainerState(
        terminated=ContainerStateTerminated(exitCode=42, reason="Error", startedAt=started)))
    out = status.to_wire()
    term = out["state"]["terminated"]
    assert term["startedAt"] == "2026-03-04T11:15:40Z"
    assert term["finishedAt"] is None
    assert list(out["state"]) == ["terminated"]
    assert out["lastState"] == {}


def test_timestamp_with_offset_is_converted_to_utc():
    state = ContainerStateRunning.model_validate({"startedAt": "2026-03-04T12:15:40+01:00"})
    assert state.to_wire() == {"startedAt": "2026-03-04T11:15:40Z"}


def test_go_zero_time_reads_as_unset_and_is_written_back_for_logs():
    req = LogStruct.model_validate(fixture("logs_request_current.json"))
    assert req.Opts.SinceTime is None
    assert req.to_wire() == fixture("logs_request_current.json")


def test_bad_timestamp_is_a_clear_error():
    with pytest.raises(WireError, match="Opts.SinceTime"):
        parse_model(LogStruct, {"Opts": {"SinceTime": "yesterday"}}, "log request")


def test_ping_response_keys_and_optional_taints():
    raw = fixture("ping_response.json")
    assert PingResponse.model_validate(raw).to_wire() == raw
    cleared = PingResponse.model_validate({**raw, "taints": []}).to_wire()
    assert cleared["taints"] == []


def test_create_struct_keys():
    assert CreateStruct(PodUID="u", PodJID="j").to_wire() == {"PodUID": "u", "PodJID": "j"}


@pytest.mark.parametrize("shape", ["object", "array", "nested"])
def test_create_body_parses_as_object_array_or_nested_array(shape):
    raw = {"pod": fixture("current_create_failing.json")["pod"], "container": [], "jobConfig": {}}
    body = {"object": raw, "array": [raw], "nested": [[raw]]}[shape]
    data = parse_model(RetrievedPodData, unwrap_single(body, "create"), "create")
    assert data.pod.uid == "3c2b1a09-8f7e-4d6c-a5b4-c3d2e1f0a9b8"


@pytest.mark.parametrize("body, message", [
    ([], "array of 0"),
    ([{}, {}], "array of 2"),
    ("text", "expected a JSON object"),
])
def test_create_body_wrong_shape_names_the_problem(body, message):
    with pytest.raises(WireError, match=message):
        unwrap_single(body, "create request")


def test_missing_pod_is_named():
    with pytest.raises(WireError, match="pod: Field required"):
        parse_model(PodCreateRequests, {"configmaps": []}, "create request")


@pytest.mark.parametrize("body", [b"", b"{not json", b"\xff\xfe"])
def test_loads_rejects_empty_and_malformed(body):
    with pytest.raises(WireError):
        loads(body, "create request")


def test_retrieved_pod_data_omits_empty_job_script_and_keeps_job_config():
    raw = fixture("current_create_failing.json")
    data = RetrievedPodData(pod=PodCreateRequests.model_validate(raw).pod, container=[])
    out = data.to_wire()
    assert list(out) == ["pod", "container", "jobConfig"]
    assert out["jobConfig"] == {}
