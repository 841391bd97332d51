"""The admin HTTP API under /admin/v1: keys, usage, invoices and the audit log, as the CLI
offers them.

Every route needs an admin key: ``FORGELINE_ADMIN_KEY`` or one made by
``forgeline keys create --admin``; admin keys are rate-limited like any other. A request
refused for its key (401, 403) is written to the audit log, as is every change to a key, with
the admin key that made it (see :meth:`Gateway.audit_admin_refusal`). The request and
response shapes are in :mod:`forgeline.serve.admin_schemas`. Unknown keys and tenants are 404;
a request the stored state refuses (rotating a revoked key, a new tenant without a plan) is
409. Database work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from forgeline import audit
from forgeline.audit import AuditEvent, admin_actor
from forgeline.billing.invoices import build_invoices, invoices_csv, invoices_json
from forgeline.billing.keys import KeyConflict, UnknownKey, duration, utcnow
from forgeline.billing.usage import UnknownTenant, usage_report
from forgeline.errors import ForgelineError
from forgeline.serve.admin_schemas import (
    INVOICES_SCHEMA,
    AuditEventOut,
    AuditPage,
    CreateKey,
    KeyOut,
    Month,
    Name,
    NewKey,
    RotateKey,
    Since,
    UsageOut,
    create_key_schema,
)
from forgeline.serve.errors import ApiError
from forgeline.serve.gateway import Gateway
from forgeline.serve.routing import api_route


def admin_router(gateway: Gateway) -> APIRouter:
    body = create_key_schema()

    async def admin(request: Request) -> None:
        if not request.state.principal.is_admin:
            refused = ApiError(403, "not_admin", "this needs an admin key")
            await gateway.audit_admin_refusal(request, refused)
            raise refused

    def actor(request: Request) -> str:
        return admin_actor(request.state.principal.key_id)

    router = APIRouter(
        prefix="/admin/v1",
        tags=["admin"],
        route_class=api_route(gateway, refused=gateway.audit_admin_refusal),
        dependencies=[Depends(admin)],
        responses={
            401: {"description": "No API key, or an invalid one"},
            403: {"description": "Not an admin key"},
            429: {"description": "Over the admin rate limit, or too many failed keys"},
            503: {"description": "The database or rate limiter is unavailable (Retry-After)"},
        },
    )

    async def off_loop(work: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(work)
        except UnknownKey as exc:
            raise ApiError(404, "unknown_key", str(exc)) from None
        except UnknownTenant as exc:
            raise ApiError(404, "unknown_tenant", str(exc)) from None
        except KeyConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except ForgelineError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None

    @router.get("/keys", response_model=list[KeyOut], summary="List keys")
    async def list_keys(tenant: Annotated[Name | None, Query()] = None) -> list[KeyOut]:
        infos = await off_loop(lambda: gateway.keys.list(tenant))
        return [KeyOut.of(info) for info in infos]

    @router.post(
        "/keys",
        response_model=NewKey,
        status_code=201,
        summary="Create a key",
        responses={
            400: {"description": "The body is not valid JSON"},
            409: {"description": "A new tenant without a plan, or a tenant on another plan"},
        },
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": body}}}},
    )
    async def create_key(request: Request, body: CreateKey) -> NewKey:
        expires = utcnow() + duration(days=body.expires_in_days) if body.expires_in_days else None
        token, info = await off_loop(
            lambda: gateway.keys.create(
                tenant=body.tenant,
                plan=body.plan,
                models=body.models,
                actions=list(body.actions) if body.actions else None,
                admin=body.admin,
                expires_at=expires,
                actor=actor(request),
            )
        )
        return NewKey(key=token, info=KeyOut.of(info))

    @router.post(
        "/keys/{key_id}/revoke",
        response_model=KeyOut,
        summary="Revoke a key",
        responses={404: {"description": "No such key"}},
    )
    async def revoke_key(request: Request, key_id: str) -> KeyOut:
        info = await off_loop(lambda: gateway.keys.revoke(key_id, actor(request)))
        gateway.auth.forget(key_id)
        return KeyOut.of(info)

    @router.post(
        "/keys/{key_id}/rotate",
        response_model=NewKey,
        summary="Replace a key; the old one works for overlap_hours more",
        responses={
            400: {"description": "The body is not valid JSON"},
            404: {"description": "No such key"},
            409: {"description": "The key is revoked"},
        },
    )
    async def rotate_key(request: Request, key_id: str, body: RotateKey | None = None) -> NewKey:
        overlap = duration(hours=(body or RotateKey()).overlap_hours)
        token, info = await off_loop(lambda: gateway.keys.rotate(key_id, overlap, actor(request)))
        gateway.auth.forget(key_id)
        return NewKey(key=token, info=KeyOut.of(info))

    @router.get(
        "/usage",
        response_model=list[UsageOut],
        summary="Calls and units per day",
        responses={404: {"description": "No such tenant"}},
    )
    async def usage(
        tenant: Annotated[Name, Query()],
        month: Annotated[Month, Query(description="YYYY-MM")],
    ) -> list[UsageOut]:
        rows = await off_loop(lambda: usage_report(gateway.db, tenant, month))
        return [UsageOut(**dataclasses.asdict(row)) for row in rows]

    @router.get(
        "/invoices",
        summary="Invoices of a month, JSON or CSV",
        responses={
            200: {
                "content": {
                    "application/json": {"schema": INVOICES_SCHEMA},
                    "text/csv": {"schema": {"type": "string"}},
                }
            },
            404: {"description": "No such tenant"},
        },
    )
    async def invoices(
        month: Annotated[Month, Query(description="YYYY-MM")],
        tenant: Annotated[Name | None, Query()] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        found = await off_loop(lambda: build_invoices(gateway.db, gateway.billing, month, tenant))
        if format == "csv":
            return Response(invoices_csv(found), media_type="text/csv")
        return Response(invoices_json(found), media_type="application/json")

    @router.get(
        "/audit",
        response_model=AuditPage,
        summary="Security events of the audit log, newest first",
    )
    async def audit_log(
        since: Annotated[Since | None, Query(description="From this date or time (UTC) on")] = None,
        event: Annotated[AuditEvent | None, Query(description="Only this kind of event")] = None,
        before: Annotated[
            int | None, Query(ge=1, le=2**62, description="Only ids below this (next_before)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=audit.MAX_LIST)] = 100,
    ) -> AuditPage:
        def page() -> list[audit.AuditRecord]:
            with gateway.db.read() as session:
                # One more than asked: whether there is an older page.
                return audit.list_events(
                    session, since=since, event=event, before=before, limit=limit + 1
                )

        rows = await off_loop(page)
        shown = rows[:limit]
        more = len(rows) > limit
        return AuditPage(
            events=[AuditEventOut.of(row) for row in shown],
            next_before=shown[-1].id if more else None,
        )

    return router
