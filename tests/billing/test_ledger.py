from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from forgeline.billing.keys import utcnow
from forgeline.billing.ledger import UsageLedger
from forgeline.billing.records import (
    IDEMPOTENCY_RETENTION,
    Idempotency,
    IdempotencyConflict,
    IdempotencyUnreadable,
    MeteringUnavailable,
    OverQuota,
    Recorded,
    Replayed,
    StoredResponse,
    Usage,
)
from forgeline.db import Database
from forgeline.db.tables import IdempotentResponse, Tenant, UsageRecord
from forgeline.privacy.sealing import KeyRing

NOW = utcnow().replace(microsecond=0)


def _tenant(db: Database, name: str = "acme") -> int:
    with db.write() as session:
        row = Tenant(name=name, plan="free", created_at=NOW)
        session.add(row)
        session.flush()
        return row.id


def _usage(
    tenant_id: int,
    units: int = 1,
    cap: int | None = None,
    key_id: str = "k1",
    at: datetime = NOW,
) -> Usage:
    return Usage(uuid.uuid4().hex, key_id, tenant_id, "credit", "predict", units, at, cap)


def _response(usage: Usage) -> StoredResponse:
    return StoredResponse(200, b'{"ok": true}', usage.request_id)


def _ledger_rows(db: Database) -> list[UsageRecord]:
    with db.read() as session:
        return list(session.scalars(select(UsageRecord)))


def _run(db: Database, calls: Sequence[tuple[Usage, Idempotency | None]]) -> list[object]:
    return _run_responses(db, [(u, i, _response(u).body) for u, i in calls])


def _run_responses(
    db: Database, calls: Sequence[tuple[Usage, Idempotency | None, bytes]]
) -> list[object]:
    """Record the calls at once, each with its response body: their outcomes or errors."""
    ledger = UsageLedger(db)
    ledger.start()

    async def main() -> list[object]:
        return await asyncio.gather(
            *(ledger.record(u, StoredResponse(200, b, u.request_id), i) for u, i, b in calls),
            return_exceptions=True,
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
    assert {r.period for r in rows} == {NOW.strftime("%Y-%m")}  # the month of the calls
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
    stored = ledger.replay(tenant, key)
    assert stored is not None and stored.body == b'{"ok": true}'
    with pytest.raises(IdempotencyConflict, match="different request"):
        ledger.replay(tenant, Idempotency("order-17", "hash-b"))


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
    assert UsageLedger(db).replay(tenant, key) is None
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(UsageRecord)) == 0


def test_idempotent_responses_are_forgotten_after_the_retention(db: Database) -> None:
    tenant = _tenant(db)
    key = Idempotency("order-1", "h")
    _run(db, [(_usage(tenant), key)])
    ledger = UsageLedger(db)
    assert ledger.forget_idempotency_before(NOW) == 0  # made at NOW: kept
    assert ledger.replay(tenant, key) is not None
    assert ledger.forget_idempotency_before(NOW + timedelta(seconds=1)) == 1
    assert ledger.replay(tenant, key) is None
    assert len(_ledger_rows(db)) == 1  # the usage record stays


def _record_one(ledger: UsageLedger, usage: Usage, key: Idempotency | None = None) -> object:
    async def main() -> object:
        try:
            return await ledger.record(usage, _response(usage), key)
        except MeteringUnavailable as exc:
            return exc

    return asyncio.run(main())


def test_a_failed_commit_does_not_lock_a_capped_tenant_out(db: Database) -> None:
    """The counter row made in a rolled-back transaction is gone; the ledger must not go on
    believing it exists (it used to, and refused every later call of the tenant with 503)."""
    tenant = _tenant(db)
    ledger = UsageLedger(db)
    ledger.start()
    try:
        first = _usage(tenant, cap=10)
        assert isinstance(_record_one(ledger, first), Recorded)
        next_month = NOW.replace(day=1) + timedelta(days=32)
        # A request id already in the ledger makes this batch's insert fail after its counter
        # row for next month was made: the whole transaction rolls back.
        clash = Usage(first.request_id, "k1", tenant, "credit", "predict", 1, next_month, 10)
        assert isinstance(_record_one(ledger, clash), MeteringUnavailable)
        later = _usage(tenant, cap=10, at=next_month)
        assert _record_one(ledger, later) == Recorded(1)
    finally:
        ledger.close()


def test_counters_are_updated_in_one_order_whatever_the_batch_order(db: Database) -> None:
    """Two servers committing batches that touch the same tenants lock their counter rows in
    the same (tenant) order, so they cannot deadlock on PostgreSQL."""
    from sqlalchemy import Update, event

    first_tenant, second_tenant = _tenant(db, "first"), _tenant(db, "second")
    updated: list[int] = []

    def watch(_conn: object, statement: object, *_: object) -> None:
        if isinstance(statement, Update) and str(statement.table) == "usage_counters":
            params = statement.compile().params
            updated.append(next(v for k, v in params.items() if k.startswith("tenant_id")))

    event.listen(db.engine, "before_execute", watch)
    try:
        calls = [(_usage(second_tenant, cap=5), None), (_usage(first_tenant, cap=5), None)]
        _run(db, calls * 2)
    finally:
        event.remove(db.engine, "before_execute", watch)
    assert updated == sorted(updated) and set(updated) == {first_tenant, second_tenant}


def test_a_stored_response_past_retention_is_not_replayed(db: Database) -> None:
    """Retention holds when reading, not only once the sweeper ran: a retry days later is a new
    call, billed, and its answer is stored in place of the old one."""
    tenant = _tenant(db)
    key = Idempotency("order-9", "h")
    old = _usage(tenant, at=NOW - IDEMPOTENCY_RETENTION - timedelta(minutes=1))
    _run(db, [(old, key)])
    assert UsageLedger(db).replay(tenant, key) is None
    retry = _usage(tenant)
    [outcome] = _run(db, [(retry, key)])
    assert isinstance(outcome, Recorded)
    stored = UsageLedger(db).replay(tenant, key)
    assert stored is not None and stored.request_id == retry.request_id
    assert len(_ledger_rows(db)) == 2


def test_the_sweeper_runs_on_a_timer_without_calls(db: Database) -> None:
    tenant = _tenant(db)
    key = Idempotency("order-2", "h")
    _run(db, [(_usage(tenant, at=NOW - IDEMPOTENCY_RETENTION - timedelta(hours=1)), key)])
    ledger = UsageLedger(db)
    ledger.start()  # the first sweep is due at once; no call is ever recorded
    try:
        deadline = time.monotonic() + 10
        while _stored_count(db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _stored_count(db) == 0
    finally:
        ledger.close()


def _stored_count(db: Database) -> int:
    from forgeline.db.tables import IdempotentResponse

    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(IdempotentResponse)) or 0)


def test_idempotency_is_scoped_to_the_tenant_not_the_key(db: Database) -> None:
    """A retry sent with the rotated key during the overlap is replayed, not billed again; the
    same Idempotency-Key of another tenant is that tenant's own."""
    acme, other = _tenant(db, "acme"), _tenant(db, "other")
    key = Idempotency("order-5", "h")
    first = _usage(acme, key_id="oldkey")
    retry = _usage(acme, key_id="newkey")
    stranger = _usage(other, key_id="theirs")
    outcomes = _run(db, [(first, key)])
    outcomes += _run(db, [(retry, key), (stranger, key)])
    assert isinstance(outcomes[0], Recorded)
    assert isinstance(outcomes[1], Replayed) and outcomes[1].response.request_id == first.request_id
    assert isinstance(outcomes[2], Recorded)
    assert sorted(r.request_id for r in _ledger_rows(db)) == sorted(
        [first.request_id, stranger.request_id]
    )


def test_a_stalled_database_answers_within_the_deadline_and_bills_nothing_refused(
    db: Database,
) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's write lock makes a stall that is easy to hold and release")
    tenant = _tenant(db)
    ledger = UsageLedger(db, timeout=0.5, max_pending=2)
    ledger.start()
    committing, queued = _usage(tenant), [_usage(tenant), _usage(tenant)]
    blocker = db.engine.raw_connection()
    try:
        blocker.cursor().execute("BEGIN IMMEDIATE")  # holds the write lock: commits stall

        async def main() -> list[object]:
            first = asyncio.create_task(ledger.record(committing, _response(committing)))
            await asyncio.sleep(0.2)  # the writer has taken it and waits for the lock
            behind = [asyncio.create_task(ledger.record(u, _response(u))) for u in queued]
            await asyncio.sleep(0.05)
            extra = _usage(tenant)
            with pytest.raises(MeteringUnavailable, match="waiting to be recorded"):
                await ledger.record(extra, _response(extra))  # the queue's bound, at once
            return await asyncio.gather(first, *behind, return_exceptions=True)

        started = time.monotonic()
        outcomes = asyncio.run(main())
        assert time.monotonic() - started < 3
        assert all(isinstance(o, MeteringUnavailable) for o in outcomes)
    finally:
        blocker.rollback()
        blocker.close()
    ledger.close()
    # Every call answered 503 was taken back before COMMIT: none of them is billed, neither
    # the one whose statements were waiting for the lock nor those queued behind it.
    assert _ledger_rows(db) == []


def test_the_writer_survives_an_unexpected_error_and_restarts_if_it_dies(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import forgeline.billing.ledger as ledger_module
    from forgeline.billing.commit import apply_batch as real_apply

    tenant = _tenant(db)
    ledger = UsageLedger(db)
    ledger.start()
    failures = iter([ValueError("a bug")])

    def flaky(*args: object, **kwargs: object) -> object:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger_module, "apply_batch", flaky)
    try:
        assert isinstance(_record_one(ledger, _usage(tenant)), MeteringUnavailable)
        assert isinstance(_record_one(ledger, _usage(tenant)), Recorded)  # the writer lives on
        # Kill the writer thread outright, as an error outside any batch would.
        monkeypatch.setattr(ledger, "_serve_one_round", lambda: (_ for _ in ()).throw(SystemExit))
        ledger._queue.put(object())
        assert ledger._thread is not None
        ledger._thread.join(timeout=5)
        assert not ledger.health().ok
        monkeypatch.undo()
        assert isinstance(_record_one(ledger, _usage(tenant)), Recorded)
        assert ledger.restarts == 1 and ledger.health().ok
    finally:
        ledger.close()
    assert len(_ledger_rows(db)) == 2


def test_a_retry_in_the_same_batch_as_a_refused_call_is_refused_too(db: Database) -> None:
    """Two calls with one Idempotency-Key in one batch: the second follows the first's fate.
    When the first is over the cap, the second must not be 'replayed' a 200 nobody paid for."""
    tenant = _tenant(db)
    ledger = UsageLedger(db)
    ledger.start()
    try:
        assert isinstance(_record_one(ledger, _usage(tenant, units=10, cap=10)), Recorded)
        ledger._used.clear()  # as another server process, which has not seen that call
        key = Idempotency("retry-1", "h")
        first, twin = _usage(tenant, cap=10), _usage(tenant, cap=10)

        async def main() -> list[object]:
            return list(
                await asyncio.gather(
                    ledger.record(first, _response(first), key),
                    ledger.record(twin, _response(twin), key),
                    return_exceptions=True,
                )
            )

        outcomes = asyncio.run(main())
    finally:
        ledger.close()
    assert [type(o) for o in outcomes] == [OverQuota, OverQuota]
    assert sum(r.units for r in _ledger_rows(db)) == 10


def test_expired_responses_are_deleted_in_short_transactions(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import forgeline.billing.maintenance as maintenance

    monkeypatch.setattr(maintenance, "CHUNK", 3)
    from sqlalchemy import update

    from forgeline.db.tables import IdempotentResponse

    tenant = _tenant(db)
    _run(db, [(_usage(tenant), Idempotency(f"k{i}", "h")) for i in range(8)])
    with db.write() as session:
        session.execute(
            update(IdempotentResponse)
            .where(IdempotentResponse.idempotency_key != "k7")
            .values(created_at=NOW - IDEMPOTENCY_RETENTION - timedelta(hours=1))
        )
    assert UsageLedger(db).forget_idempotency_before(NOW - IDEMPOTENCY_RETENTION) == 7
    assert _stored_count(db) == 1


def _stored_bodies(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(IdempotentResponse.body)))


def test_stored_responses_are_sealed_and_replayed_in_the_clear(db: Database) -> None:
    """What is kept for replay is encrypted at rest: the reply (an applicant's data, a model's
    verdict on it) is not in the table, but a retry gets it back as it was."""
    tenant = _tenant(db)
    key = Idempotency("loan-17", "h")
    usage = _usage(tenant)
    body = b'{"name": "Maria Lopez", "decision": "decline"}'
    _run_responses(db, [(usage, key, body)])
    [stored] = _stored_bodies(db)
    assert stored.startswith("fl1:") and "Maria" not in stored and "decline" not in stored
    replayed = UsageLedger(db).replay(tenant, key)
    assert replayed is not None and replayed.body == body
    # A twin sent while the first is in the same batch or later is replayed the same way.
    [outcome] = _run_responses(db, [(_usage(tenant), key, b"{}")])
    assert isinstance(outcome, Replayed) and outcome.response.body == body


def test_a_sealed_reply_does_not_open_in_another_row_or_under_other_keys(db: Database) -> None:
    """A body copied into another tenant's row does not decrypt; nor does one sealed under a
    key the server no longer has. Neither is replayed nor billed again: the retry is told."""
    first, second = _tenant(db, "acme"), _tenant(db, "globex")
    key = Idempotency("order-1", "h")
    _run_responses(db, [(_usage(first), key, b'{"secret": 1}'), (_usage(second), key, b"{}")])
    with db.write() as session:
        sealed = session.scalar(
            select(IdempotentResponse.body).where(IdempotentResponse.tenant_id == first)
        )
        session.execute(
            update(IdempotentResponse)
            .where(IdempotentResponse.tenant_id == second)
            .values(body=sealed)
        )
    with pytest.raises(IdempotencyUnreadable, match="cannot be decrypted"):
        UsageLedger(db).replay(second, key)
    other_keys = Database(db.url, keys=KeyRing.from_secrets([("k9", "z" * 40)]))
    with pytest.raises(IdempotencyUnreadable, match="'ephemeral', which is not among"):
        UsageLedger(other_keys).replay(first, key)
    [retried] = _run_responses(other_keys, [(_usage(first), key, b"{}")])
    assert isinstance(retried, IdempotencyUnreadable)
    assert len(_ledger_rows(db)) == 2
    other_keys.dispose()


def test_a_reply_stored_before_sealing_is_still_replayed(db: Database) -> None:
    tenant = _tenant(db)
    key = Idempotency("legacy", "h")
    usage = _usage(tenant)
    with db.write() as session:
        session.add(
            IdempotentResponse(
                tenant_id=tenant,
                idempotency_key=key.key,
                key_id="k1",
                request_hash=key.request_hash,
                request_id=usage.request_id,
                status=200,
                body='{"old": true}',
                created_at=NOW,
            )
        )
    replayed = UsageLedger(db).replay(tenant, key)
    assert replayed is not None and replayed.body == b'{"old": true}'
