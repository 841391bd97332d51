"""The usage ledger: exactly one record per successful billable response.

Exactly once comes from three rules:

* **Durable before the response.** A request's record is committed before its response is sent
  (the server awaits :meth:`UsageLedger.record`). A crash before the commit loses the response
  too, so nothing the client received goes unbilled and nothing unbilled was delivered.
* **Never twice.** ``request_id`` is unique; a retry sent with the same ``Idempotency-Key``
  finds the first response stored in the same transaction as its record and gets it back
  instead of being run and billed again.
* **Cheap.** Records are committed in groups: one writer thread takes everything queued while
  the previous commit ran and commits it in one transaction (one fsync), so metering costs one
  commit per batch, not per request.

The hard cap of a plan is enforced in the same transaction, by a conditional update of the
tenant's monthly counter (``units + n <= cap``). The database serialises those updates across
every server process, so concurrent requests cannot overshoot the quota.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from forgeline.db import Database
from forgeline.db.tables import Base, IdempotentResponse, UsageCounter, UsageRecord

log = logging.getLogger("forgeline.billing")


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


@dataclass
class _Pending:
    usage: Usage
    response: StoredResponse
    idempotency: Idempotency | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome] = field(repr=False)


_STOP = object()
IDEMPOTENCY_RETENTION = timedelta(hours=24)
"""How long a response stays replayable; a retry after that is a new call (as with Stripe)."""
_SWEEP_EVERY = 600.0  # seconds between deletions of expired idempotent responses


class UsageLedger:
    def __init__(self, db: Database, max_batch: int = 512) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Units used per (tenant, month) as last committed by this process: lets a capped
        # tenant's call be refused before the model runs. The commit's check is the real one.
        self._used: dict[tuple[int, str], int] = {}
        # Held by the writer thread for its life: no pool checkout (and pre-ping) per batch.
        self._connection: Connection | None = None
        self._counters: set[tuple[int, str]] = set()  # counter rows known to exist
        self.batches = 0
        self._next_sweep = time.monotonic()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-ledger", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def over_quota(self, usage: Usage) -> OverQuota | None:
        """A call that would certainly go over its cap, judged by what this process knows."""
        if usage.cap is None:
            return None
        used = self._used.get((usage.tenant_id, usage.period), 0)
        return OverQuota(used, usage.cap) if used + usage.units > usage.cap else None

    async def record(
        self, usage: Usage, response: StoredResponse, idempotency: Idempotency | None = None
    ) -> Outcome:
        """Commit ``usage`` (and ``response``, for replays) and say how it went."""
        if self._thread is None:
            raise RuntimeError("UsageLedger.start() was not called")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Pending(usage, response, idempotency, loop, future))
        return await future

    def replay(self, key_id: str, idempotency: Idempotency) -> StoredResponse | None:
        """The stored response to an earlier request with this key, if there is one."""
        with self.db.engine.connect() as connection:
            return _stored_response(connection, key_id, idempotency)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Pending] = []
            item: object = first
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    assert isinstance(item, _Pending)
                    batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + _SWEEP_EVERY
                self._sweep()

    def _sweep(self) -> None:
        cutoff = datetime.now(UTC).replace(tzinfo=None) - IDEMPOTENCY_RETENTION
        try:
            self.forget_idempotency_before(cutoff)
        except SQLAlchemyError as exc:  # not fatal: the next sweep tries again
            log.warning("could not delete expired idempotent responses: %s", exc)

    def forget_idempotency_before(self, cutoff: datetime) -> int:
        """Delete stored responses made before ``cutoff``; how many there were."""
        with self.db.write() as session:
            result = session.execute(
                delete(IdempotentResponse).where(IdempotentResponse.created_at < cutoff)
            )
            return int(getattr(result, "rowcount", 0))

    def _commit(self, batch: list[_Pending]) -> None:
        outcomes: list[Outcome | Exception]
        try:
            if self._connection is None:
                self._connection = self.db.write_connection()
            with self._connection.begin():
                outcomes = _apply(self._connection, batch, self._counters)
            self.batches += 1
        except SQLAlchemyError as exc:
            log.error("usage ledger commit failed (%d calls not answered): %s", len(batch), exc)
            outcomes = [MeteringUnavailable(str(exc))] * len(batch)
            if self._connection is not None:  # reconnect for the next batch
                self._connection.invalidate()
                self._connection.close()
                self._connection = None
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Any]]] = {}
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Recorded) and outcome.units_used is not None:
                self._used[(item.usage.tenant_id, item.usage.period)] = outcome.units_used
            elif isinstance(outcome, OverQuota):
                self._used[(item.usage.tenant_id, item.usage.period)] = outcome.used
            settled.setdefault(item.loop, []).append((item.future, outcome))
        # One wake-up of the event loop per batch, not one per call.
        for loop, results in settled.items():
            loop.call_soon_threadsafe(_settle, results)


def _apply(
    connection: Connection, batch: list[_Pending], counters: set[tuple[int, str]]
) -> list[Outcome | Exception]:
    """Write one batch in the open transaction: one multi-row insert of the records, plus
    statements per call only where its fate depends on them (Idempotency-Keys, hard caps).
    Only hard-capped tenants keep a counter; usage and invoices sum the records themselves."""
    outcomes: list[Outcome | Exception] = []
    records: list[dict[str, Any]] = []
    for item in batch:
        usage = item.usage
        if item.idempotency is not None:
            earlier = _claim_idempotency_key(connection, item)
            if earlier is not None:
                outcomes.append(earlier)
                continue
        outcome: Outcome = Recorded(None)
        if usage.cap is not None:
            if (usage.tenant_id, usage.period) not in counters:
                _insert_ignoring_conflict(
                    connection,
                    UsageCounter,
                    tenant_id=usage.tenant_id,
                    period=usage.period,
                    units=0,
                )
                counters.add((usage.tenant_id, usage.period))
            outcome = _within_cap(connection, usage)
            if isinstance(outcome, OverQuota):
                if item.idempotency is not None:
                    _release_idempotency_key(connection, item)
                outcomes.append(outcome)
                continue
        outcomes.append(outcome)
        records.append(
            {
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
        )
    if records:
        connection.execute(_INSERT_RECORDS, records)
    return outcomes


_INSERT_RECORDS = insert(cast(Table, UsageRecord.__table__))
"""Built once: a statement made per batch would have its cache key computed every time."""


def _counter(tenant_id: int, period: str) -> ColumnElement[bool]:
    return (UsageCounter.tenant_id == tenant_id) & (UsageCounter.period == period)


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
    ).scalar_one()
    return OverQuota(int(current), usage.cap)


def _claim_idempotency_key(connection: Connection, item: _Pending) -> Replayed | Exception | None:
    """Store this call's response under its Idempotency-Key, or, when a concurrent retry got
    there first, what the call is to answer instead."""
    usage, idempotency = item.usage, item.idempotency
    assert idempotency is not None
    stored = _insert_ignoring_conflict(
        connection,
        IdempotentResponse,
        key_id=usage.key_id,
        idempotency_key=idempotency.key,
        request_hash=idempotency.request_hash,
        request_id=usage.request_id,
        status=item.response.status,
        body=item.response.body.decode(),
        created_at=usage.at,
    )
    if stored:
        return None
    try:
        earlier = _stored_response(connection, usage.key_id, idempotency)
    except IdempotencyConflict as exc:
        return exc  # returned, not raised: it fails this call, not the whole batch
    assert earlier is not None
    return Replayed(earlier)


def _stored_response(
    connection: Connection, key_id: str, idempotency: Idempotency
) -> StoredResponse | None:
    row = connection.execute(
        select(
            IdempotentResponse.request_hash,
            IdempotentResponse.status,
            IdempotentResponse.body,
            IdempotentResponse.request_id,
        ).where(_idempotency_row(key_id, idempotency.key))
    ).first()
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key '{idempotency.key}' was used for a different request"
        )
    return StoredResponse(row.status, row.body.encode(), row.request_id)


def _idempotency_row(key_id: str, key: str) -> ColumnElement[bool]:
    return (IdempotentResponse.key_id == key_id) & (IdempotentResponse.idempotency_key == key)


def _release_idempotency_key(connection: Connection, item: _Pending) -> None:
    """A refused call is not a response to replay: let a retry try again."""
    assert item.idempotency is not None
    connection.execute(
        delete(IdempotentResponse).where(_idempotency_row(item.usage.key_id, item.idempotency.key))
    )


def _insert_ignoring_conflict(connection: Connection, table: type[Base], **values: Any) -> bool:
    """Insert a row unless its key exists; whether it was inserted. Portable upsert-nothing:
    a plain INSERT that fails would abort the whole PostgreSQL transaction."""
    dialect = connection.dialect.name
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING tells reliably whether the row went in; rowcount after ON CONFLICT does not
    # (psycopg reports 1 for a skipped row).
    core_table = cast(Table, table.__table__)
    statement = dialect_insert(core_table).values(**values).on_conflict_do_nothing()
    key = next(iter(core_table.primary_key.columns))
    return connection.execute(statement.returning(key)).first() is not None


def _settle(results: list[tuple[asyncio.Future[Outcome], Outcome | Exception]]) -> None:
    for future, outcome in results:
        if future.done():  # the request was cancelled (client went away) while committing
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
