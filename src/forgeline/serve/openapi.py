"""The OpenAPI document, typed per served model.

The predict and explain routes take ``inputs`` of any shape, because one route serves every
model. A client generated from that would be untyped, so the document replaces those two
generic operations with one operation per served model (``predict_support_intents``), whose
request and response schemas are the model's own (:meth:`forgeline.tasks.base.Task.input_schema`
and friends). Every error response is documented with the one error body the server sends.

Model names and their input schemas (feature names, categories) are for the model's users:
with ``serve.auth`` on, the public ``/openapi.json`` keeps the generic operations, and the typed
document is ``GET /v1/openapi.json``, showing the models the caller's key may use.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from forgeline.config.service import LimitsConfig
from forgeline.registry import LoadedModel
from forgeline.tasks.base import predictor

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
            },
            "required": ["code", "message", "type", "param"],
        }
    },
    "required": ["error"],
}
_GENERIC = {
    "/v1/models/{name}/predict": ("predict", "predictions", "prediction_schema"),
    "/v1/models/{name}/explain": ("explain", "explanations", "explanation_schema"),
}
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
"""Visible ASCII, no spaces at the ends (HTTP strips them), at most 255 characters."""
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retries with the same key within 24 h get the first answer, billed once.",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def generic_document(app: FastAPI, secured: bool) -> dict[str, Any]:
    """The document of the routes as declared, with the server's real error body, and (when
    ``secured``) the bearer key that /v1 and /admin routes need."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path, path_item in document["paths"].items():
            for operation in path_item.values():
                if secured and path.startswith(("/v1/", "/admin/")):
                    operation["security"] = [{"apiKey": []}]
                for status, response in operation.get("responses", {}).items():
                    if not status.startswith("2"):
                        response["content"] = {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        }
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in _FASTAPI_VALIDATION:  # FastAPI's 422 body, which this server never sends
            schemas.pop(name, None)
        schemas["Error"] = ERROR_SCHEMA
        if secured:
            document["components"]["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "fl_<id>_<secret>"}
            }
        app.openapi_schema = document
    return app.openapi_schema


def typed_document(
    generic: dict[str, Any],
    models: dict[str, LoadedModel],
    limits: LimitsConfig,
    visible: Callable[[str], bool] = lambda name: True,
) -> dict[str, Any]:
    """``generic`` with the generic model operations replaced by one per visible model."""
    document = copy.deepcopy(generic)
    for path, (action, field, schema_of) in _GENERIC.items():
        template = document["paths"].pop(path, None)
        if template is None:
            continue
        for name, loaded in sorted(models.items()):
            if action not in loaded.model.capabilities or not visible(name):
                continue
            model = predictor(loaded.model)
            operation = copy.deepcopy(template["post"])
            operation["operationId"] = f"{action}_{re.sub(r'[^0-9a-zA-Z]', '_', name)}"
            operation["summary"] = f"{action.capitalize()} with {name} ({model.name})"
            operation["parameters"] = [_IDEMPOTENCY_KEY]
            item = model.input_schema()
            if item.get("type") == "string":
                item = {**item, "maxLength": limits.max_input_chars}
            inputs = {
                "type": "array",
                "items": item,
                "minItems": 1,
                "maxItems": limits.max_inputs_per_request,
            }
            operation["requestBody"] = _json_body(
                {
                    "type": "object",
                    "properties": {"inputs": inputs},
                    "required": ["inputs"],
                    "additionalProperties": False,
                }
            )
            results = {"type": "array", "items": getattr(model, schema_of)()}
            operation["responses"]["200"]["content"] = _json_body(
                {
                    "type": "object",
                    "properties": {
                        "model": {"const": name},
                        "version": {"type": "string"},
                        field: results,
                    },
                    "required": ["model", "version", field],
                    "additionalProperties": False,
                }
            )["content"]
            document["paths"][f"/v1/models/{name}/{action}"] = {"post": operation}
    return document


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}
