"""Wire types shared by the API server and the sidecar (docs/PROTOCOL.md section 3).

Two families of models live here:

* Kubernetes objects the VK sends (pods, config maps, secrets). They are passed through: every
  field we do not model is kept, and they are re-encoded with ``exclude_unset`` so that what goes
  out is what came in.
* interLink's own types (``PodStatus``, ``CreateStruct``, ``LogStruct``, ...). Their JSON keys are
  spelled, and ordered, as the Go structs write them.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _parse_time(value: Any) -> datetime | None:
    """Accept RFC 3339 strings, datetimes and Go's zero time (which means unset)."""
    if value is None or value == "" or value == GO_ZERO_TIME:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    else:
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if dt.year <= 1:
        return None
    return dt


def format_time(dt: datetime | None) -> str | None:
    """Serialize as Go's metav1.Time does: RFC 3339 in UTC at second precision, or null."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[
    datetime | None,
    BeforeValidator(_parse_time),
    PlainSerializer(format_time, return_type=str | None),
]


class K8sObject(BaseModel):
    """A Kubernetes object or fragment: unknown fields are kept, dumps omit what was not sent."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class ObjectMeta(K8sObject):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Pod(K8sObject):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] | None = None

    @property
    def uid(self) -> str:
        return self.metadata.uid

    @property
    def phase(self) -> str:
        return (self.status or {}).get("phase") or ""

    def ref(self) -> str:
        """``namespace/name`` as an operator reads it in kubectl."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


def decode_base64(encoded: Any, where: str) -> bytes:
    """Decode a base64 value as Go's JSON decoder does for ``[]byte`` (line breaks skipped)."""
    if not isinstance(encoded, str):
        raise WireError(f"{where} must be a base64 string")
    try:
        return base64.b64decode(encoded.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{where} is not valid base64; encode the value with base64, or put "
                        "plain text in stringData (secrets) or data (configmaps)") from None


class ConfigMap(K8sObject):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    data: dict[str, str] | None = None
    binaryData: dict[str, str] | None = None

    def values(self) -> dict[str, bytes]:
        """Every key's content: ``binaryData`` decoded, then ``data``."""
        out = {k: decode_base64(v, f"configmap {self.metadata.name!r} binaryData[{k!r}]")
               for k, v in (self.binaryData or {}).items()}
        out.update({k: str(v).encode() for k, v in (self.data or {}).items()})
        return out


class Secret(K8sObject):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    type: str | None = None
    data: dict[str, str] | None = None
    stringData: dict[str, str] | None = None

    def values(self) -> dict[str, bytes]:
        """Every key's content: ``data`` decoded, then ``stringData`` on top, as the API
        server merges them."""
        out = {k: decode_base64(v, f"secret {self.metadata.name!r} data[{k!r}]")
               for k, v in (self.data or {}).items()}
        out.update({k: str(v).encode() for k, v in (self.stringData or {}).items()})
        return out


class WireModel(BaseModel):
    """interLink's own types: exact keys, every field written, unknown keys kept on read."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --- VK -> API -------------------------------------------------------------------------------


class PodCreateRequests(WireModel):
    pod: Pod
    configmaps: list[ConfigMap] | None = None
    secrets: list[Secret] | None = None
    projectedvolumesmaps: list[ConfigMap] | None = None
    jobscriptURL: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pod": self.pod.to_wire(),
            "configmaps": _wire_list(self.configmaps),
            "secrets": _wire_list(self.secrets),
        }
        if "projectedvolumesmaps" in self.model_fields_set:
            out["projectedvolumesmaps"] = _wire_list(self.projectedvolumesmaps)
        if "jobscriptURL" in self.model_fields_set:
            out["jobscriptURL"] = self.jobscriptURL
        return out


# --- API -> plugin ---------------------------------------------------------------------------


class RetrievedContainer(WireModel):
    name: str
    configMaps: list[ConfigMap] | None = None
    projectedvolumemaps: list[ConfigMap] | None = None
    secrets: list[Secret] | None = None
    emptyDirs: list[str] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configMaps": _wire_list(self.configMaps),
            "projectedvolumemaps": _wire_list(self.projectedvolumemaps),
            "secrets": _wire_list(self.secrets),
            "emptyDirs": self.emptyDirs,
        }


class RetrievedPodData(WireModel):
    pod: Pod
    container: list[RetrievedContainer] | None = None
    jobConfig: dict[str, Any] | None = None
    jobScript: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pod": self.pod.to_wire(),
            "container": [c.to_wire() for c in self.container or []],
            "jobConfig": self.jobConfig if self.jobConfig is not None else {},
        }
        if self.jobScript:
            out["jobScript"] = self.jobScript
        return out


class CreateStruct(WireModel):
    PodUID: str
    PodJID: str


# --- status ----------------------------------------------------------------------------------


def _omit_empty(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Drop zero values of ``omitempty`` fields, as Go's encoder does."""
    return {k: v for k, v in data.items() if k not in keys or v}


class ContainerStateWaiting(WireModel):
    reason: str = ""
    message: str = ""

    def to_wire(self) -> dict[str, Any]:
        return _omit_empty(super().to_wire(), "reason", "message")


class ContainerStateRunning(WireModel):
    startedAt: Time = None


class ContainerStateTerminated(WireModel):
    exitCode: int = 0
    signal: int = 0
    reason: str = ""
    message: str = ""
    startedAt: Time = None
    finishedAt: Time = None
    containerID: str = ""

    def to_wire(self) -> dict[str, Any]:
        return _omit_empty(super().to_wire(), "signal", "reason", "message", "containerID")


class ContainerState(WireModel):
    """Exactly one of the three is set; only that one is written, as Go's omitempty does."""

    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None

    def to_wire(self) -> dict[str, Any]:
        return {k: v.to_wire() for k, v in (
            ("waiting", self.waiting),
            ("running", self.running),
            ("terminated", self.terminated),
        ) if v is not None}


class ContainerStatus(WireModel):
    name: str
    state: ContainerState = Field(default_factory=ContainerState)
    lastState: ContainerState = Field(default_factory=ContainerState)
    ready: bool = False
    restartCount: int = 0
    image: str = ""
    imageID: str = ""
    containerID: str = ""
    started: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.to_wire(),
            "lastState": self.lastState.to_wire(),
            "ready": self.ready,
            "restartCount": self.restartCount,
            "image": self.image,
            "imageID": self.imageID,
            "containerID": self.containerID,
            "started": self.started,
        }


class PodStatus(WireModel):
    name: str = ""
    UID: str = ""
    namespace: str = ""
    JID: str = ""
    containers: list[ContainerStatus] | None = None
    initContainers: list[ContainerStatus] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "UID": self.UID,
            "namespace": self.namespace,
            "JID": self.JID,
            "containers": None if self.containers is None else [c.to_wire() for c in self.containers],
            "initContainers": None if self.initContainers is None
            else [c.to_wire() for c in self.initContainers],
        }


# --- logs ------------------------------------------------------------------------------------


class ContainerLogOpts(WireModel):
    Tail: int = 0
    Bytes: int = 0
    Timestamps: bool = False
    Follow: bool = False
    Previous: bool = False
    SinceSeconds: int = 0
    SinceTime: Time = None


class LogStruct(WireModel):
    Namespace: str = ""
    PodUID: str = ""
    PodName: str = ""
    ContainerName: str = ""
    Opts: ContainerLogOpts = Field(default_factory=ContainerLogOpts)

    def to_wire(self) -> dict[str, Any]:
        opts = self.Opts.to_wire()
        opts["SinceTime"] = opts["SinceTime"] or GO_ZERO_TIME
        return {
            "Namespace": self.Namespace,
            "PodUID": self.PodUID,
            "PodName": self.PodName,
            "ContainerName": self.ContainerName,
            "Opts": opts,
        }


# --- ping ------------------------------------------------------------------------------------


class Accelerator(WireModel):
    resourceType: str = "nvidia.com/gpu"
    available: str = "0"


class NodeResources(WireModel):
    cpu: str = ""
    memory: str = ""
    pods: str = ""
    accelerators: list[Accelerator] = Field(default_factory=list)


class Taint(WireModel):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class PingResponse(WireModel):
    status: str = "ok"
    resources: NodeResources = Field(default_factory=NodeResources)
    taints: list[Taint] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "resources": self.resources.to_wire()}
        if self.taints is not None:
            out["taints"] = [t.to_wire() for t in self.taints]
        return out


# --- parsing helpers -------------------------------------------------------------------------


class WireError(ValueError):
    """A request body that does not match the wire contract; the message names the field."""


def _wire_list(items: list[Any] | None) -> list[dict[str, Any]] | None:
    return None if items is None else [i.to_wire() for i in items]


def unwrap_single(value: Any, what: str) -> Any:
    """Accept an object, a one-element array, or nested one-element arrays of it."""
    while isinstance(value, list):
        if len(value) != 1:
            raise WireError(f"{what}: expected one object (or a one-element array), "
                            f"got an array of {len(value)}")
        value = value[0]
    if not isinstance(value, dict):
        raise WireError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def loads(body: bytes, what: str) -> Any:
    """Decode a JSON request body, with an error that says what was expected."""
    if not body.strip():
        raise WireError(f"{what}: the request body is empty; send JSON")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"{what}: the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise WireError(f"{what}: the request body nests arrays or objects too deeply; "
                        "no pod needs that many levels") from None


def validation_message(exc: ValidationError, what: str) -> str:
    """Turn pydantic's errors into one line per field, as an operator reads them."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"... and {more} more")
    return f"{what}: " + "; ".join(parts)


def parse_model(model: type[BaseModel], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WireError(validation_message(exc, what)) from None


def parse_pod_list(data: Any, what: str = "pod list") -> list[Pod]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise WireError(f"{what}: expected a JSON array of pods, got {type(data).__name__}")
    return [parse_model(Pod, item, f"{what}[{i}]") for i, item in enumerate(data)]


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
