"""The usage ledger's housekeeping, each a short transaction of its own: deleting expired
idempotent responses, renewing the leases of running generation calls, and billing the calls
of a process that died.

Each takes its row locks in the ledger's global order (Idempotency-Key rows, then reservation
rows; see :mod:`forgeline.billing.commit`) and on PostgreSQL skips rows another transaction
holds (``SKIP LOCKED``), so housekeeping never waits on a batch and cannot deadlock with one.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select, tuple_, update

from forgeline.billing.commit import record_of
from forgeline.billing.idempotency import RUNNING
from forgeline.billing.records import Usage
from forgeline.db.tables import IdempotentResponse, UsageRecord, UsageReservation

CHUNK = 500
"""Rows per housekeeping transaction: each stays short, so calls never wait long behind it."""


def _locked(connection: Connection, query: Any) -> Any:
    """``query`` locking its rows, skipping those another transaction holds (PostgreSQL;
    SQLite's write transactions are serial, so there is nothing to skip)."""
    if connection.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def forget_expired(connection: Connection, cutoff: datetime) -> int:
    """Delete up to :data:`CHUNK` stored responses made before ``cutoff``; how many."""
    rows = connection.execute(
        _locked(
            connection,
            select(IdempotentResponse.tenant_id, IdempotentResponse.idempotency_key)
            .where(IdempotentResponse.created_at < cutoff)
            .order_by(IdempotentResponse.tenant_id, IdempotentResponse.idempotency_key)
            .limit(CHUNK),
        )
    ).all()
    if rows:
        connection.execute(
            delete(IdempotentResponse).where(
                tuple_(IdempotentResponse.tenant_id, IdempotentResponse.idempotency_key).in_(
                    [tuple(row) for row in rows]
                )
            )
        )
    return len(rows)


def renew_leases(connection: Connection, request_ids: Collection[str], until: datetime) -> None:
    """Keep the reservations of this process's running calls from being taken for dead."""
    ordered = sorted(request_ids)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        locked = connection.execute(
            _locked(
                connection,
                select(UsageReservation.request_id)
                .where(UsageReservation.request_id.in_(chunk))
                .order_by(UsageReservation.request_id),
            )
        ).scalars()
        connection.execute(
            update(UsageReservation)
            .where(UsageReservation.request_id.in_(list(locked)))
            .values(lease_until=until)
        )


def bill_abandoned(connection: Connection, now: datetime, alive: Collection[str]) -> int:
    """Settle up to :data:`CHUNK` reservations whose lease ran out (their process died, or
    lost its database for longer than the lease), billing everything each held: its client
    may have received all of it. Their running Idempotency-Key claims are released, so a
    retry is a new call. ``alive`` are this process's own running calls. How many."""
    expired = [
        request_id
        for request_id in connection.execute(
            select(UsageReservation.request_id)
            .where(UsageReservation.lease_until < now)
            .order_by(UsageReservation.request_id)
            .limit(CHUNK)
        ).scalars()
        if request_id not in alive
    ]
    if not expired:
        return 0
    claims = connection.execute(
        _locked(
            connection,
            select(IdempotentResponse.tenant_id, IdempotentResponse.idempotency_key)
            .where(
                IdempotentResponse.request_id.in_(expired),
                IdempotentResponse.status == RUNNING,
            )
            .order_by(IdempotentResponse.tenant_id, IdempotentResponse.idempotency_key),
        )
    ).all()
    if claims:
        connection.execute(
            delete(IdempotentResponse).where(
                tuple_(IdempotentResponse.tenant_id, IdempotentResponse.idempotency_key).in_(
                    [tuple(row) for row in claims]
                ),
                IdempotentResponse.status == RUNNING,
            )
        )
    locked = list(
        connection.execute(
            _locked(
                connection,
                select(UsageReservation.request_id)
                .where(UsageReservation.request_id.in_(expired), UsageReservation.lease_until < now)
                .order_by(UsageReservation.request_id),
            )
        ).scalars()
    )
    rows = connection.execute(
        delete(UsageReservation)
        .where(UsageReservation.request_id.in_(locked))
        .returning(*UsageReservation.__table__.columns)
    ).all()
    records = [
        record_of(
            Usage(
                request_id=row.request_id,
                key_id=row.key_id,
                tenant_id=row.tenant_id,
                model=row.model,
                action=row.action,
                units=row.other_units + row.input_tokens + row.output_tokens,
                at=row.created_at,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
            )
        )
        for row in rows
    ]
    if records:
        connection.execute(insert(cast(Table, UsageRecord.__table__)), records)
    return len(records)
