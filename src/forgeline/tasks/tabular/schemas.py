"""JSON Schemas of a tabular model's inputs, predictions and explanations, as the server
publishes them in its OpenAPI document (so a generated client is typed per model)."""

from __future__ import annotations

from typing import Any

from forgeline.tasks.tabular.columns import json_booleans, json_levels
from forgeline.tasks.tabular.settings import TabularSettings

_NUMBER = {"type": "number"}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}


def input_schema(settings: TabularSettings) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for column in settings.inputs:
        if column.kind == "numeric":
            properties[column.name] = {"type": ["number", "null"]}
        elif column.kind == "boolean":
            properties[column.name] = {"enum": [True, False, *json_booleans(), None]}
        else:
            properties[column.name] = {"enum": [*json_levels(column), None]}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def prediction_schema(settings: TabularSettings) -> dict[str, Any]:
    features = [column.name for column in settings.columns]
    reason = {
        "type": "object",
        "properties": {
            "feature": {"enum": features},
            "value": {
                "description": "The feature's value: a number, or a category as sent; null "
                "when missing."
            },
            "contribution": {**_NUMBER, "description": "How far it raised the risk (margin)."},
        },
        "required": ["feature", "value", "contribution"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "label": {"enum": [settings.event, settings.non_event]},
            "probability": {**_PROBABILITY, "description": "Calibrated probability of the event."},
            "score": {**_NUMBER, "description": "Scorecard points."},
            "decision": {"enum": [settings.above, settings.below]},
            "reason_codes": {"type": "array", "items": reason, "maxItems": settings.reason_codes},
        },
        "required": ["label", "probability", "score", "decision", "reason_codes"],
        "additionalProperties": False,
    }


def explanation_schema(settings: TabularSettings) -> dict[str, Any]:
    contributions = {column.name: _NUMBER for column in settings.columns}
    return {
        "type": "object",
        "properties": {
            "base_value": _NUMBER,
            "margin": _NUMBER,
            "probability": _PROBABILITY,
            "contributions": {
                "type": "object",
                "properties": contributions,
                "required": list(contributions),
                "additionalProperties": False,
            },
        },
        "required": ["base_value", "margin", "probability", "contributions"],
        "additionalProperties": False,
    }
