"""Schema pieces for both services' ``/openapi.json``, built from the wire models.

The endpoints read their raw bodies themselves (a forwarded call must not pay for FastAPI's
body parsing), so FastAPI cannot infer the request and response bodies: each route declares
them, with ``openapi_extra`` and ``responses``, from the pydantic models' own JSON schemas.
Only the document is built from these; no request is parsed or checked by them, and the
routes are served as plain Starlette routes (``RawRoute``).
The wire contract in words: docs/PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import request_response

from .identity import (
    LABEL_MAX,
    LABEL_PATTERN,
    SUBDOMAIN_MAX,
    SUBDOMAIN_PATTERN,
    UID_PATTERN,
)

REF = "#/components/schemas/{model}"
SESSION_HEADER = "InterLink-Http-Session"
JSON = "application/json"
TEXT = "text/plain"


class RawRoute(APIRoute):
    """A route FastAPI documents but Starlette serves: the endpoint takes the raw ``Request``
    and returns a ``Response``, so FastAPI's per-request handler (dependency solving, exit
    stacks, body limits) would do nothing for it but cost half of FastAPI's overhead
    (bench/bench_api.py measures it)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)


def raw_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose ``add_api_route`` routes are ``RawRoute``s."""
    app = FastAPI(**kwargs)
    app.router.route_class = RawRoute
    return app


def package_version() -> str:
    """This project's version, as installed; the document's ``info.version``."""
    try:
        return metadata.version("interlink-docker")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "0+source"


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def array_of(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": schema, **extra}


def component_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """Every model's schema (and those it refers to), keyed by class name."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return dict(top.get("$defs", {}))


# --- identity: what both services check before anything else (identity.py), as schemas --------

UID = {"type": "string", "format": "uuid", "pattern": UID_PATTERN,
       "description": "The pod's UID, a UUID in canonical lower-case form."}
LABEL = {"type": "string", "maxLength": LABEL_MAX, "pattern": LABEL_PATTERN}
SUBDOMAIN = {"type": "string", "maxLength": SUBDOMAIN_MAX, "pattern": SUBDOMAIN_PATTERN}
_CONTAINERS = {"type": "array", "items": {
    "type": "object", "required": ["name"],
    "properties": {"name": {**LABEL, "description": "A DNS-1123 label."}}}}

IDENTITY_SCHEMAS: dict[str, Any] = {
    "PodName": {
        "description": "What names a pod: a UUID UID, a DNS-1123 label namespace and a "
                       "DNS-1123 subdomain name. Anything else is 400, naming the field.",
        "type": "object", "required": ["metadata"],
        "properties": {"metadata": {
            "type": "object", "required": ["uid", "namespace", "name"],
            "properties": {"uid": UID, "namespace": LABEL, "name": SUBDOMAIN}}}},
    "PodIdentity": {
        "description": "A pod's name (PodName) and its containers' names (DNS-1123 labels).",
        "allOf": [{"$ref": REF.format(model="PodName")}, {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "containers": _CONTAINERS, "initContainers": _CONTAINERS}}}}]},
    "PodUID": {
        "description": "A pod asked about: its UID is required; namespace and name, when sent, "
                       "must be valid names.",
        "type": "object", "required": ["metadata"],
        "properties": {"metadata": {
            "type": "object", "required": ["uid"],
            "properties": {"uid": UID, "namespace": LABEL, "name": SUBDOMAIN}}}},
}


def identified(schema: dict[str, Any], identity: str) -> dict[str, Any]:
    """``schema`` (a pod) with the identity rules both services enforce on it."""
    return {"allOf": [schema, {"$ref": REF.format(model=identity)}]}


def log_identity(schema: dict[str, Any]) -> dict[str, Any]:
    """A LogStruct with the names checked: namespace, pod UID, and the container if named."""
    return {"allOf": [schema, {
        "type": "object", "required": ["Namespace", "PodUID"],
        "properties": {"Namespace": LABEL, "PodUID": UID,
                       "ContainerName": {"anyOf": [LABEL, {"const": ""}]}}}]}


def json_body(schema: dict[str, Any], description: str, *, required: bool = True
              ) -> dict[str, Any]:
    """An ``openapi_extra`` declaring a JSON request body (the handler reads it raw)."""
    return {"requestBody": {"required": required, "description": description,
                            "content": {JSON: {"schema": schema}}}}


def session_parameter(description: str) -> dict[str, Any]:
    return {"name": SESSION_HEADER, "in": "header", "required": False,
            "description": description, "schema": {"type": "string"}}


def text(description: str, example: str | None = None) -> dict[str, Any]:
    """A plain-text answer; every error of both services is one of these."""
    schema: dict[str, Any] = {"type": "string"}
    if example is not None:
        schema["example"] = example
    return {"description": description, "content": {TEXT: {"schema": schema}}}


def json_reply(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(codes: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """Plain-text error answers, one per status code, each with what it means."""
    return {code: text(meaning) for code, meaning in codes.items()}


def by_code(responses: Mapping[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """Answers in status-code order, ``default`` last, as a reader scans them."""
    return dict(sorted(responses.items(), key=lambda kv: (isinstance(kv[0], str), str(kv[0]))))


def install(app: FastAPI, models: Iterable[type[BaseModel]], *, description: str = "",
            bearer: str | None = None, open_paths: Iterable[str] = ()) -> None:
    """Serve the models' schemas under ``components.schemas``; built once, on first request.

    ``bearer`` describes the token every operation but those under ``open_paths`` needs, when
    the service checks one."""
    schemas = {**component_schemas(models), **IDENTITY_SCHEMAS}
    unchecked = frozenset(open_paths)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=description,
                              routes=app.routes)
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {}).update(schemas)
            if bearer is not None:
                components["securitySchemes"] = {"bearer": {
                    "type": "http", "scheme": "bearer", "description": bearer}}
                for path, operations in doc["paths"].items():
                    if path not in unchecked:
                        for operation in operations.values():
                            operation["security"] = [{"bearer": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
