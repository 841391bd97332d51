"""The admin HTTP API under /admin/v1: keys, usage and invoices, as the CLI offers them.

Every route needs an admin key: ``FORGELINE_ADMIN_KEY`` or one made by
``forgeline keys create --admin``. Database work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from forgeline.billing.invoices import build_invoices, invoices_csv, invoices_json
from forgeline.billing.keys import ACTIONS, KeyInfo, Principal, UnknownKey, utcnow
from forgeline.billing.usage import parse_month, usage_report
from forgeline.errors import ForgelineError
from forgeline.serve.errors import ApiError
from forgeline.serve.gateway import Gateway


class KeyOut(BaseModel):
    id: str
    tenant: str | None
    plan: str | None
    models: list[str]
    actions: list[str]
    is_admin: bool
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaces: str | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        return cls(**dataclasses.asdict(info), status=info.status(utcnow()))


class NewKey(BaseModel):
    key: str = Field(description="The API key. Shown only here: it is not stored.")
    info: KeyOut


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(None, description="The customer; required unless admin.")
    plan: str | None = Field(None, description="The tenant's plan, when the tenant is new.")
    models: list[str] | None = Field(None, description="Models the key may use (default: all).")
    actions: list[Literal["predict", "explain", "generate"]] | None = Field(
        None, description=f"Actions the key may take (default: {', '.join(ACTIONS)})."
    )
    admin: bool = False
    expires_in_days: float | None = Field(None, gt=0)


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: float = Field(
        24, ge=0, description="How long the old key keeps working beside the new one."
    )


class UsageOut(BaseModel):
    day: date
    model: str
    action: str
    calls: int
    units: int


def admin_router(gateway: Gateway) -> APIRouter:
    async def admin(request: Request) -> Principal:
        principal = await gateway.authenticate(request)
        if not principal.is_admin:
            raise ApiError(403, "not_admin", "this needs an admin key")
        return principal

    router = APIRouter(
        prefix="/admin/v1",
        tags=["admin"],
        dependencies=[Depends(admin)],
        responses={
            401: {"description": "No API key, or an invalid one"},
            403: {"description": "Not an admin key"},
        },
    )

    async def off_loop(work: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(work)
        except UnknownKey as exc:
            raise ApiError(404, "unknown_key", str(exc)) from None
        except ForgelineError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None

    @router.get("/keys", response_model=list[KeyOut], summary="List keys")
    async def list_keys(tenant: str | None = None) -> list[KeyOut]:
        infos = await off_loop(lambda: gateway.keys.list(tenant))
        return [KeyOut.of(info) for info in infos]

    @router.post("/keys", response_model=NewKey, status_code=201, summary="Create a key")
    async def create_key(body: CreateKey) -> NewKey:
        expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
        token, info = await off_loop(
            lambda: gateway.keys.create(
                tenant=body.tenant,
                plan=body.plan,
                models=body.models,
                actions=list(body.actions) if body.actions else None,
                admin=body.admin,
                expires_at=expires,
            )
        )
        return NewKey(key=token, info=KeyOut.of(info))

    @router.post("/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke a key")
    async def revoke_key(key_id: str) -> KeyOut:
        info = await off_loop(lambda: gateway.keys.revoke(key_id))
        gateway.auth.forget(key_id)
        return KeyOut.of(info)

    @router.post(
        "/keys/{key_id}/rotate",
        response_model=NewKey,
        summary="Replace a key; the old one works for overlap_hours more",
    )
    async def rotate_key(key_id: str, body: RotateKey | None = None) -> NewKey:
        overlap = timedelta(hours=(body or RotateKey()).overlap_hours)
        token, info = await off_loop(lambda: gateway.keys.rotate(key_id, overlap))
        gateway.auth.forget(key_id)
        return NewKey(key=token, info=KeyOut.of(info))

    @router.get("/usage", response_model=list[UsageOut], summary="Calls and units per day")
    async def usage(
        tenant: str, month: str = Query(description="YYYY-MM", examples=["2026-11"])
    ) -> list[UsageOut]:
        rows = await off_loop(lambda: usage_report(gateway.db, tenant, parse_month(month)))
        return [UsageOut(**dataclasses.asdict(row)) for row in rows]

    @router.get(
        "/invoices",
        summary="Invoices of a month, JSON or CSV",
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    )
    async def invoices(
        month: str = Query(description="YYYY-MM", examples=["2026-11"]),
        tenant: str | None = None,
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        found = await off_loop(
            lambda: build_invoices(gateway.db, gateway.billing, parse_month(month), tenant)
        )
        if format == "csv":
            return Response(invoices_csv(found), media_type="text/csv")
        return Response(invoices_json(found), media_type="application/json")

    return router
