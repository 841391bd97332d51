"""What stands between a customer and a model: key, scope and rate limit.

The route class (:mod:`forgeline.serve.routing`) admits the key with :meth:`Gateway.admit_key`
before the body is read: 401 for a bad key, 429 over the plan's rate limit. Each /v1 route then
asks for its call (:meth:`Gateway.admit`, 403 outside the key's scope), which meters it (see
:mod:`forgeline.serve.metering`).

Failed authentications are throttled per client address (IPv6 by /64 network), so guessing
keys (each well-formed guess costs a database lookup) is limited to a trickle. A throttled
address is refused only keys this server has not seen exist: valid keys behind a shared address
(a proxy, a NAT) keep working.

Requests the admin API refuses (401, 403) are written to the audit log
(:meth:`Gateway.audit_admin_refusal`), under two throttles so that a flood of them cannot become
a flood of database writes: the failed-auth throttle above (a throttled address gets its 429
before anything is written), and a bucket shared by all addresses (:data:`AUDITED_REFUSALS`),
beyond which refusals are only counted, in the next row written.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError

from forgeline import audit
from forgeline.audit import ANONYMOUS_ACTOR, AuditEvent, key_actor
from forgeline.billing.auth import Authenticator, presented_key_id
from forgeline.billing.keys import AuthError, KeyStore, Principal
from forgeline.billing.ledger import UsageLedger
from forgeline.billing.ratelimit import RateLimiter, RateLimiterUnavailable, rate_limiter
from forgeline.config.service import BillingConfig, FailedAuthLimit, PlanConfig
from forgeline.db import Database
from forgeline.serve.errors import ApiError, request_id, unavailable
from forgeline.serve.metering import MeteredCall

ADMIN_RATE = PlanConfig(requests_per_second=20, burst=40)
"""Admin keys are rate-limited too: a leaked admin key must not become a free flood."""
AUDITED_REFUSALS = PlanConfig(requests_per_second=1, burst=30)
"""Refused admin requests written to the audit log, at most, from all addresses together (per
server, or per Redis shared by servers); more are counted in the next row written."""
_MAX_BLOCKED_ADDRESSES = 100_000
log = logging.getLogger("forgeline.serve")


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
            db,
            timeout=billing.ledger.timeout_seconds,
            max_pending=billing.ledger.max_pending,
            lease=billing.ledger.lease_seconds,
        )
        # Client addresses refused for too many failed authentications, until a time: checked
        # before any lookup, so a blocked address costs neither the database nor Redis.
        self._blocked: dict[str, float] = {}
        self._prune_blocked_at = _MAX_BLOCKED_ADDRESSES
        self._unrecorded_refusals = 0

    def start(self) -> None:
        self.ledger.start()

    async def close(self) -> None:
        await asyncio.to_thread(self.ledger.close)
        await self.limiter.close()

    async def authenticate(self, request: Request) -> Principal:
        address = _client_network(request)
        authorization = request.headers.get("authorization")
        now = time.monotonic()
        blocked_until = self._blocked.get(address)
        if blocked_until is not None:
            if blocked_until <= now:
                del self._blocked[address]
            elif not self.auth.knows(authorization):
                raise self._too_many_failures(blocked_until - now)
        try:
            return await self.auth.authenticate(authorization)
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
        if len(self._blocked) >= self._prune_blocked_at:
            # Amortised: the next pruning waits until the map has doubled again.
            now = time.monotonic()
            self._blocked = {a: t for a, t in self._blocked.items() if t > now}
            self._prune_blocked_at = max(_MAX_BLOCKED_ADDRESSES, 2 * len(self._blocked))
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

    async def audit_admin_refusal(self, request: Request, error: ApiError) -> None:
        """Write a refused admin request to the audit log: the id of the key sent (if it was a
        Forgeline key; never its secret), the route (its template, not the path sent) and the
        reason. A failure to write is logged; the client still gets its 401 or 403."""
        limit = AUDITED_REFUSALS
        if await self._acquire(
            request, "audit:admin-refusals", limit.requests_per_second, limit.bucket_size
        ):
            self._unrecorded_refusals += 1
            return
        unrecorded, self._unrecorded_refusals = self._unrecorded_refusals, 0
        key_id = presented_key_id(request.headers.get("authorization"))
        actor = key_actor(key_id) if key_id is not None else ANONYMOUS_ACTOR
        route = getattr(request.scope.get("route"), "path", "/admin/v1")
        details: dict[str, audit.DetailValue] = {"reason": error.code, "status": error.status}
        if unrecorded:
            details["unrecorded_before"] = unrecorded
        subject = f"{request.method} {route}"[:128]
        try:
            await asyncio.to_thread(self._record_refusal, actor, subject, details)
        except SQLAlchemyError as exc:
            log.error(
                "request %s: the audit log did not take a refused admin request: %s",
                request_id(request),
                exc,
            )

    def _record_refusal(
        self, actor: str, subject: str, details: dict[str, audit.DetailValue]
    ) -> None:
        with self.db.write() as session:
            audit.record(session, AuditEvent.ADMIN_AUTH_FAILED, actor, subject, details)

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
            if action is not None:
                principal.check_allowed(model, action)
            else:
                principal.require_tenant()
        except AuthError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        return MeteredCall(
            self.ledger, principal, self._plan(principal), request, model or "", action or ""
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


def _client_network(request: Request) -> str:
    """Who failed to authenticate: the client's address, or its /64 network for IPv6 (one
    subscriber gets a whole /64, so single IPv6 addresses would not limit anyone). Behind a
    proxy this is the proxy, unless uvicorn trusts it (``--forwarded-allow-ips``)."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host
