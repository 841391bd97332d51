"""What one group commit of the usage ledger writes, inside one open transaction.

Statements run in a fixed global order so that two server processes committing batches at the
same time on PostgreSQL can never deadlock: first every Idempotency-Key claim, sorted by
(tenant, key); then every hard-capped tenant's monthly counter, sorted by (tenant, month); then
the records. Each transaction takes its row locks in that one order, so no two can wait on each
other in a cycle. (SQLite serialises whole write transactions, so it cannot deadlock at all.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from forgeline.billing.records import (
    IDEMPOTENCY_RETENTION,
    Idempotency,
    IdempotencyConflict,
    Outcome,
    OverQuota,
    Recorded,
    Replayed,
    StoredResponse,
    Usage,
)
from forgeline.db.tables import IdempotentResponse, UsageCounter, UsageRecord


@dataclass(frozen=True)
class Call:
    """One call of a batch: its usage, its response and its Idempotency-Key, if any."""

    usage: Usage
    response: StoredResponse
    idempotency: Idempotency | None


@dataclass(frozen=True)
class BatchResult:
    outcomes: list[Outcome | Exception]
    """One per call, in the batch's order; an exception fails only its own call."""
    counters: set[tuple[int, str]]
    """The (tenant, month) counter rows this transaction made sure exist."""


def apply_batch(
    connection: Connection, calls: list[Call], known_counters: set[tuple[int, str]]
) -> BatchResult:
    """Write ``calls`` in the open transaction. ``known_counters`` are counter rows committed
    earlier; the caller adds :attr:`BatchResult.counters` to them only once this commits."""
    outcomes: dict[int, Outcome | Exception] = {}
    claimed = sorted(
        (i for i, call in enumerate(calls) if call.idempotency is not None),
        key=lambda i: (calls[i].usage.tenant_id, _key(calls[i])),
    )
    for i in claimed:
        earlier = _claim_idempotency_key(connection, calls[i])
        if earlier is not None:
            outcomes[i] = earlier
    capped = sorted(
        (i for i, call in enumerate(calls) if i not in outcomes and call.usage.cap is not None),
        key=lambda i: (calls[i].usage.tenant_id, calls[i].usage.period),  # stable: arrival order
    )
    counters: set[tuple[int, str]] = set()
    for i in capped:
        usage = calls[i].usage
        row = (usage.tenant_id, usage.period)
        if row not in known_counters and row not in counters:
            _ensure_counter(connection, *row)
            counters.add(row)
        outcome = _within_cap(connection, usage)
        if isinstance(outcome, OverQuota) and calls[i].idempotency is not None:
            _release_idempotency_key(connection, calls[i])
        outcomes[i] = outcome
    records = [
        _record(call.usage)
        for i, call in enumerate(calls)
        if isinstance(outcomes.setdefault(i, Recorded(None)), Recorded)
    ]
    if records:
        connection.execute(_INSERT_RECORDS, records)
    return BatchResult([outcomes[i] for i in range(len(calls))], counters)


def stored_response(
    connection: Connection, tenant_id: int, idempotency: Idempotency, now: datetime
) -> StoredResponse | None:
    """The response stored for this tenant's Idempotency-Key, unless it is past retention
    (then the retry is a new call, whether or not the sweeper has deleted the row yet)."""
    row = connection.execute(
        select(
            IdempotentResponse.request_hash,
            IdempotentResponse.status,
            IdempotentResponse.body,
            IdempotentResponse.request_id,
        ).where(
            _idempotency_row(tenant_id, idempotency.key)
            & (IdempotentResponse.created_at > now - IDEMPOTENCY_RETENTION)
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key '{idempotency.key}' was used for a different request"
        )
    return StoredResponse(row.status, row.body.encode(), row.request_id)


def _key(call: Call) -> str:
    assert call.idempotency is not None
    return call.idempotency.key


def _record(usage: Usage) -> dict[str, Any]:
    return {
        "request_id": usage.request_id,
        "key_id": usage.key_id,
        "tenant_id": usage.tenant_id,
        "model": usage.model,
        "action": usage.action,
        "units": usage.units,
        "created_at": usage.at,
        "period": usage.period,
        "day": usage.at.date(),
    }


_INSERT_RECORDS = insert(cast(Table, UsageRecord.__table__))
"""Built once: a statement made per batch would have its cache key computed every time."""


def _counter(tenant_id: int, period: str) -> ColumnElement[bool]:
    return (UsageCounter.tenant_id == tenant_id) & (UsageCounter.period == period)


def _ensure_counter(connection: Connection, tenant_id: int, period: str) -> None:
    _insert(connection, UsageCounter, tenant_id=tenant_id, period=period, units=0).first()


def _within_cap(connection: Connection, usage: Usage) -> Recorded | OverQuota:
    """Count the call against a hard cap if it fits. The conditional update is atomic, and the
    database serialises it across processes: concurrent calls cannot overshoot the cap."""
    assert usage.cap is not None
    used = connection.execute(
        update(UsageCounter)
        .where(
            _counter(usage.tenant_id, usage.period)
            & (UsageCounter.units + usage.units <= usage.cap)
        )
        .values(units=UsageCounter.units + usage.units)
        .returning(UsageCounter.units)
    ).scalar()
    if used is not None:
        return Recorded(int(used))
    current = connection.execute(
        select(UsageCounter.units).where(_counter(usage.tenant_id, usage.period))
    ).scalar()
    if current is None:
        # The row is gone although it was known to exist (deleted by hand, or a stale cache):
        # make it again rather than refuse every call of this tenant from now on.
        _ensure_counter(connection, usage.tenant_id, usage.period)
        return _within_cap(connection, usage)
    return OverQuota(int(current), usage.cap)


def _claim_idempotency_key(connection: Connection, call: Call) -> Replayed | Exception | None:
    """Store this call's response under its Idempotency-Key, or, when an earlier request holds
    the key, what the call is to answer instead. A row past retention is taken over."""
    usage, idempotency = call.usage, call.idempotency
    assert idempotency is not None
    values = {
        "tenant_id": usage.tenant_id,
        "idempotency_key": idempotency.key,
        "key_id": usage.key_id,
        "request_hash": idempotency.request_hash,
        "request_id": usage.request_id,
        "status": call.response.status,
        "body": call.response.body.decode(),
        "created_at": usage.at,
    }
    expired = IdempotentResponse.created_at <= usage.at - IDEMPOTENCY_RETENTION
    claimed = _insert(connection, IdempotentResponse, overwrite_where=expired, **values).first()
    if claimed is not None:
        return None
    try:
        earlier = stored_response(connection, usage.tenant_id, idempotency, usage.at)
    except IdempotencyConflict as exc:
        return exc  # returned, not raised: it fails this call, not the whole batch
    assert earlier is not None
    return Replayed(earlier)


def _idempotency_row(tenant_id: int, key: str) -> ColumnElement[bool]:
    return (IdempotentResponse.tenant_id == tenant_id) & (IdempotentResponse.idempotency_key == key)


def _release_idempotency_key(connection: Connection, call: Call) -> None:
    """A refused call is not a response to replay: let a retry try again."""
    connection.execute(
        delete(IdempotentResponse).where(_idempotency_row(call.usage.tenant_id, _key(call)))
    )


def _insert(
    connection: Connection,
    table: type[IdempotentResponse] | type[UsageCounter],
    overwrite_where: ColumnElement[bool] | None = None,
    **values: Any,
) -> Any:
    """Insert a row unless its key exists (then overwrite it where ``overwrite_where`` holds);
    the result has a row when the row was written. A plain INSERT that fails would abort the
    whole PostgreSQL transaction. RETURNING tells reliably whether the row went in; rowcount
    after ON CONFLICT does not (psycopg reports 1 for a skipped row)."""
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    core_table = cast(Table, table.__table__)
    statement = dialect_insert(core_table).values(**values)
    keys = list(core_table.primary_key.columns)
    if overwrite_where is None:
        statement = statement.on_conflict_do_nothing()
    else:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_=values, where=overwrite_where
        )
    return connection.execute(statement.returning(keys[0]))
