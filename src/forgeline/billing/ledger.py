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
  commit per batch, not per request (see :mod:`forgeline.billing.commit`).

The hard cap of a plan is enforced in the same transaction, by a conditional update of the
tenant's monthly counter (``units + n <= cap``). The database serialises those updates across
every server process, so concurrent requests cannot overshoot the quota.

A metered request never waits forever: the queue is bounded, and a call whose record is not
committed within ``timeout`` gets :class:`MeteringUnavailable` (a 503). A call still queued at
its deadline is dropped from the queue, so it is never billed; one whose commit had already
started may still be recorded, which is why clients retry with an Idempotency-Key: the retry
then replays the stored answer instead of being billed again. The writer survives any error in
a batch, and if its thread dies anyway the next call restarts it; :meth:`UsageLedger.health`
tells ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, text
from sqlalchemy.exc import SQLAlchemyError

from forgeline.billing.commit import Call, apply_batch, stored_response
from forgeline.billing.records import (
    IDEMPOTENCY_RETENTION,
    Idempotency,
    MeteringUnavailable,
    Outcome,
    OverQuota,
    Recorded,
    StoredResponse,
    Usage,
)
from forgeline.db import Database
from forgeline.db.tables import IdempotentResponse

log = logging.getLogger("forgeline.billing")

_SWEEP_EVERY = 600.0  # seconds between deletions of expired idempotent responses
_PROBE_EVERY = 2.0  # seconds between database checks while commits are failing


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(eq=False)
class _Pending:
    call: Call
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome] = field(repr=False)
    state: str = "queued"  # queued -> taken (being committed) | abandoned (past its deadline)


_STOP = object()
_Result = tuple[asyncio.Future[Outcome], Outcome | Exception]


@dataclass(frozen=True)
class LedgerHealth:
    ok: bool
    reason: str = ""


class UsageLedger:
    def __init__(
        self, db: Database, max_batch: int = 512, timeout: float = 10.0, max_pending: int = 10_000
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.timeout = timeout
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _Pending.state, _pending and the thread
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        # Units used per (tenant, month) as last committed by this process: lets a capped
        # tenant's call be refused before the model runs. The commit's check is the real one.
        self._used: dict[tuple[int, str], int] = {}
        # Held by the writer thread for its life: no pool checkout (and pre-ping) per batch.
        self._connection: Connection | None = None
        self._counters: set[tuple[int, str]] = set()  # counter rows known to be committed
        self._failing_since: float | None = None  # monotonic time of the first failed commit
        self.batches = 0
        self.restarts = 0
        self._next_sweep = time.monotonic()

    def start(self) -> None:
        with self._lock:
            self._closing = False
            self._start_writer()

    def _start_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="usage-ledger", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join()
        self._thread = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def health(self) -> LedgerHealth:
        if self._thread is None or not self._thread.is_alive():
            return LedgerHealth(False, "the usage ledger writer is not running")
        if self._failing_since is not None:
            return LedgerHealth(False, "the usage ledger cannot commit to the database")
        return LedgerHealth(True)

    def over_quota(self, usage: Usage) -> OverQuota | None:
        """A call that would certainly go over its cap, judged by what this process knows."""
        if usage.cap is None:
            return None
        used = self._used.get((usage.tenant_id, usage.period), 0)
        return OverQuota(used, usage.cap) if used + usage.units > usage.cap else None

    async def record(
        self, usage: Usage, response: StoredResponse, idempotency: Idempotency | None = None
    ) -> Outcome:
        """Commit ``usage`` (and ``response``, for replays) and say how it went; raises
        :class:`MeteringUnavailable` when that cannot be done within ``timeout``."""
        loop = asyncio.get_running_loop()
        pending = _Pending(Call(usage, response, idempotency), loop, loop.create_future())
        with self._lock:
            if self._closing:
                raise MeteringUnavailable("the usage ledger is shutting down")
            if self._pending >= self.max_pending:
                raise MeteringUnavailable(f"{self._pending} calls are waiting to be recorded")
            if self._thread is None or not self._thread.is_alive():
                if self._thread is not None:
                    self.restarts += 1
                    log.error("the usage ledger writer had stopped; restarting it")
                self._start_writer()
            self._pending += 1
        self._queue.put(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
        except TimeoutError:
            with self._lock:
                if pending.state == "queued":
                    pending.state = "abandoned"  # the writer skips it: never billed
                    self._pending -= 1
            raise MeteringUnavailable(f"not recorded within {self.timeout:g} s") from None

    def replay(self, tenant_id: int, idempotency: Idempotency) -> StoredResponse | None:
        """The stored response to an earlier request with this key, if there is one."""
        with self.db.engine.connect() as connection:
            return stored_response(connection, tenant_id, idempotency, _utcnow())

    def forget_idempotency_before(self, cutoff: datetime) -> int:
        """Delete stored responses made before ``cutoff``; how many there were."""
        with self.db.write() as session:
            result = session.execute(
                delete(IdempotentResponse).where(IdempotentResponse.created_at < cutoff)
            )
            return int(getattr(result, "rowcount", 0))

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
        """Wait for calls (or a chore), commit them; False once told to stop."""
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
                    if item.state == "queued":
                        item.state = "taken"
                        self._pending -= 1
                        batch.append(item)
            if len(batch) >= self.max_batch:
                return batch, stopping
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, stopping

    def _seconds_to_next_chore(self) -> float:
        wait = self._next_sweep - time.monotonic()
        if self._failing_since is not None:
            wait = min(wait, _PROBE_EVERY)
        return max(0.01, wait)

    def _chores(self) -> None:
        if self._failing_since is not None:
            self._probe()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + _SWEEP_EVERY
            self._sweep()

    def _probe(self) -> None:
        """While commits fail, check the database on a timer, so readiness recovers even when
        no call arrives to try again."""
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return
        self._failing_since = None

    def _sweep(self) -> None:
        try:
            self.forget_idempotency_before(_utcnow() - IDEMPOTENCY_RETENTION)
        except SQLAlchemyError as exc:  # not fatal: the next sweep tries again
            log.warning("could not delete expired idempotent responses: %s", exc)

    def _commit(self, batch: list[_Pending]) -> None:
        outcomes: list[Outcome | Exception]
        try:
            if self._connection is None:
                self._connection = self.db.write_connection()
            with self._connection.begin():
                result = apply_batch(self._connection, [p.call for p in batch], self._counters)
            self._counters |= result.counters  # only now: a rolled-back row does not exist
            outcomes = result.outcomes
            self.batches += 1
            self._failing_since = None
        except Exception as exc:  # any failure fails this batch only; the writer goes on
            if isinstance(exc, SQLAlchemyError):
                log.error("usage ledger commit failed (%d calls not answered): %s", len(batch), exc)
            else:
                log.exception("usage ledger commit failed (%d calls not answered)", len(batch))
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            outcomes = [MeteringUnavailable("the usage ledger could not commit")] * len(batch)
            self._drop_connection()
        self._settle(batch, outcomes)

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
            usage = item.call.usage
            if isinstance(outcome, Recorded) and outcome.units_used is not None:
                self._used[(usage.tenant_id, usage.period)] = outcome.units_used
            elif isinstance(outcome, OverQuota):
                self._used[(usage.tenant_id, usage.period)] = outcome.used
            settled.setdefault(item.loop, []).append((item.future, outcome))
        # One wake-up of each event loop per batch, not one per call.
        for loop, results in settled.items():
            # RuntimeError: that loop has closed, so nobody is waiting for these calls any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, results)

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
                    if item.state != "queued":
                        continue
                    item.state = "abandoned"
                    self._pending -= 1
                leftover.append(item)
        if leftover:
            unavailable = MeteringUnavailable("the usage ledger writer stopped")
            self._settle(leftover, [unavailable] * len(leftover))


def _settle(results: list[_Result]) -> None:
    for future, outcome in results:
        if future.done():  # the request was cancelled (client went away) while committing
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
