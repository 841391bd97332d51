"""The usage ledger: exactly one record per successful billable response.

Exactly once comes from three rules:

* **Durable before the response.** A call's record is committed before its response is sent
  (the server awaits :meth:`UsageLedger.record`). A crash before the commit loses the response
  too, so nothing the client received goes unbilled and nothing unbilled was delivered. A
  streamed generation call holds its tokens in a reservation committed before its first byte,
  and raised before more is sent (:meth:`reserve`, :meth:`extend`); it becomes the call's record
  when the call ends (:meth:`settle`). If the process dies first, another (or the restarted
  one) bills the reservation as held once its lease runs out: the client may have received
  all of it, and never received more.
* **Never twice.** ``request_id`` is unique; a retry sent with the same ``Idempotency-Key``
  finds the first response stored in the same transaction as its record and gets it back
  instead of being run and billed again.
* **Cheap.** Operations are committed in groups: one writer thread takes everything queued
  while the previous commit ran and commits it in one transaction (one fsync), so metering
  costs one commit per batch, not per call (see :mod:`forgeline.billing.commit`).

The hard cap of a plan is enforced in the same transaction, by a conditional update of the
tenant's monthly counter (``units + n <= cap``). The database serialises those updates across
every server process, so concurrent calls cannot overshoot the quota.

Nothing waits forever. The queue is bounded, and an operation not committed within
``timeout`` fails with :class:`MeteringUnavailable` (a 503). Until its transaction reaches
COMMIT it is taken back (the batch is rolled back and committed again without it), so a call
refused with 503 is never billed; each statement is bounded by the database's own timeouts
below ``timeout``, so a commit that started ends in time. The writer survives any error in a
batch, and if its thread dies anyway the next call restarts it; :meth:`health` tells ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from forgeline.billing.commit import Extend, Operation, Record, Reserve, Settle, apply_batch
from forgeline.billing.idempotency import stored_response
from forgeline.billing.maintenance import bill_abandoned, forget_expired, renew_leases
from forgeline.billing.records import (
    IDEMPOTENCY_RETENTION,
    AlreadySettled,
    Idempotency,
    MeteringUnavailable,
    Outcome,
    OverQuota,
    Recorded,
    Reserved,
    Settled,
    StoredResponse,
    Usage,
)
from forgeline.db import Database

log = logging.getLogger("forgeline.billing")

_SWEEP_EVERY = 600.0  # seconds between deletions of expired idempotent responses
_PROBE_EVERY = 2.0  # seconds between database checks while commits are failing


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(eq=False)
class _Pending:
    operation: Operation | None  # dropped when abandoned: a stalled queue holds no bodies
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome] = field(repr=False)
    state: str = "queued"  # queued -> taken -> committing; queued or taken -> abandoned


_STOP = object()
_Result = tuple[asyncio.Future[Outcome], Outcome | Exception]


class _Abandoned(Exception):
    """Calls of the open batch were given up on: roll it back and commit the rest again."""


@dataclass(frozen=True)
class LedgerHealth:
    ok: bool
    reason: str = ""


class UsageLedger:
    def __init__(
        self,
        db: Database,
        max_batch: int = 512,
        timeout: float = 10.0,
        max_pending: int = 10_000,
        lease: float = 60.0,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.timeout = timeout
        self.max_pending = max_pending
        self.lease = timedelta(seconds=lease)
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _Pending.state, _queued, _held and the thread
        self._queued = 0  # items in the queue, abandoned ones included
        self._thread: threading.Thread | None = None
        self._closing = False
        # Units used per (tenant, month) as last committed by this process: lets a capped
        # tenant's call be refused before the model runs. The commit's check is the real one.
        self._used: dict[tuple[int, str], int] = {}
        # Held by the writer thread for its life: no pool checkout (and pre-ping) per batch.
        self._connection: Connection | None = None
        self._counters: set[tuple[int, str]] = set()  # counter rows known to be committed
        self._held: set[str] = set()  # this process's running generation calls
        self._unsettled: dict[str, Settle] = {}  # ended calls whose settling is to be retried
        self._failing_since: float | None = None  # monotonic time of the first failed commit
        self._busy_since: float | None = None  # monotonic start of the transaction under way
        self.batches = 0
        self.restarts = 0
        self._next_sweep = time.monotonic()
        self._next_lease_work = time.monotonic()

    def start(self) -> None:
        with self._lock:
            self._closing = False
            self._start_writer()

    def _start_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="usage-ledger", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Commit what is queued, then stop the writer (giving up after a while)."""
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=self.timeout + 5)
            if thread.is_alive():
                log.error("the usage ledger writer did not stop in time; leaving it behind")
                return
        self._thread = None
        self._drop_connection()

    def health(self) -> LedgerHealth:
        busy = self._busy_since
        if self._thread is None or not self._thread.is_alive():
            return LedgerHealth(False, "the usage ledger writer is not running")
        if self._failing_since is not None:
            return LedgerHealth(False, "the usage ledger cannot commit to the database")
        if busy is not None and time.monotonic() - busy > self.timeout:
            return LedgerHealth(False, "a usage ledger commit is stalled")
        return LedgerHealth(True)

    def over_quota(self, usage: Usage) -> OverQuota | None:
        """A call that would certainly go over its cap, judged by what this process knows."""
        if usage.cap is None:
            return None
        used = self._used.get((usage.tenant_id, usage.period), 0)
        return OverQuota(used, usage.cap) if used + usage.units > usage.cap else None

    # -- what calls ask for --------------------------------------------------------------------

    async def record(
        self, usage: Usage, response: StoredResponse, idempotency: Idempotency | None = None
    ) -> Outcome:
        """Commit ``usage`` (and ``response``, for replays): Recorded, Replayed or OverQuota."""
        return await self._submit(Record(usage, response, idempotency))

    async def reserve(self, usage: Usage, idempotency: Idempotency | None = None) -> Outcome:
        """Hold a generation call's tokens before it sends anything: Reserved, Replayed or
        OverQuota (raises IdempotencyInProgress while a retry's first call still runs)."""
        outcome = await self._submit(Reserve(usage, utcnow() + self.lease, idempotency))
        if isinstance(outcome, Reserved):
            with self._lock:
                self._held.add(usage.request_id)
        return outcome

    async def extend(self, request_id: str, output_tokens: int) -> Outcome:
        """Hold ``output_tokens`` generated tokens in all: Extended, or AlreadySettled when the
        lease had run out (the call must stop: it is billed as held)."""
        return await self._submit(Extend(request_id, output_tokens, utcnow() + self.lease))

    async def settle(
        self,
        usage: Usage,
        response: StoredResponse | None = None,
        idempotency: Idempotency | None = None,
        *,
        delivered: bool,
    ) -> Outcome:
        """Record a generation call's real usage: Settled, or AlreadySettled. If that cannot
        be committed now, it is retried in the background until it is (meanwhile the
        reservation is kept alive): billed if the client got the tokens already
        (``delivered``, a stream), else released (the client is answered 503)."""
        try:
            outcome = await self._submit(Settle(usage, response, idempotency))
        except MeteringUnavailable:
            retry = Settle(usage, response if delivered else None, idempotency, bill=delivered)
            with self._lock:
                self._unsettled[usage.request_id] = retry
            raise
        with self._lock:
            self._held.discard(usage.request_id)
        return outcome

    def replay(self, tenant_id: int, idempotency: Idempotency) -> StoredResponse | None:
        """The stored response to an earlier request with this key, if there is one."""
        with self.db.engine.connect() as connection:
            return stored_response(connection, self.db.keys, tenant_id, idempotency, utcnow())

    def forget_idempotency_before(self, cutoff: datetime) -> int:
        """Delete stored responses made before ``cutoff``, in short transactions; how many."""
        deleted = 0
        while True:
            with self.db.write_connection() as connection, connection.begin():
                done = forget_expired(connection, cutoff)
            deleted += done
            if done == 0:
                return deleted

    async def _submit(self, operation: Operation) -> Outcome:
        loop = asyncio.get_running_loop()
        pending = _Pending(operation, loop, loop.create_future())
        with self._lock:
            if self._closing:
                raise MeteringUnavailable("the usage ledger is shutting down")
            if self._queued >= self.max_pending:
                raise MeteringUnavailable(f"{self._queued} calls are waiting to be recorded")
            if self._thread is None or not self._thread.is_alive():
                if self._thread is not None:
                    self.restarts += 1
                    log.error("the usage ledger writer had stopped; restarting it")
                self._start_writer()
            self._queued += 1
        self._queue.put(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
        except TimeoutError:
            with self._lock:
                if pending.state in ("queued", "taken"):
                    pending.state, pending.operation = "abandoned", None  # never committed
                    raise MeteringUnavailable(f"not recorded within {self.timeout:g} s") from None
        # COMMIT had begun: its statements are bounded by the database's timeouts, so the
        # outcome comes soon; waiting for it keeps a billed call from being answered 503.
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
        except TimeoutError:
            log.error(
                "a usage ledger commit did not end in %g s; its outcome is unknown",
                2 * self.timeout,
            )
            raise MeteringUnavailable("the outcome of the commit is unknown") from None

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._serve_one_round():
                pass
        except BaseException:  # logged here; the next call restarts the writer
            log.critical("the usage ledger writer died", exc_info=True)
        finally:
            self._fail_queued()

    def _serve_one_round(self) -> bool:
        """Wait for operations (or a chore), commit them; False once told to stop."""
        try:
            first = self._queue.get(timeout=self._seconds_to_next_chore())
        except queue.Empty:
            self._chores()
            return True
        batch, stopping = self._take(first)
        if batch:
            self._commit(batch)
        self._chores()
        return not stopping

    def _take(self, first: object) -> tuple[list[_Pending], bool]:
        batch: list[_Pending] = []
        item, stopping = first, False
        while True:
            if item is _STOP:
                stopping = True
            else:
                assert isinstance(item, _Pending)
                with self._lock:
                    self._queued -= 1
                    if item.state == "queued":
                        item.state = "taken"
                        batch.append(item)
            if len(batch) >= self.max_batch:
                return batch, stopping
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, stopping

    def _seconds_to_next_chore(self) -> float:
        wait = min(self._next_sweep, self._next_lease_work) - time.monotonic()
        if self._failing_since is not None:
            wait = min(wait, _PROBE_EVERY)
        return max(0.01, wait)

    def _chores(self) -> None:
        if self._failing_since is not None:
            self._probe()
        now = time.monotonic()
        if now >= self._next_lease_work:
            # A third of the lease: a live call's lease is renewed twice before it could end.
            self._next_lease_work = now + self.lease.total_seconds() / 3
            self._housekeep(self._lease_work)
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self._housekeep(
                lambda: self.forget_idempotency_before(utcnow() - IDEMPOTENCY_RETENTION)
            )

    def _lease_work(self) -> None:
        with self._lock:
            held = set(self._held)
            unsettled = list(self._unsettled.values())
        if unsettled:
            self._retry_settling(unsettled)
        with self.db.write_connection() as connection:
            if held:
                with connection.begin():
                    renew_leases(connection, held, utcnow() + self.lease)
            while True:
                with connection.begin():
                    if bill_abandoned(connection, utcnow(), held) == 0:
                        break
                log.warning("billed the reservations of generation calls whose process died")

    def _retry_settling(self, unsettled: list[Settle]) -> None:
        with self.db.write_connection() as connection, connection.begin():
            apply_batch(connection, self.db.keys, list(unsettled), self._counters)
        with self._lock:
            for settle in unsettled:
                self._unsettled.pop(settle.usage.request_id, None)
                self._held.discard(settle.usage.request_id)
        log.info("settled %d generation calls whose settling had failed", len(unsettled))

    def _housekeep(self, work: object) -> None:
        try:
            assert callable(work)
            work()
        except SQLAlchemyError as exc:  # not fatal: the next round tries again
            log.warning("usage ledger housekeeping failed: %s", exc)

    def _probe(self) -> None:
        """While commits fail, check on a timer that the database takes writes again, so
        readiness recovers even when no call arrives to try. A write statement that touches
        no row: a read-only database (a failed-over replica, a full disk) fails it."""
        try:
            with self.db.write_connection() as connection, connection.begin():
                connection.execute(text("DELETE FROM usage_reservations WHERE 1 = 0"))
        except SQLAlchemyError:
            return
        self._failing_since = None

    def _connect(self) -> Connection:
        """The writer's connection, its statements bounded below the ledger's deadline so a
        commit that has started also ends in time."""
        connection = self.db.write_connection()
        bound_ms = max(100, int(self.timeout * 1000 / 2))
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SET statement_timeout = {bound_ms}")
            connection.exec_driver_sql(f"SET lock_timeout = {bound_ms}")
        else:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {bound_ms}")
        connection.commit()  # end the transaction those statements began
        return connection

    def _commit(self, batch: list[_Pending]) -> None:
        while batch:
            try:
                outcomes = self._commit_once(batch)
            except _Abandoned:
                with self._lock:
                    batch = [item for item in batch if item.state != "abandoned"]
                continue
            except Exception as exc:  # any failure fails this batch only; the writer goes on
                if isinstance(exc, SQLAlchemyError):
                    log.error("usage ledger commit failed (%d calls): %s", len(batch), exc)
                else:
                    log.exception("usage ledger commit failed (%d calls)", len(batch))
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._drop_connection()
                outcomes = [MeteringUnavailable("the usage ledger could not commit")] * len(batch)
            self._settle(batch, outcomes)
            return

    def _commit_once(self, batch: list[_Pending]) -> list[Outcome | Exception]:
        if self._connection is None:
            self._connection = self._connect()
        self._busy_since = time.monotonic()
        try:
            transaction = self._connection.begin()
            try:
                operations = [item.operation for item in batch if item.operation is not None]
                result = apply_batch(self._connection, self.db.keys, operations, self._counters)
                with self._lock:  # the last moment a call may still be given up on
                    if any(item.state == "abandoned" for item in batch):
                        raise _Abandoned
                    for item in batch:
                        item.state = "committing"
                transaction.commit()
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
        finally:
            self._busy_since = None
        self._counters |= result.counters  # only now: a rolled-back row does not exist
        self.batches += 1
        self._failing_since = None
        return result.outcomes

    def _drop_connection(self) -> None:
        if self._connection is not None:  # reconnect for the next batch
            # A broken connection may fail to close too; a new one is made next time.
            with contextlib.suppress(SQLAlchemyError):
                self._connection.invalidate()
                self._connection.close()
            self._connection = None

    def _settle(self, batch: list[_Pending], outcomes: list[Outcome | Exception]) -> None:
        settled: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for item, outcome in zip(batch, outcomes, strict=True):
            operation = item.operation
            if operation is not None and not isinstance(operation, Extend):
                used = (operation.usage.tenant_id, operation.usage.period)
                if isinstance(outcome, Recorded | Reserved | Settled):
                    if outcome.units_used is not None:
                        self._used[used] = outcome.units_used
                elif isinstance(outcome, OverQuota):
                    self._used[used] = outcome.used
            if isinstance(operation, Settle) or isinstance(outcome, AlreadySettled):
                with self._lock:
                    self._held.discard(_request_id(operation))
            settled.setdefault(item.loop, []).append((item.future, outcome))
        # One wake-up of each event loop per batch, not one per call.
        for loop, results in settled.items():
            # RuntimeError: that loop has closed, so nobody is waiting for these calls any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, results)

    def _fail_queued(self) -> None:
        """The writer is stopping or died: nobody will commit what is queued, so fail it."""
        leftover: list[_Pending] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Pending):
                with self._lock:
                    self._queued -= 1
                    if item.state != "queued":
                        continue
                    item.state = "abandoned"
                leftover.append(item)
        if leftover:
            unavailable = MeteringUnavailable("the usage ledger writer stopped")
            self._settle(leftover, [unavailable] * len(leftover))


def _request_id(operation: Operation | None) -> str:
    if operation is None:
        return ""
    return operation.request_id if isinstance(operation, Extend) else operation.usage.request_id


def _deliver(results: list[_Result]) -> None:
    for future, outcome in results:
        if future.done():  # the request was cancelled (client went away) while committing
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
