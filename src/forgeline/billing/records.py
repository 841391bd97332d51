"""What the usage ledger is given and what it answers: billable calls, the reservations of
generation calls, their stored responses, and the outcome of committing each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

IDEMPOTENCY_RETENTION = timedelta(hours=24)
"""How long a response stays replayable; a retry after that is a new call (as with Stripe)."""


@dataclass(frozen=True)
class Usage:
    """One billable call, as the ledger records it. A generation call's units are its tokens:
    ``input_tokens`` (the prompt) plus ``output_tokens`` (generated)."""

    request_id: str
    key_id: str
    tenant_id: int
    model: str
    action: str
    units: int
    at: datetime
    cap: int | None = None
    """The tenant's monthly unit cap (hard-capped plans), enforced at commit."""
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def period(self) -> str:
        return f"{self.at.year:04d}-{self.at.month:02d}"


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    request_id: str


@dataclass(frozen=True)
class Idempotency:
    """A client's ``Idempotency-Key`` and the hash of the request it was sent with. Keys are
    scoped to the tenant, so a retry sent with a rotated key still finds the first answer."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class Recorded:
    units_used: int | None
    """A capped tenant's units this month, this call included (None: not counted, no cap)."""


@dataclass(frozen=True)
class Replayed:
    """A request with this Idempotency-Key was answered already: send its response again."""

    response: StoredResponse


@dataclass(frozen=True)
class OverQuota:
    used: int
    cap: int


@dataclass(frozen=True)
class Reserved:
    """A generation call's tokens are held; its first byte may be sent."""

    units_used: int | None


@dataclass(frozen=True)
class Extended:
    """More generated tokens are held for the call."""


@dataclass(frozen=True)
class Settled:
    """The call's real usage is recorded and its reservation released."""

    units_used: int | None


@dataclass(frozen=True)
class AlreadySettled:
    """The reservation had run out (this process looked dead) and was billed as held."""


Outcome = Recorded | Replayed | OverQuota | Reserved | Extended | Settled | AlreadySettled


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different request."""


class IdempotencyInProgress(Exception):
    """A request with this Idempotency-Key is still running; retry when it has ended."""


class IdempotencyUnreadable(Exception):
    """The answer stored for this Idempotency-Key does not decrypt (its data key is gone, or
    the row was altered): it is neither replayed nor answered and billed again."""


class MeteringUnavailable(Exception):
    """The ledger could not commit; the call must not be answered (it would go unbilled)."""
