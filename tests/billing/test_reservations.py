"""Reservations of generation calls: held before the first byte, settled with the real token
counts, renewed while running, and billed as held when their process died."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from forgeline.billing.keys import utcnow
from forgeline.billing.ledger import UsageLedger
from forgeline.billing.records import (
    AlreadySettled,
    Extended,
    Idempotency,
    IdempotencyInProgress,
    OverQuota,
    Replayed,
    Reserved,
    Settled,
    StoredResponse,
    Usage,
)
from forgeline.db import Database
from forgeline.db.tables import (
    IdempotentResponse,
    Tenant,
    UsageCounter,
    UsageRecord,
    UsageReservation,
)


def _tenant(db: Database) -> int:
    with db.write() as session:
        row = Tenant(name=f"t{uuid.uuid4().hex[:8]}", plan="pro", created_at=utcnow())
        session.add(row)
        session.flush()
        return row.id


def _usage(
    tenant: int,
    prompt: int,
    output: int,
    cap: int | None = None,
    request_id: str | None = None,
    other: int = 0,
) -> Usage:
    return Usage(
        request_id or uuid.uuid4().hex,
        "k1",
        tenant,
        "assistant",
        "generate",
        other + prompt + output,
        utcnow(),
        cap,
        prompt,
        output,
    )


def _run(ledger: UsageLedger, work: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await work

    return asyncio.run(main())


@pytest.fixture
def ledger(db: Database) -> Iterator[UsageLedger]:
    started = UsageLedger(db, lease=60)
    started.start()
    yield started
    started.close()


def _records(db: Database) -> list[UsageRecord]:
    with db.read() as session:
        return list(session.scalars(select(UsageRecord)))


def _counter(db: Database, tenant: int) -> int:
    with db.read() as session:
        return int(
            session.scalar(select(UsageCounter.units).where(UsageCounter.tenant_id == tenant)) or 0
        )


def test_a_settled_call_is_billed_its_real_tokens_and_releases_the_rest(
    db: Database, ledger: UsageLedger
) -> None:
    tenant = _tenant(db)
    held = _usage(tenant, prompt=20, output=100, cap=500)
    assert _run(ledger, ledger.reserve(held)) == Reserved(120)
    assert _counter(db, tenant) == 120
    real = _usage(tenant, prompt=20, output=37, cap=500, request_id=held.request_id)
    assert _run(ledger, ledger.settle(real, delivered=True)) == Settled(57)
    [record] = _records(db)
    assert (record.units, record.input_tokens, record.output_tokens) == (57, 20, 37)
    assert _counter(db, tenant) == 57
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(UsageReservation)) == 0


def test_concurrent_reservations_never_overshoot_a_cap(db: Database, ledger: UsageLedger) -> None:
    tenant = _tenant(db)
    calls = [_usage(tenant, prompt=10, output=40, cap=230) for _ in range(10)]

    async def main() -> list[object]:
        return list(await asyncio.gather(*(ledger.reserve(u) for u in calls)))

    outcomes = asyncio.run(main())
    assert sum(isinstance(o, Reserved) for o in outcomes) == 4  # 4 x 50 = 200 <= 230 < 250
    assert all(isinstance(o, Reserved | OverQuota) for o in outcomes)
    assert _counter(db, tenant) == 200


def test_a_stream_holds_more_as_it_goes(db: Database, ledger: UsageLedger) -> None:
    tenant = _tenant(db)
    held = _usage(tenant, prompt=5, output=32)
    assert _run(ledger, ledger.reserve(held)) == Reserved(None)
    assert _run(ledger, ledger.extend(held.request_id, 64)) == Extended()
    with db.read() as session:
        assert session.scalar(select(UsageReservation.output_tokens)) == 64
    real = _usage(tenant, prompt=5, output=50, request_id=held.request_id)
    assert _run(ledger, ledger.settle(real, delivered=True)) == Settled(None)
    assert [r.output_tokens for r in _records(db)] == [50]


def test_a_dead_process_calls_are_billed_as_held_once_their_lease_ran_out(
    db: Database, ledger: UsageLedger
) -> None:
    tenant = _tenant(db)
    key = Idempotency("chat-1", "h")
    held = _usage(tenant, prompt=8, output=32)
    assert _run(ledger, ledger.reserve(held, key)) == Reserved(None)
    with pytest.raises(IdempotencyInProgress):  # a retry while it runs
        _run(ledger, ledger.reserve(_usage(tenant, prompt=8, output=32), key))
    # The process died: nothing renews the lease, which runs out.
    ledger._held.clear()
    with db.write() as session:
        session.execute(
            update(UsageReservation).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    other = UsageLedger(db, lease=60)
    other._lease_work()  # another server's housekeeping
    [record] = _records(db)
    assert (record.request_id, record.input_tokens, record.output_tokens) == (
        held.request_id,
        8,
        32,
    )
    with db.read() as session:  # the running claim is released: a retry is a new call
        assert session.scalar(select(func.count()).select_from(IdempotentResponse)) == 0
    # The original process comes back to settle: it was billed already, once.
    real = _usage(tenant, prompt=8, output=10, request_id=held.request_id)
    assert _run(ledger, ledger.settle(real, delivered=True)) == AlreadySettled()
    assert len(_records(db)) == 1


def test_a_dead_process_call_is_billed_its_units_besides_tokens_too(
    db: Database, ledger: UsageLedger
) -> None:
    # A knowledge base's generated answer: one unit for its search on top of its tokens.
    tenant = _tenant(db)
    held = _usage(tenant, prompt=8, output=32, other=1)
    assert _run(ledger, ledger.reserve(held)) == Reserved(None)
    ledger._held.clear()
    with db.write() as session:
        session.execute(
            update(UsageReservation).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    UsageLedger(db, lease=60)._lease_work()
    [record] = _records(db)
    assert (record.units, record.input_tokens, record.output_tokens) == (41, 8, 32)


def test_running_calls_keep_their_lease(db: Database, ledger: UsageLedger) -> None:
    tenant = _tenant(db)
    held = _usage(tenant, prompt=8, output=32)
    _run(ledger, ledger.reserve(held))
    with db.write() as session:
        session.execute(
            update(UsageReservation).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    ledger._lease_work()  # renews its own call first; bills nothing
    assert _records(db) == []
    with db.read() as session:
        renewed = session.scalar(select(UsageReservation.lease_until))
    assert renewed is not None and renewed > utcnow()


def test_a_finished_generation_is_replayed_to_its_retry(db: Database, ledger: UsageLedger) -> None:
    tenant = _tenant(db)
    key = Idempotency("chat-2", "h")
    held = _usage(tenant, prompt=8, output=32)
    _run(ledger, ledger.reserve(held, key))
    real = _usage(tenant, prompt=8, output=12, request_id=held.request_id)
    body = StoredResponse(200, b'{"choices": []}', held.request_id)
    assert _run(ledger, ledger.settle(real, body, key, delivered=True)) == Settled(None)
    retry = _run(ledger, ledger.reserve(_usage(tenant, prompt=8, output=32), key))
    assert retry == Replayed(body)
    assert len(_records(db)) == 1
