"""What stands between a customer and a model: key, scope, rate limit, quota, and the meter.

Each /v1 route asks for a :class:`Call` (a FastAPI dependency) and answers through
:meth:`Call.respond`. With ``serve.auth`` on, the call is a :class:`MeteredCall`: the key was
checked before the body was read, and the response is sent only once its usage record is
committed. With auth off, an :class:`OpenCall` just runs. Routes never branch on which.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from forgeline.billing.keys import Authenticator, AuthError, KeyStore, Principal, utcnow
from forgeline.billing.ledger import (
    Idempotency,
    IdempotencyConflict,
    MeteringUnavailable,
    OverQuota,
    Recorded,
    StoredResponse,
    Usage,
    UsageLedger,
)
from forgeline.billing.ratelimit import RateLimiter, RateLimiterUnavailable, rate_limiter
from forgeline.config.service import BillingConfig, PlanConfig
from forgeline.db import Database
from forgeline.serve.errors import ApiError

IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_IDEMPOTENCY_KEY = 255


class Call(Protocol):
    def may_use(self, model: str) -> bool: ...

    async def respond(
        self, run: Callable[[], Awaitable[BaseModel]], *, units: int, request: BaseModel
    ) -> Response: ...


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class OpenCall:
    """``serve.auth: false``: anyone may call, nothing is metered."""

    def may_use(self, model: str) -> bool:
        return True

    async def respond(
        self, run: Callable[[], Awaitable[BaseModel]], *, units: int, request: BaseModel
    ) -> Response:
        return _json((await run()).model_dump_json().encode())


class Gateway:
    """Keys, rate limits and the usage ledger of one server process."""

    def __init__(self, db: Database, billing: BillingConfig, redis_url: str | None = None) -> None:
        self.db = db
        self.billing = billing
        self.keys = KeyStore(db, billing.plans)
        self.auth = Authenticator(self.keys)
        self.limiter: RateLimiter = rate_limiter(redis_url)
        self.ledger = UsageLedger(db)

    def start(self) -> None:
        self.ledger.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.ledger.close)
        await self.limiter.close()

    async def authenticate(self, request: Request) -> Principal:
        try:
            return await self.auth.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise ApiError(exc.status, exc.code, exc.message, headers) from None

    async def admit(self, request: Request, model: str | None, action: str | None) -> MeteredCall:
        """The call, if its key may make it now: 401, 403 or 429 otherwise."""
        principal = await self.authenticate(request)
        try:
            if model is not None and action is not None:
                principal.check_allowed(model, action)
            else:
                principal.require_tenant()
        except AuthError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        plan = self._plan(principal)
        try:
            decision = await self.limiter.acquire(
                principal.key_id, plan.requests_per_second, plan.bucket_size
            )
        except RateLimiterUnavailable as exc:
            raise ApiError(
                503, "rate_limiter_unavailable", str(exc), {"Retry-After": "1"}
            ) from None
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise ApiError(
                429,
                "rate_limited",
                f"over the rate limit of plan '{principal.plan}' "
                f"({plan.requests_per_second:g} requests/s, burst {plan.bucket_size}); "
                f"retry after {decision.retry_after:.2f} s",
                {"Retry-After": str(wait)},
            )
        return MeteredCall(self, principal, plan, request, model or "", action or "")

    def _plan(self, principal: Principal) -> PlanConfig:
        plan = self.billing.plans.get(principal.plan or "")
        if plan is None:
            raise ApiError(
                403,
                "unknown_plan",
                f"tenant '{principal.tenant}' is on plan '{principal.plan}', which this server's "
                "forgeline.yaml does not define",
            )
        return plan


@dataclass
class MeteredCall:
    gateway: Gateway
    principal: Principal
    plan: PlanConfig
    request: Request
    model: str
    action: str

    def may_use(self, model: str) -> bool:
        return self.principal.may_use(model)

    async def respond(
        self, run: Callable[[], Awaitable[BaseModel]], *, units: int, request: BaseModel
    ) -> Response:
        ledger = self.gateway.ledger
        idempotency = self._idempotency(request)
        if idempotency is not None:
            try:
                stored = await asyncio.to_thread(ledger.replay, self.principal.key_id, idempotency)
            except IdempotencyConflict as exc:
                raise ApiError(422, "idempotency_key_reused", str(exc)) from None
            if stored is not None:
                return _replay(stored)
        assert self.principal.tenant_id is not None
        usage = Usage(
            request_id=self.request.state.request_id,
            key_id=self.principal.key_id,
            tenant_id=self.principal.tenant_id,
            model=self.model,
            action=self.action,
            units=units,
            at=utcnow(),
            cap=self.plan.included_units if self.plan.hard_cap else None,
        )
        refused = ledger.over_quota(usage)
        if refused is not None:
            raise self._over_quota(refused, units)
        body = (await run()).model_dump_json().encode()
        try:
            outcome = await ledger.record(
                usage, StoredResponse(200, body, usage.request_id), idempotency
            )
        except MeteringUnavailable:
            raise ApiError(
                503,
                "metering_unavailable",
                "the call could not be recorded for billing, so it was not answered or billed; "
                "retry shortly",
                {"Retry-After": "1"},
            ) from None
        except IdempotencyConflict as exc:
            raise ApiError(422, "idempotency_key_reused", str(exc)) from None
        if isinstance(outcome, OverQuota):
            raise self._over_quota(outcome, units)
        if isinstance(outcome, Recorded):
            headers = {}
            if usage.cap is not None and outcome.units_used is not None:
                headers["X-Quota-Remaining"] = str(max(0, usage.cap - outcome.units_used))
            return _json(body, headers=headers)
        return _replay(outcome.response)

    def _idempotency(self, request: BaseModel) -> Idempotency | None:
        key = self.request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return None
        if not key or len(key) > _MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise ApiError(
                400,
                "invalid_idempotency_key",
                f"{IDEMPOTENCY_HEADER} must be 1 to {_MAX_IDEMPOTENCY_KEY} printable characters",
            )
        canonical = json.dumps(
            [self.action, self.model, request.model_dump(mode="json")], sort_keys=True
        )
        return Idempotency(key, hashlib.sha256(canonical.encode()).hexdigest())

    def _over_quota(self, refused: OverQuota, units: int) -> ApiError:
        return ApiError(
            402,
            "quota_exceeded",
            f"monthly quota of plan '{self.principal.plan}' is {refused.cap} units; "
            f"{refused.used} are used and this call needs {units}",
            {"X-Quota-Remaining": str(max(0, refused.cap - refused.used))},
        )


def _replay(stored: StoredResponse) -> Response:
    return _json(
        stored.body,
        stored.status,
        {"X-Request-Id": stored.request_id, "Idempotent-Replayed": "true"},
    )
