"""How a /v1 call is answered and billed: a :class:`MeteredCall` with ``serve.auth`` on, an
:class:`OpenCall` (nothing metered) with it off. Routes never branch on which.

* A prediction is run, its usage recorded, then its response sent (:meth:`Call.respond`).
* A generation call goes through a :class:`Meter`: ``start`` before the first byte (a hard-capped
  plan holds everything the call may use, so the cap cannot overshoot; a stream holds its
  tokens in a reservation), ``hold`` before a stream sends tokens beyond what is held, and
  ``finish`` with the real token counts, which become the call's record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from forgeline.billing.keys import Principal, utcnow
from forgeline.billing.ledger import UsageLedger
from forgeline.billing.records import (
    AlreadySettled,
    Idempotency,
    IdempotencyConflict,
    IdempotencyInProgress,
    IdempotencyUnreadable,
    MeteringUnavailable,
    Outcome,
    OverQuota,
    Recorded,
    Replayed,
    Reserved,
    Settled,
    StoredResponse,
    Usage,
)
from forgeline.config.service import PlanConfig
from forgeline.serve.errors import ApiError, unavailable
from forgeline.serve.openapi import IDEMPOTENCY_KEY_PATTERN

_T = TypeVar("_T")
IDEMPOTENCY_HEADER = "Idempotency-Key"
HOLD_BLOCK = 32
"""Generated tokens a stream holds at a time beyond what it has sent (plans without a cap):
one more commit every 32 tokens, and at most 31 tokens billed but not received if the server
dies mid-stream."""


class MeteringLost(Exception):
    """The call's reservation is gone (billed as held after its lease ran out): stop sending."""


class Meter(Protocol):
    """The metering of one generation call (see the module's docstring)."""

    async def start(self, prompt_tokens: int, max_output_tokens: int, *, streaming: bool) -> None:
        """Hold what the call needs before it sends anything; raises ApiError 402 or 503."""
        ...

    async def hold(self, output_tokens: int) -> None:
        """Make sure ``output_tokens`` generated tokens are held; raises :class:`MeteringLost`."""
        ...

    async def finish(
        self, prompt_tokens: int, output_tokens: int, body: bytes | None, *, delivered: bool
    ) -> dict[str, str]:
        """Record the call's usage (and ``body``, for replays; None: the client did not get a
        whole answer, so a retry is a new call). ``delivered``: the client has received the
        tokens already (a stream), so they are billed even if this cannot be committed now;
        otherwise (a whole reply, not sent yet) a failure here means the call is refused and
        billed nothing. Returns headers for the response."""
        ...


class Call(Protocol):
    def may_use(self, model: str) -> bool: ...

    async def respond(
        self, run: Callable[[], Awaitable[BaseModel]], *, units: int, request: BaseModel
    ) -> Response: ...

    async def replay(self, request: BaseModel) -> Response | None:
        """The stored answer to an earlier request with this call's Idempotency-Key."""
        ...

    def meter(self, request: BaseModel, units: int = 0) -> Meter:
        """The metering of a generation call; ``units``: billed besides its tokens (e.g. the
        search behind a knowledge base's answer)."""
        ...


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class _Unmetered:
    async def start(self, prompt_tokens: int, max_output_tokens: int, *, streaming: bool) -> None:
        return None

    async def hold(self, output_tokens: int) -> None:
        return None

    async def finish(
        self, prompt_tokens: int, output_tokens: int, body: bytes | None, *, delivered: bool
    ) -> dict[str, str]:
        return {}


class OpenCall:
    """``serve.auth: false``: anyone may call, nothing is metered."""

    def may_use(self, model: str) -> bool:
        return True

    async def respond(
        self, run: Callable[[], Awaitable[BaseModel]], *, units: int, request: BaseModel
    ) -> Response:
        return json_response((await run()).model_dump_json().encode())

    async def replay(self, request: BaseModel) -> Response | None:
        return None

    def meter(self, request: BaseModel, units: int = 0) -> Meter:
        return _Unmetered()


@dataclass
class MeteredCall:
    ledger: UsageLedger
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
        replayed = await self.replay(request)
        if replayed is not None:
            return replayed
        usage = self.usage(units)
        refused = self.ledger.over_quota(usage)
        if refused is not None:
            raise self.over_quota(refused, units)
        body = (await run()).model_dump_json().encode()
        outcome = await self.commit(
            self.ledger.record(
                usage, StoredResponse(200, body, usage.request_id), self.idempotency(request)
            ),
            units,
        )
        if isinstance(outcome, Replayed):
            return replay_response(outcome.response)
        return json_response(body, headers=self.quota_headers(usage, outcome))

    async def replay(self, request: BaseModel) -> Response | None:
        idempotency = self.idempotency(request)
        if idempotency is None:
            return None
        assert self.principal.tenant_id is not None
        stored = await self.commit(
            asyncio.to_thread(self.ledger.replay, self.principal.tenant_id, idempotency)
        )
        return None if stored is None else replay_response(stored)

    def meter(self, request: BaseModel, units: int = 0) -> Meter:
        return _GenerationMeter(self, self.idempotency(request), units)

    def usage(self, units: int, input_tokens: int = 0, output_tokens: int = 0) -> Usage:
        assert self.principal.tenant_id is not None
        return Usage(
            request_id=self.request.state.request_id,
            key_id=self.principal.key_id,
            tenant_id=self.principal.tenant_id,
            model=self.model,
            action=self.action,
            units=units,
            at=utcnow(),
            cap=self.plan.included_units if self.plan.hard_cap else None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    async def commit(self, work: Awaitable[_T], units: int = 0) -> _T:
        """``work`` on the ledger, its failures turned into the answers a client gets
        (``units``: what the call needs, for the message of a 402)."""
        try:
            outcome = await work
        except (MeteringUnavailable, SQLAlchemyError) as exc:
            raise unavailable(
                self.request,
                "metering_unavailable",
                "the call could not be recorded for billing, so it was not answered or "
                "billed; retry shortly",
                str(exc),
            ) from None
        except IdempotencyConflict as exc:
            raise ApiError(422, "idempotency_key_reused", str(exc)) from None
        except IdempotencyInProgress as exc:
            raise ApiError(409, "idempotency_key_in_use", str(exc), {"Retry-After": "1"}) from None
        except IdempotencyUnreadable as exc:
            raise ApiError(409, "idempotency_reply_unreadable", str(exc)) from None
        if isinstance(outcome, OverQuota):
            raise self.over_quota(outcome, units)
        return outcome

    def idempotency(self, request: BaseModel) -> Idempotency | None:
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

    def over_quota(self, refused: OverQuota, units: int) -> ApiError:
        needs = f" and this call needs {units}" if units else ""
        return ApiError(
            402,
            "quota_exceeded",
            f"monthly quota of plan '{self.principal.plan}' is {refused.cap} units; "
            f"{refused.used} are used{needs}",
            {"X-Quota-Remaining": str(max(0, refused.cap - refused.used))},
        )

    @staticmethod
    def quota_headers(usage: Usage, outcome: Outcome) -> dict[str, str]:
        used = getattr(outcome, "units_used", None)
        if usage.cap is None or used is None:
            return {}
        return {"X-Quota-Remaining": str(max(0, usage.cap - used))}


@dataclass
class _GenerationMeter:
    call: MeteredCall
    idempotency: Idempotency | None
    base_units: int
    """Billed besides the tokens."""
    reserved: bool = False
    held: int = 0
    max_output: int = 0
    started: Usage | None = field(default=None, repr=False)

    async def start(self, prompt_tokens: int, max_output_tokens: int, *, streaming: bool) -> None:
        call = self.call
        capped = call.plan.hard_cap
        self.max_output = max_output_tokens
        self.held = max_output_tokens if capped else min(HOLD_BLOCK, max_output_tokens)
        usage = call.usage(self.base_units + prompt_tokens + self.held, prompt_tokens, self.held)
        refused = call.ledger.over_quota(usage)
        if refused is not None:
            raise call.over_quota(refused, usage.units)
        self.started = usage
        if not (capped or streaming):
            return  # recorded once, when it ends, like a prediction
        outcome = await call.commit(call.ledger.reserve(usage, self.idempotency), usage.units)
        if isinstance(outcome, Replayed):  # a concurrent twin finished first
            raise ApiError(
                409, "idempotency_key_in_use", "this request was answered meanwhile; retry it"
            )
        assert isinstance(outcome, Reserved)
        self.reserved = True

    async def hold(self, output_tokens: int) -> None:
        if not self.reserved or output_tokens <= self.held:
            return
        wanted = min(self.max_output, output_tokens + HOLD_BLOCK - 1)
        outcome = await self.call.commit(
            self.call.ledger.extend(self.call.request.state.request_id, wanted)
        )
        if isinstance(outcome, AlreadySettled):
            raise MeteringLost("the call's reservation ran out and was billed as held")
        self.held = wanted

    async def finish(
        self, prompt_tokens: int, output_tokens: int, body: bytes | None, *, delivered: bool
    ) -> dict[str, str]:
        call = self.call
        units = self.base_units + prompt_tokens + output_tokens
        usage = call.usage(units, prompt_tokens, output_tokens)
        response = None if body is None else StoredResponse(200, body, usage.request_id)
        if self.reserved:
            outcome = await call.commit(
                call.ledger.settle(usage, response, self.idempotency, delivered=delivered)
            )
            assert isinstance(outcome, Settled | AlreadySettled)
        else:
            if response is None:
                response = StoredResponse(200, b"{}", usage.request_id)
            outcome = await call.commit(call.ledger.record(usage, response, self.idempotency))
            if isinstance(outcome, Replayed):
                raise AnsweredMeanwhile(outcome.response)
            assert isinstance(outcome, Recorded)
        return call.quota_headers(usage, outcome)


class AnsweredMeanwhile(Exception):
    """A twin request with the same Idempotency-Key was answered first: send its answer."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__("answered meanwhile")
        self.response = response


def replay_response(stored: StoredResponse) -> Response:
    return json_response(
        stored.body,
        stored.status,
        {"X-Request-Id": stored.request_id, "Idempotent-Replayed": "true"},
    )
