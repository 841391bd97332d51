from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from forgeline.billing.ledger import (
    Idempotency,
    IdempotencyConflict,
    OverQuota,
    Recorded,
    Replayed,
    StoredResponse,
    Usage,
    UsageLedger,
)
from forgeline.db import Database
from forgeline.db.tables import Tenant, UsageRecord

NOW = datetime(2026, 11, 25, 12, 0, 0)


def _tenant(db: Database, name: str = "acme") -> int:
    with db.write() as session:
        row = Tenant(name=name, plan="free", created_at=NOW)
        session.add(row)
        session.flush()
        return row.id


def _usage(tenant_id: int, units: int = 1, cap: int | None = None) -> Usage:
    return Usage(uuid.uuid4().hex, "k1", tenant_id, "credit", "predict", units, NOW, cap)


def _response(usage: Usage) -> StoredResponse:
    return StoredResponse(200, b'{"ok": true}', usage.request_id)


def _ledger_rows(db: Database) -> list[UsageRecord]:
    with db.read() as session:
        return list(session.scalars(select(UsageRecord)))


def _run(db: Database, calls: Sequence[tuple[Usage, Idempotency | None]]) -> list[object]:
    ledger = UsageLedger(db)
    ledger.start()

    async def main() -> list[object]:
        return await asyncio.gather(
            *(ledger.record(u, _response(u), i) for u, i in calls), return_exceptions=True
        )

    try:
        return asyncio.run(main())
    finally:
        ledger.close()


def test_concurrent_calls_are_committed_in_groups_one_row_each(db: Database) -> None:
    tenant = _tenant(db)
    calls = [(_usage(tenant, units=2), None) for _ in range(300)]
    ledger = UsageLedger(db)
    ledger.start()

    async def main() -> list[object]:
        return await asyncio.gather(*(ledger.record(u, _response(u), i) for u, i in calls))

    outcomes = asyncio.run(main())
    ledger.close()
    assert all(isinstance(o, Recorded) for o in outcomes)
    rows = _ledger_rows(db)
    assert sorted(r.request_id for r in rows) == sorted(u.request_id for u, _ in calls)
    assert {r.period for r in rows} == {"2026-11"}
    assert ledger.batches < 300  # grouped, not one commit per call
    assert sum(r.units for r in rows) == 600


def test_hard_cap_is_never_overshot_by_concurrent_calls(db: Database) -> None:
    tenant = _tenant(db)
    calls = [(_usage(tenant, units=3, cap=100), None) for _ in range(60)]
    outcomes = _run(db, calls)
    recorded = [o for o in outcomes if isinstance(o, Recorded)]
    refused = [o for o in outcomes if isinstance(o, OverQuota)]
    assert len(recorded) == 33 and len(refused) == 27  # 33 x 3 = 99 <= 100 < 102
    assert sum(r.units for r in _ledger_rows(db)) == 99
    assert all(o.cap == 100 and o.used == 99 for o in refused)


def test_a_retry_with_the_same_idempotency_key_is_replayed_and_billed_once(db: Database) -> None:
    tenant = _tenant(db)
    first, retry = _usage(tenant), _usage(tenant)
    key = Idempotency("order-17", "hash-a")
    outcomes = _run(db, [(first, key), (retry, key)])
    assert isinstance(outcomes[0], Recorded)
    assert isinstance(outcomes[1], Replayed), outcomes
    assert outcomes[1].response.request_id == first.request_id
    assert [r.request_id for r in _ledger_rows(db)] == [first.request_id]
    ledger = UsageLedger(db)
    stored = ledger.replay("k1", key)
    assert stored is not None and stored.body == b'{"ok": true}'
    with pytest.raises(IdempotencyConflict, match="different request"):
        ledger.replay("k1", Idempotency("order-17", "hash-b"))


def test_reusing_an_idempotency_key_for_another_request_fails_only_that_call(
    db: Database,
) -> None:
    tenant = _tenant(db)
    first, other, unrelated = _usage(tenant), _usage(tenant), _usage(tenant)
    outcomes = _run(
        db,
        [
            (first, Idempotency("k", "hash-a")),
            (other, Idempotency("k", "hash-b")),
            (unrelated, None),
        ],
    )
    assert isinstance(outcomes[0], Recorded)
    assert isinstance(outcomes[1], IdempotencyConflict)
    assert isinstance(outcomes[2], Recorded)
    assert len(_ledger_rows(db)) == 2


def test_a_call_refused_over_quota_leaves_no_idempotent_response(db: Database) -> None:
    tenant = _tenant(db)
    key = Idempotency("big", "h")
    outcomes = _run(db, [(_usage(tenant, units=5, cap=4), key)])
    assert isinstance(outcomes[0], OverQuota)
    assert UsageLedger(db).replay("k1", key) is None
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 0


def test_idempotent_responses_are_forgotten_after_the_retention(db: Database) -> None:
    tenant = _tenant(db)
    key = Idempotency("order-1", "h")
    _run(db, [(_usage(tenant), key)])
    ledger = UsageLedger(db)
    assert ledger.forget_idempotency_before(NOW) == 0  # made at NOW: kept
    assert ledger.replay("k1", key) is not None
    assert ledger.forget_idempotency_before(NOW + timedelta(seconds=1)) == 1
    assert ledger.replay("k1", key) is None
    assert len(_ledger_rows(db)) == 1  # the usage record stays
