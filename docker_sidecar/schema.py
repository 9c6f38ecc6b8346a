"""What the sidecar's ``/openapi.json`` says about each plugin route: methods, bodies, answers.

Declarations only: the handlers in ``app.py`` read and check the raw body themselves. The
wire contract in words: docs/PROTOCOL.md section 2.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from interlink_common.openapi import JSON, array_of, by_code, errors, identified, json_body, \
    json_reply, ref, session_parameter, text
from interlink_common.wire import CreateStruct, LogStruct, PingResponse, Pod, PodStatus, \
    RetrievedPodData

MODELS: tuple[type[BaseModel], ...] = (RetrievedPodData, Pod, LogStruct, CreateStruct,
                                       PodStatus, PingResponse)

DESCRIPTION = (
    "The interLink plugin API as this Docker sidecar serves it to the API server. Every route "
    "also accepts GET, POST, PUT, DELETE and PATCH with the same body; the methods listed are "
    "the ones the API server sends. Errors are plain text naming the field, the cap or the fix.")

TOKEN = ("The shared token of PluginTokenFile, as the API server sends it; every route but "
         "/healthz needs it when the sidecar is configured with one.")

SESSION = session_parameter("Sent by the API server (the VK's session, or `Request-<uuid>`); "
                            "this plugin does not use it.")

COMMON_ERRORS = errors({
    400: "The body does not match the wire contract, or a pod's UID is not a UUID or one of "
         "its names is not a valid Kubernetes name; the message names the field.",
    401: "PluginTokenFile configured: no bearer token, or the wrong one.",
    413: "The body is over Sidecar.MaxBodyBytes.",
    415: "No PluginTokenFile: a non-empty body not sent as application/json.",
    421: "No PluginTokenFile, TCP listener: the Host header names neither loopback nor this "
         "sidecar's address (DNS rebinding).",
    500: "Internal error; the message names the path and the exception.",
})


# A RetrievedPodData whose pod and containers are named as Kubernetes names them, with at
# least one container and an image for each (422 otherwise: nothing could run).
RUNNABLE = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["containers"], "properties": {"containers": {
        "type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "minLength": 1}}}}}}}}
CREATE = {"allOf": [ref(RetrievedPodData), {"type": "object", "properties": {
    "pod": {"allOf": [{"$ref": "#/components/schemas/PodIdentity"}, RUNNABLE]}}}]}
DELETE = identified(ref(Pod), "PodName")


def _route(methods: tuple[str, ...], summary: str, body: dict[str, Any],
           responses: dict[int | str, dict[str, Any]]) -> dict[str, Any]:
    return {"methods": list(methods), "summary": summary,
            "responses": by_code({**COMMON_ERRORS, **responses}),
            "openapi_extra": {"parameters": [SESSION], **body}}


PLUGIN_DOCS: dict[str, dict[str, Any]] = {
    "/create": _route(
        ("POST",), "Create a pod's containers",
        json_body({"anyOf": [CREATE, array_of(CREATE, minItems=1, maxItems=1)]},
                  "The pod and what its containers use. Current API servers send one object, "
                  "legacy ones a one-element array; both are accepted."),
        {200: json_reply(ref(CreateStruct), "Accepted: the containers are being created; "
                         "/status tells how they fare."),
         422: text("The pod cannot run on this node (a resource it asks for, a volume type, "
                   "a field the policy refuses); the message says which.")}),
    "/delete": _route(
        ("POST",), "Delete a pod's containers and files",
        json_body({"anyOf": [DELETE, array_of(DELETE, minItems=1, maxItems=1)]},
                  "The pod (its metadata.uid, a UUID, names it)."),
        {200: text("Deleted, or not found on this node (nothing to delete).")}),
    "/status": _route(
        ("GET",), "Statuses of pods, or the node's capacity",
        json_body(array_of(identified(ref(Pod), "PodUID")),
                  "The pods to report on. An empty array or body is the API server's ping.",
                  required=False),
        {200: json_reply({"anyOf": [array_of(ref(PodStatus)), ref(PingResponse)]},
                         "One PodStatus per pod, in request order; for an empty request, the "
                         "node's PingResponse."),
         413: text("The body is over Sidecar.MaxBodyBytes, or names more than "
                   "Sidecar.MaxStatusPods pods.")}),
    "/getLogs": _route(
        ("GET",), "A container's log",
        json_body(ref(LogStruct), "Which container and which part of its log."),
        {200: text("The log bytes, streamed as they come when Opts.Follow is true."),
         400: text("As for every route, and: no ContainerName for a pod with several "
                   "containers."),
         404: text("The pod, or that container, is not known on this node, or has no log yet."),
         429: text("Too many log follows open (Sidecar.MaxLogFollowsPerPod, MaxLogFollows)."),
         502: text("The Docker Engine refused the log request.")}),
}

OPERATIONS_DOCS: dict[str, dict[str, Any]] = {
    "/healthz": {"summary": "The process is up", "responses": {200: text("Up.", "ok")}},
    "/metrics": {"summary": "Prometheus metrics", "responses": by_code({
        200: text("Prometheus text exposition format."),
        401: COMMON_ERRORS[401], 421: COMMON_ERRORS[421]})},
    "/gpus": {"summary": "The node's GPUs and who holds them", "responses": by_code({
        200: {"description": "Every allocatable GPU, its readings, the pod holding it, the "
                             "queue of pods waiting for one.",
              "content": {JSON: {"schema": {"type": "object"}}}},
        401: COMMON_ERRORS[401], 421: COMMON_ERRORS[421]})},
}
