"""Schema pieces for both services' ``/openapi.json``, built from the wire models.

The endpoints read their raw bodies themselves (a forwarded call must not pay for FastAPI's
body parsing), so FastAPI cannot infer the request and response bodies: each route declares
them here, with ``openapi_extra`` and ``responses``, from the pydantic models' own JSON
schemas. Only the document is built from these; no request is parsed or checked by them.
The wire contract in words: docs/PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
SESSION_HEADER = "InterLink-Http-Session"
JSON = "application/json"
TEXT = "text/plain"


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


def install(app: FastAPI, models: Iterable[type[BaseModel]], *, description: str = "") -> None:
    """Serve the models' schemas under ``components.schemas``; built once, on first request."""
    schemas = component_schemas(models)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=description,
                              routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
