"""Request and response shapes of the admin API (:mod:`forgeline.serve.admin`).

Every number in a request is bounded and every name matched whole, so no input can overflow a
date or sneak a newline into a tenant's name; values must have their JSON type (no "24" for a
number). Times are RFC 3339 in UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from forgeline.audit import AuditError, AuditRecord, parse_since
from forgeline.audit.log import SINCE_PATTERN
from forgeline.billing.invoices import Invoice
from forgeline.billing.keys import ACTIONS, MAX_KEY_LIFETIME, KeyInfo, utcnow
from forgeline.billing.usage import MONTH_PATTERN, month_problem
from forgeline.config.sections import NAME_PATTERN

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]


def _month(text: str) -> str:
    problem = month_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


Month = Annotated[
    str,
    AfterValidator(_month),
    WithJsonSchema({"type": "string", "pattern": MONTH_PATTERN, "examples": ["2026-11"]}),
]
"""A billing month, YYYY-MM; a bad one is refused saying so."""


def _since(value: Any) -> datetime:
    try:
        return parse_since(str(value))
    except AuditError as exc:
        raise ValueError(str(exc)) from None


Since = Annotated[
    datetime,
    BeforeValidator(_since),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SINCE_PATTERN,
            "description": "YYYY-MM-DD, or a time after it; UTC unless it has an offset",
            "examples": ["2026-11-05", "2026-11-05T10:30:00Z"],
        }
    ),
]
"""A date or time from which on to list (a naive UTC datetime once validated)."""
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _utc(moment: datetime | None) -> datetime | None:
    """A naive UTC time from the database as an aware one, so it is written with its offset."""
    return moment.replace(tzinfo=UTC) if moment is not None else None


class KeyOut(BaseModel):
    id: str
    tenant: str | None
    plan: str | None
    models: list[str]
    actions: list[str]
    is_admin: bool
    status: Literal["active", "expired", "revoked"]
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    revoked_at: AwareDatetime | None
    replaces: str | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        fields = dataclasses.asdict(info)
        for name in ("created_at", "expires_at", "revoked_at"):
            fields[name] = _utc(fields[name])
        return cls(**fields, status=info.status(utcnow()))


class NewKey(BaseModel):
    key: str = Field(description="The API key. Shown only here: it is not stored.")
    info: KeyOut


class CreateKey(BaseModel):
    """A customer key (``tenant``, and ``plan`` when the tenant is new) or an admin key
    (``admin: true`` and nothing else that scopes a customer key)."""

    model_config = _STRICT

    tenant: Name | None = Field(None, description="The customer; required unless admin.")
    plan: Name | None = Field(None, description="The tenant's plan, when the tenant is new.")
    models: list[Name] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Models the key may use; leave it out for all (an empty list is refused).",
    )
    actions: list[Literal["predict", "explain", "generate", "redact"]] | None = Field(
        None,
        min_length=1,
        description=f"Actions the key may take; leave it out for all ({', '.join(ACTIONS)}).",
    )
    admin: bool = False
    expires_in_days: float | None = Field(None, gt=0, le=MAX_KEY_LIFETIME.days)

    @model_validator(mode="after")
    def _customer_or_admin(self) -> Self:
        if self.admin and any(v is not None for v in (self.tenant, self.plan, self.models)):
            raise ValueError("an admin key has no tenant, plan or models")
        if self.admin and self.actions is not None:
            raise ValueError("an admin key has no actions")
        if not self.admin and self.tenant is None:
            raise ValueError("give a tenant for a customer key, or admin: true")
        return self


def create_key_schema(plans: list[str] | None = None) -> dict[str, Any]:
    """The JSON Schema of :class:`CreateKey`: a key is either a customer's (with a tenant) or an
    admin's; with ``plans``, the plan is one of them (shown to admins only: plan names are
    not for the public document)."""
    schema = CreateKey.model_json_schema()
    if plans is not None:
        plan: dict[str, Any] = {"enum": plans} if plans else {"not": {}}
        schema["properties"]["plan"] = {"anyOf": [plan, {"type": "null"}]}
    absent = {"type": "null"}
    schema["oneOf"] = [
        {
            "required": ["tenant"],
            "properties": {"tenant": {"type": "string"}, "admin": {"const": False}},
        },
        {
            "required": ["admin"],
            "properties": {
                "admin": {"const": True},
                "tenant": absent,
                "plan": absent,
                "models": absent,
                "actions": absent,
            },
        },
    ]
    return schema


class RotateKey(BaseModel):
    model_config = _STRICT

    overlap_hours: float = Field(
        24,
        ge=0,
        le=MAX_KEY_LIFETIME.days * 24,
        description="How long the old key keeps working beside the new one.",
    )


class UsageOut(BaseModel):
    day: date
    model: str
    action: str
    calls: int
    units: int


def _invoices_schema() -> dict[str, Any]:
    """The JSON Schema of ``invoices_json``, derived from the Invoice dataclass (inlined: an
    OpenAPI document resolves ``#/$defs`` against its own root)."""
    schema = TypeAdapter(Invoice).json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    invoice = inline(schema)
    invoice["properties"]["minor_unit_digits"] = {"type": "integer"}
    invoice["required"].append("minor_unit_digits")
    return {"type": "array", "items": invoice}


INVOICES_SCHEMA = _invoices_schema()


class AuditEventOut(BaseModel):
    """A row of the audit log, with what ``forgeline audit verify`` checks it by."""

    id: int
    time: AwareDatetime
    event: str
    actor: str = Field(description="cli, admin-key:<id>, key:<id> (refused) or anonymous")
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: AuditRecord) -> AuditEventOut:
        fields = dataclasses.asdict(row)
        fields["time"] = _utc(row.time)
        fields["details"] = row.details_dict()
        return cls(**fields)


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_before: int | None = Field(
        description="Pass as `before` for the next, older page; null on the last page."
    )
