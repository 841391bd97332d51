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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

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
        return self.at.strftime("%Y-%m")


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
    units_used: int
    """The tenant's units this month, this call included."""


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


class UsageLedger:
    def __init__(self, db: Database, max_batch: int = 512) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Units used per (tenant, month) as last committed by this process: lets a capped
        # tenant's call be refused before the model runs. The commit's check is the real one.
        self._used: dict[tuple[int, str], int] = {}
        self.batches = 0

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
        with self.db.read() as session:
            row = session.get(IdempotentResponse, (key_id, idempotency.key))
        if row is None:
            return None
        if row.request_hash != idempotency.request_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key '{idempotency.key}' was used for a different request"
            )
        return StoredResponse(row.status, row.body.encode(), row.request_id)

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

    def _commit(self, batch: list[_Pending]) -> None:
        outcomes: list[Outcome | Exception]
        try:
            with self.db.write() as session:
                outcomes = [self._apply(session, item) for item in batch]
            self.batches += 1
        except SQLAlchemyError as exc:
            log.error("usage ledger commit failed (%d calls not answered): %s", len(batch), exc)
            outcomes = [MeteringUnavailable(str(exc))] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Recorded):
                self._used[(item.usage.tenant_id, item.usage.period)] = outcome.units_used
            elif isinstance(outcome, OverQuota):
                self._used[(item.usage.tenant_id, item.usage.period)] = outcome.used
            item.loop.call_soon_threadsafe(_settle, item.future, outcome)

    def _apply(self, session: Session, item: _Pending) -> Outcome | IdempotencyConflict:
        usage, idempotency = item.usage, item.idempotency
        if idempotency is not None:
            stored = _insert_ignoring_conflict(
                session,
                IdempotentResponse,
                key_id=usage.key_id,
                idempotency_key=idempotency.key,
                request_hash=idempotency.request_hash,
                request_id=usage.request_id,
                status=item.response.status,
                body=item.response.body.decode(),
                created_at=usage.at,
            )
            if not stored:
                # A concurrent retry got there first: this one is answered with its response.
                row = session.get(IdempotentResponse, (usage.key_id, idempotency.key))
                assert row is not None
                if row.request_hash != idempotency.request_hash:
                    # Returned, not raised: it fails this call, not the whole batch.
                    return IdempotencyConflict(
                        f"Idempotency-Key '{idempotency.key}' was used for a different request"
                    )
                return Replayed(StoredResponse(row.status, row.body.encode(), row.request_id))
        _insert_ignoring_conflict(
            session, UsageCounter, tenant_id=usage.tenant_id, period=usage.period, units=0
        )
        counter = UsageCounter
        condition = (counter.tenant_id == usage.tenant_id) & (counter.period == usage.period)
        if usage.cap is not None:
            condition &= counter.units + usage.units <= usage.cap
        used = session.execute(
            update(UsageCounter)
            .where(condition)
            .values(units=counter.units + usage.units)
            .returning(counter.units)
        ).scalar()
        if used is None:
            if idempotency is not None:
                # A refused call is not a response to replay: let a retry try again.
                session.execute(
                    delete(IdempotentResponse).where(
                        (IdempotentResponse.key_id == usage.key_id)
                        & (IdempotentResponse.idempotency_key == idempotency.key)
                    )
                )
            assert usage.cap is not None
            current = session.execute(
                select(counter.units).where(
                    (counter.tenant_id == usage.tenant_id) & (counter.period == usage.period)
                )
            ).scalar_one()
            return OverQuota(int(current), usage.cap)
        session.add(
            UsageRecord(
                request_id=usage.request_id,
                key_id=usage.key_id,
                tenant_id=usage.tenant_id,
                model=usage.model,
                action=usage.action,
                units=usage.units,
                created_at=usage.at,
                period=usage.period,
                day=usage.at.date(),
            )
        )
        return Recorded(int(used))


def _insert_ignoring_conflict(session: Session, table: type[Base], **values: Any) -> bool:
    """Insert a row unless its key exists; whether it was inserted. Portable upsert-nothing:
    a plain INSERT that fails would abort the whole PostgreSQL transaction."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING tells reliably whether the row went in; rowcount after ON CONFLICT does not
    # (psycopg reports 1 for a skipped row).
    core_table = cast(Table, table.__table__)
    statement = insert(core_table).values(**values).on_conflict_do_nothing()
    key = next(iter(core_table.primary_key.columns))
    return session.execute(statement.returning(key)).first() is not None


def _settle(future: asyncio.Future[Outcome], outcome: Outcome | Exception) -> None:
    if future.done():  # the request was cancelled (client went away) while committing
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
