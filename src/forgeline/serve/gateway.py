"""What stands between a customer and a model: key, scope, rate limit, quota, and the meter.

The route class (:mod:`forgeline.serve.routing`) admits the key with :meth:`Gateway.admit_key`
before the body is read: 401 for a bad key, 429 over the plan's rate limit. Each /v1 route then
asks for a :class:`Call` (a FastAPI dependency) for its model and action (403 outside the key's
scope) and answers through :meth:`Call.respond`. With ``serve.auth`` on the call is a
:class:`MeteredCall`, whose response is sent only once its usage record is committed; with auth
off an :class:`OpenCall` just runs. Routes never branch on which.

Failed authentications are throttled per client address, so guessing keys (each well-formed
guess costs a database lookup) is limited to a trickle.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from forgeline.billing.keys import Authenticator, AuthError, KeyStore, Principal, utcnow
from forgeline.billing.ledger import UsageLedger
from forgeline.billing.ratelimit import RateLimiter, RateLimiterUnavailable, rate_limiter
from forgeline.billing.records import (
    Idempotency,
    IdempotencyConflict,
    MeteringUnavailable,
    OverQuota,
    Recorded,
    StoredResponse,
    Usage,
)
from forgeline.config.service import BillingConfig, FailedAuthLimit, PlanConfig
from forgeline.db import Database
from forgeline.serve.errors import ApiError, unavailable
from forgeline.serve.openapi import IDEMPOTENCY_KEY_PATTERN

IDEMPOTENCY_HEADER = "Idempotency-Key"
ADMIN_RATE = PlanConfig(requests_per_second=20, burst=40)
"""Admin keys are rate-limited too: a leaked admin key must not become a free flood."""
_MAX_BLOCKED_ADDRESSES = 100_000


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

    def __init__(
        self,
        db: Database,
        billing: BillingConfig,
        redis_url: str | None = None,
        failed_auth: FailedAuthLimit | None = None,
    ) -> None:
        self.db = db
        self.billing = billing
        self.failed_auth = failed_auth or FailedAuthLimit()
        self.keys = KeyStore(db, billing.plans)
        self.auth = Authenticator(self.keys)
        self.limiter: RateLimiter = rate_limiter(redis_url)
        self.ledger = UsageLedger(
            db, timeout=billing.ledger.timeout_seconds, max_pending=billing.ledger.max_pending
        )
        # Client addresses refused for too many failed authentications, until a time: checked
        # before any lookup, so a blocked address costs neither the database nor Redis.
        self._blocked: dict[str, float] = {}

    def start(self) -> None:
        self.ledger.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.ledger.close)
        await self.limiter.close()

    async def authenticate(self, request: Request) -> Principal:
        address = request.client.host if request.client else "unknown"
        now = time.monotonic()
        blocked_until = self._blocked.get(address)
        if blocked_until is not None:
            if blocked_until > now:
                raise self._too_many_failures(blocked_until - now)
            del self._blocked[address]
        try:
            return await self.auth.authenticate(request.headers.get("authorization"))
        except SQLAlchemyError as exc:
            raise unavailable(
                request,
                "key_store_unavailable",
                "API keys cannot be checked; retry shortly",
                str(exc),
            ) from None
        except AuthError as exc:
            if exc.status == 401:
                await self._count_failure(request, address)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise ApiError(exc.status, exc.code, exc.message, headers) from None

    async def _count_failure(self, request: Request, address: str) -> None:
        limit = self.failed_auth
        decision = await self._acquire(
            request, f"auth-failures:{address}", limit.requests_per_second, limit.burst
        )
        if not decision:
            return
        if len(self._blocked) >= _MAX_BLOCKED_ADDRESSES:
            now = time.monotonic()
            self._blocked = {a: t for a, t in self._blocked.items() if t > now}
        self._blocked[address] = time.monotonic() + decision
        raise self._too_many_failures(decision)

    @staticmethod
    def _too_many_failures(wait: float) -> ApiError:
        return ApiError(
            429,
            "too_many_failed_attempts",
            "too many requests with a missing or invalid API key from this address; "
            f"retry after {wait:.0f} s",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )

    async def admit_key(self, request: Request) -> Principal:
        """The caller, if its key is valid and within its rate limit: 401, 403 or 429 if not.
        Called before the body is read."""
        principal = await self.authenticate(request)
        plan = ADMIN_RATE if principal.is_admin else self._plan(principal)
        wait = await self._acquire(
            request, principal.key_id, plan.requests_per_second, plan.bucket_size
        )
        if wait:
            what = "an admin key" if principal.is_admin else f"plan '{principal.plan}'"
            raise ApiError(
                429,
                "rate_limited",
                f"over the rate limit of {what} ({plan.requests_per_second:g} requests/s, "
                f"burst {plan.bucket_size}); retry after {wait:.2f} s",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return principal

    async def _acquire(self, request: Request, bucket: str, rate: float, burst: int) -> float:
        """Take a token from ``bucket``: 0 when allowed, else seconds until one is free."""
        try:
            decision = await self.limiter.acquire(bucket, rate, burst)
        except RateLimiterUnavailable as exc:
            raise unavailable(
                request,
                "rate_limiter_unavailable",
                "rate limiting is unavailable; retry shortly",
                str(exc),
            ) from None
        return 0.0 if decision.allowed else max(decision.retry_after, 1e-6)

    def admit(self, request: Request, model: str | None, action: str | None) -> MeteredCall:
        """The call of the admitted key (see :meth:`admit_key`) on ``model``, if its scope
        allows ``action`` there: 403 otherwise."""
        principal: Principal = request.state.principal
        try:
            if model is not None and action is not None:
                principal.check_allowed(model, action)
            else:
                principal.require_tenant()
        except AuthError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        return MeteredCall(
            self, principal, self._plan(principal), request, model or "", action or ""
        )

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
        assert self.principal.tenant_id is not None
        idempotency = self._idempotency(request)
        if idempotency is not None:
            try:
                stored = await asyncio.to_thread(
                    ledger.replay, self.principal.tenant_id, idempotency
                )
            except IdempotencyConflict as exc:
                raise ApiError(422, "idempotency_key_reused", str(exc)) from None
            except SQLAlchemyError as exc:
                raise unavailable(
                    self.request,
                    "metering_unavailable",
                    "the call cannot be metered; retry shortly",
                    str(exc),
                ) from None
            if stored is not None:
                return _replay(stored)
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
        except MeteringUnavailable as exc:
            raise unavailable(
                self.request,
                "metering_unavailable",
                "the call could not be recorded for billing, so it was not answered or "
                "billed; retry shortly",
                str(exc),
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
        if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
            raise ApiError(
                400,
                "invalid_idempotency_key",
                f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters",
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
