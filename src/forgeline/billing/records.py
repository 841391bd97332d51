"""What the usage ledger is given and what it answers: one billable call, its stored response,
and the outcome of committing it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

IDEMPOTENCY_RETENTION = timedelta(hours=24)
"""How long a response stays replayable; a retry after that is a new call (as with Stripe)."""


@dataclass(frozen=True)
class Usage:
    """One billable call, as the ledger records it."""

    request_id: str
    key_id: str
    tenant_id: int
    model: str
    action: str
    units: int
    at: datetime
    cap: int | None = None
    """The tenant's monthly unit cap (hard-capped plans), enforced at commit."""

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


Outcome = Recorded | Replayed | OverQuota


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different request."""


class MeteringUnavailable(Exception):
    """The ledger could not commit; the call must not be answered (it would go unbilled)."""
