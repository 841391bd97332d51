"""What one group commit of the usage ledger writes, inside one open transaction.

A batch holds operations of four kinds: :class:`Record` (a finished call), :class:`Reserve`
(a generation call that starts), :class:`Extend` (it holds more tokens) and :class:`Settle`
(it ended). Their statements run in a fixed global order, so that two server processes
committing at the same time on PostgreSQL can never deadlock: first every Idempotency-Key row,
sorted by (tenant, key); then every reservation row, sorted by request id; then every
hard-capped tenant's monthly counter, sorted by (tenant, month); then the records. Each
transaction takes its row locks in that one order, so no two wait on each other in a cycle.
(SQLite serialises whole write transactions, so it cannot deadlock at all.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, update

from forgeline.billing.idempotency import claim, finish_claim, release_claim
from forgeline.billing.records import (
    AlreadySettled,
    Extended,
    Idempotency,
    IdempotencyConflict,
    IdempotencyInProgress,
    Outcome,
    OverQuota,
    Recorded,
    Replayed,
    Reserved,
    Settled,
    StoredResponse,
    Usage,
)
from forgeline.db.tables import UsageCounter, UsageRecord, UsageReservation
from forgeline.db.upsert import insert_ignoring_conflict
from forgeline.privacy.sealing import KeyRing


@dataclass(frozen=True)
class Record:
    """A finished call: record it (and store its response under its Idempotency-Key)."""

    usage: Usage
    response: StoredResponse
    idempotency: Idempotency | None = None


@dataclass(frozen=True)
class Reserve:
    """A generation call that starts: hold ``usage``'s tokens (for a hard-capped tenant, all
    it may use) before its first byte is sent. Its Idempotency-Key is claimed as running."""

    usage: Usage
    lease_until: datetime
    idempotency: Idempotency | None = None


@dataclass(frozen=True)
class Extend:
    """Hold ``output_tokens`` generated tokens in all for a running call."""

    request_id: str
    output_tokens: int
    lease_until: datetime


@dataclass(frozen=True)
class Settle:
    """A generation call ended: record its real usage, release what it held beyond it, and
    store its response under its Idempotency-Key. ``bill`` False releases everything: the
    call was refused after all (its client got an error, not a reply)."""

    usage: Usage
    response: StoredResponse | None = None
    idempotency: Idempotency | None = None
    bill: bool = True


Operation = Record | Reserve | Extend | Settle


@dataclass
class _Batch:
    operations: list[Operation]
    outcomes: dict[int, Outcome | Exception] = field(default_factory=dict)
    held: dict[int, int] = field(default_factory=dict)
    """Per settled call, the units its reservation had added to a hard cap's counter."""
    followers: dict[int, int] = field(default_factory=dict)
    """A call whose Idempotency-Key a call earlier in this batch claimed: it gets that call's
    fate once it is known (replayed if answered, refused if refused)."""
    counters: set[tuple[int, str]] = field(default_factory=set)

    def pending(self, kinds: tuple[type, ...]) -> list[int]:
        return [
            i
            for i, op in enumerate(self.operations)
            if isinstance(op, kinds) and i not in self.outcomes and i not in self.followers
        ]


@dataclass(frozen=True)
class BatchResult:
    outcomes: list[Outcome | Exception]
    """One per operation, in the batch's order; an exception fails only its own call."""
    counters: set[tuple[int, str]]
    """The (tenant, month) counter rows this transaction made sure exist."""


def apply_batch(
    connection: Connection,
    keys: KeyRing,
    operations: list[Operation],
    known_counters: set[tuple[int, str]],
) -> BatchResult:
    """Write ``operations`` in the open transaction (stored responses sealed with ``keys``).
    ``known_counters`` are counter rows committed earlier; the caller adds
    :attr:`BatchResult.counters` to them only once this commits."""
    batch = _Batch(operations)
    _idempotency_phase(connection, keys, batch)
    _reservation_phase(connection, batch)
    _counter_phase(connection, batch, known_counters)
    _record_phase(connection, batch)
    _resolve_followers(batch)
    return BatchResult([batch.outcomes[i] for i in range(len(operations))], batch.counters)


def _idempotency_phase(connection: Connection, keys: KeyRing, batch: _Batch) -> None:
    keyed = [
        i
        for i, op in enumerate(batch.operations)
        if not isinstance(op, Extend) and op.idempotency is not None
    ]
    claimed_here: dict[tuple[int, str], int] = {}
    for i in sorted(keyed, key=lambda i: _key_of(batch.operations[i])):
        op = batch.operations[i]
        assert not isinstance(op, Extend) and op.idempotency is not None
        if isinstance(op, Settle):
            finish_claim(connection, keys, op.usage, op.idempotency, op.response)
            continue
        scope = _key_of(op)
        if scope in claimed_here:
            batch.followers[i] = claimed_here[scope]
            continue
        running = isinstance(op, Reserve)
        response = None if running else cast(Record, op).response
        earlier = claim(connection, keys, op.usage, op.idempotency, response)
        if earlier is None:
            claimed_here[scope] = i
        else:
            batch.outcomes[i] = earlier


def _reservation_phase(connection: Connection, batch: _Batch) -> None:
    ordered = sorted(
        batch.pending((Reserve, Extend, Settle)), key=lambda i: _request_id(batch.operations[i])
    )
    for i in ordered:
        op = batch.operations[i]
        if isinstance(op, Reserve):
            connection.execute(_INSERT_RESERVATION, _reservation(op))
        elif isinstance(op, Extend):
            found = connection.execute(
                update(UsageReservation)
                .where(UsageReservation.request_id == op.request_id)
                .values(output_tokens=op.output_tokens, lease_until=op.lease_until)
                .returning(UsageReservation.request_id)
            ).first()
            batch.outcomes[i] = Extended() if found is not None else AlreadySettled()
        else:
            held = connection.execute(
                delete(UsageReservation)
                .where(UsageReservation.request_id == op.usage.request_id)
                .returning(UsageReservation.counted)
            ).scalar()
            if held is None:
                batch.outcomes[i] = AlreadySettled()
            else:
                batch.held[i] = int(held)


def _counter_phase(connection: Connection, batch: _Batch, known: set[tuple[int, str]]) -> None:
    capped = [
        i
        for i in batch.pending((Record, Reserve, Settle))
        if cast(Record | Reserve | Settle, batch.operations[i]).usage.cap is not None
    ]
    for i in sorted(capped, key=lambda i: _counter_of(batch.operations[i])):  # stable
        op = cast(Record | Reserve | Settle, batch.operations[i])
        row = _counter_of(op)
        if row not in known and row not in batch.counters:
            _ensure_counter(connection, *row)
            batch.counters.add(row)
        if isinstance(op, Settle):
            unused = batch.held[i] - (op.usage.units if op.bill else 0)
            batch.outcomes[i] = Settled(_add_to_counter(connection, op.usage, -unused))
            continue
        outcome = _within_cap(connection, op.usage)
        if isinstance(outcome, OverQuota):
            if isinstance(op, Reserve):
                connection.execute(
                    delete(UsageReservation).where(
                        UsageReservation.request_id == op.usage.request_id
                    )
                )
            if op.idempotency is not None:
                release_claim(connection, op.usage, op.idempotency)
            batch.outcomes[i] = outcome
        elif isinstance(op, Reserve):
            batch.outcomes[i] = Reserved(outcome.units_used)
        else:
            batch.outcomes[i] = outcome


def _record_phase(connection: Connection, batch: _Batch) -> None:
    records = []
    for i, op in enumerate(batch.operations):
        if i in batch.followers or isinstance(op, Extend):
            continue
        outcome = batch.outcomes.setdefault(i, _uncapped(op))
        billed = not isinstance(op, Settle) or op.bill
        if isinstance(outcome, Recorded | Settled) and billed:
            records.append(record_of(op.usage))
    if records:
        connection.execute(_INSERT_RECORDS, records)


def _uncapped(op: Operation) -> Outcome:
    if isinstance(op, Reserve):
        return Reserved(None)
    if isinstance(op, Settle):
        return Settled(None)
    return Recorded(None)


def _resolve_followers(batch: _Batch) -> None:
    for i, leader in batch.followers.items():
        op, first = batch.operations[i], batch.operations[leader]
        assert not isinstance(op, Extend | Settle) and not isinstance(first, Extend | Settle)
        assert op.idempotency is not None and first.idempotency is not None
        outcome = batch.outcomes[leader]
        if op.idempotency.request_hash != first.idempotency.request_hash:
            batch.outcomes[i] = IdempotencyConflict(
                f"Idempotency-Key '{op.idempotency.key}' was used for a different request"
            )
        elif isinstance(outcome, OverQuota | Exception):
            batch.outcomes[i] = outcome  # the same request: refused the same way
        elif isinstance(first, Reserve):
            batch.outcomes[i] = IdempotencyInProgress(
                f"a request with Idempotency-Key '{op.idempotency.key}' is still running"
            )
        else:
            batch.outcomes[i] = Replayed(first.response)


def _key_of(op: Operation) -> tuple[int, str]:
    assert not isinstance(op, Extend) and op.idempotency is not None
    return (op.usage.tenant_id, op.idempotency.key)


def _request_id(op: Operation) -> str:
    return op.request_id if isinstance(op, Extend) else op.usage.request_id


def _counter_of(op: Operation) -> tuple[int, str]:
    assert not isinstance(op, Extend)
    return (op.usage.tenant_id, op.usage.period)


def _reservation(op: Reserve) -> dict[str, Any]:
    usage = op.usage
    return {
        "request_id": usage.request_id,
        "key_id": usage.key_id,
        "tenant_id": usage.tenant_id,
        "model": usage.model,
        "action": usage.action,
        "created_at": usage.at,
        "period": usage.period,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "other_units": usage.units - usage.input_tokens - usage.output_tokens,
        "counted": usage.units if usage.cap is not None else 0,
        "idempotency_key": op.idempotency.key if op.idempotency else None,
        "lease_until": op.lease_until,
    }


def record_of(usage: Usage) -> dict[str, Any]:
    """The usage record row of ``usage``."""
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
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }


# Built once: a statement made per batch would have its cache key computed every time.
_INSERT_RECORDS = insert(cast(Table, UsageRecord.__table__))
_INSERT_RESERVATION = insert(cast(Table, UsageReservation.__table__))


def _counter(tenant_id: int, period: str) -> ColumnElement[bool]:
    return (UsageCounter.tenant_id == tenant_id) & (UsageCounter.period == period)


def _ensure_counter(connection: Connection, tenant_id: int, period: str) -> None:
    insert_ignoring_conflict(connection, UsageCounter, tenant_id=tenant_id, period=period, units=0)


def _add_to_counter(connection: Connection, usage: Usage, units: int) -> int | None:
    used = connection.execute(
        update(UsageCounter)
        .where(_counter(usage.tenant_id, usage.period))
        .values(units=UsageCounter.units + units)
        .returning(UsageCounter.units)
    ).scalar()
    return None if used is None else int(used)


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
