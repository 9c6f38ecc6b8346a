"""What ``/openapi.json`` says about each VK-facing route: methods, bodies, answers.

Declarations only: the handlers in ``app.py`` read and check the raw body themselves. The
wire contract in words, both VK generations included: docs/PROTOCOL.md section 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from interlink_common.openapi import (
    JSON,
    TEXT,
    array_of,
    by_code,
    UID,
    errors,
    identified,
    json_body,
    json_reply,
    log_identity,
    ref,
    session_parameter,
    text,
)
from interlink_common.wire import (
    CreateStruct,
    LogStruct,
    PingResponse,
    Pod,
    PodCreateRequests,
    PodStatus,
)

MODELS: tuple[type[BaseModel], ...] = (PodCreateRequests, Pod, LogStruct, CreateStruct,
                                       PodStatus, PingResponse)

DESCRIPTION = (
    "The interLink API server's routes as the virtual kubelet (VK) calls them. Both VK "
    "generations are served: the current one (0.5+) sends the `InterLink-Http-Session` header "
    "on every call, the legacy one (0.1-0.2) never does, and some answers differ between them "
    "(see each route). Every VK route also accepts GET, HEAD, POST, PUT, DELETE, PATCH and "
    "OPTIONS with the same body, as upstream's router does; the methods listed are the ones the "
    "VKs send. Errors are plain text naming the field, the cap or the fix.")

SESSION = session_parameter(
    "Sent by the current VK on every call (`<Operation>#<n>`); its presence is how the "
    "generation is told apart (absent: legacy). Passed on to the plugin (a `Request-<uuid>` is "
    "made up when absent) and echoed on the answer.")

# The answers any VK route may give before its handler runs, or when it fails.
COMMON_ERRORS = errors({
    400: "The body does not match the wire contract, or a pod's UID, namespace, name or "
         "container name is not a valid Kubernetes name; the message names the field.",
    401: "OIDC on: no bearer token, or an invalid one (WWW-Authenticate says why).",
    403: "OIDC on: a valid token without the required group.",
    413: "The body is over MaxBodyBytes.",
    415: "No credential checked (no OIDC): a non-empty body not sent as application/json.",
    421: "No credential checked, TCP listener: the Host header names neither loopback nor "
         "this server's address (DNS rebinding).",
    500: "The plugin is unreachable, or an internal error (the message names the path).",
})
PASSED_THROUGH = {"default": text(
    "A non-200 plugin reply, with the plugin's status code and its message (scrubbed of "
    "anything token-like).")}
STATUS_ARRAY = array_of(ref(PodStatus))
OBJECT: dict[str, Any] = {"type": "object"}


def _objects(**properties: Any) -> dict[str, Any]:
    return array_of({"type": "object", "properties": properties} if properties else OBJECT)


# What the API server reads of a pod to give each container its ConfigMaps and Secrets
# (pod_data.py); any of these of another type is 400, naming the field.
_CONTAINER_REFS = _objects(
    env=_objects(valueFrom={"type": "object", "properties": {
        "configMapKeyRef": OBJECT, "secretKeyRef": OBJECT}}),
    envFrom=_objects(configMapRef=OBJECT, secretRef=OBJECT),
    volumeMounts=_objects())
POD_REFERENCES = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "containers": _CONTAINER_REFS, "initContainers": _CONTAINER_REFS,
    "volumes": _objects(configMap=OBJECT, secret=OBJECT, projected={
        "type": "object", "properties": {"sources": _objects(configMap=OBJECT,
                                                             secret=OBJECT)}})}}}}
# A PodCreateRequests whose pod and containers are named as Kubernetes names them.
CREATE = {"allOf": [ref(PodCreateRequests), {"type": "object", "properties": {
    "pod": {"allOf": [{"$ref": "#/components/schemas/PodIdentity"}, POD_REFERENCES]}}}]}


@dataclass(frozen=True)
class RouteDoc:
    """One route's entry in the document."""

    methods: tuple[str, ...]  # the ones the VKs send; the others are served but not listed
    summary: str
    body: dict[str, Any] | None
    responses: dict[int | str, dict[str, Any]]
    errors: dict[int | str, dict[str, Any]] = field(default_factory=dict)

    def openapi_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"parameters": [SESSION]}
        if self.body is not None:
            extra.update(self.body)
        return extra

    def all_responses(self) -> dict[int | str, dict[str, Any]]:
        return by_code({**COMMON_ERRORS, **self.errors, **self.responses})


VK_DOCS: dict[str, RouteDoc] = {
    "/create": RouteDoc(
        ("POST",), "Create a pod on the plugin",
        json_body({"anyOf": [CREATE, array_of(CREATE, minItems=1, maxItems=1)]},
                  "The pod with the config maps and secrets it uses. Both VK generations send "
                  "one object; a one-element array of it is accepted too."),
        {200: {"description": "Created: the plugin's answer, passed through. Current VKs "
                              "read the CreateStruct (PodJID becomes the pod's JobID "
                              "annotation); legacy VKs ignore the body.",
               "content": {JSON: {"schema": ref(CreateStruct)}}}},
        PASSED_THROUGH),
    "/delete": RouteDoc(
        ("DELETE",), "Delete a pod on the plugin",
        json_body(identified(ref(Pod), "PodName"),
                  "One pod, forwarded to the plugin byte for byte."),
        {200: {"description": "Deleted (an unknown pod too). Current VK: the plugin's text. "
                              "Legacy VK: a one-element array of PodStatus with null "
                              "containers, which it parses.",
               "content": {TEXT: {"schema": {"type": "string"}},
                           JSON: {"schema": STATUS_ARRAY}}}},
        PASSED_THROUGH),
    "/status": RouteDoc(
        ("GET",), "Statuses of pods",
        json_body(array_of(identified(ref(Pod), "PodUID")),
                  "The pods to report on (current VK: one per call; legacy VK: all it knows). "
                  "An empty array or an empty body asks for every cached status.",
                  required=False),
        {200: json_reply(STATUS_ARRAY,
                         "One PodStatus per requested pod the plugin knows, in request order; "
                         "Running, Pending and uncached pods are asked of the plugin, the "
                         "others answered from the cache.")},
        {**PASSED_THROUGH, 502: text("The plugin answered 200 without a JSON array.")}),
    "/getLogs": RouteDoc(
        ("GET",), "A container's log",
        json_body(log_identity(ref(LogStruct)), "Which container and which part of its log."),
        {200: text("The log bytes, streamed as they come when Opts.Follow is true.")},
        {**PASSED_THROUGH,
         400: text("As for every route, and: Tail with Bytes, SinceSeconds with SinceTime, a "
                   "namespace or container name that is not a DNS-1123 label, a PodUID that "
                   "is not a UUID."),
         429: text("MaxLogStreams log streams are open through this server already.")}),
    "/pinglink": RouteDoc(
        ("POST",), "Is the plugin reachable and ready",
        None,
        {200: {"description": "Current VK: the plugin's answer to `GET /status []` relayed "
                              "with its status code (our sidecar's PingResponse updates the "
                              "node's capacity). Legacy VK: `0`, which it parses as an integer.",
               "content": {JSON: {"schema": ref(PingResponse)},
                           TEXT: {"schema": {"type": "string", "example": "0"}}}}},
        {**PASSED_THROUGH,
         500: text("The plugin is unreachable: the body is `503`.", "503")}),
    "/updateCache": RouteDoc(
        ("POST",), "Forget a pod's cached status",
        json_body({"anyOf": [UID, identified(ref(Pod), "PodUID")]},
                  "Current VK: the pod. Legacy VK: the pod's UID as raw bytes, not JSON "
                  "(still sent as application/json); a JSON string holding the UID is "
                  "accepted too."),
        {200: text("Evicted (or was not cached).", "Updated cache")}),
}

OPEN_DOCS: dict[str, dict[str, Any]] = {
    "/healthz": {"summary": "The process is up", "responses": {200: text("Up.", "ok")}},
    "/readyz": {"summary": "The plugin answers", "responses": {
        200: text("The plugin answered `GET /status []` with 200.", "ready"),
        503: text("Not ready: the plugin is unreachable or answered non-200.")}},
    "/metrics": {"summary": "Prometheus metrics", "responses": {
        200: text("Prometheus text exposition format.")}},
}
