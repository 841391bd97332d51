"""Appending to the audit log and reading it back.

:func:`record` appends in the caller's transaction, so an event is stored if and only if the
change it describes is: call it in a :meth:`Database.write <forgeline.db.Database.write>`
session, as the last statement before the commit. Appends are serialized so that the chain
never forks: on PostgreSQL by a transaction-scoped advisory lock (two server processes, or a
server and the CLI, take turns; the lock ends with the transaction), on SQLite by the write
lock that ``Database.write`` takes up front (``BEGIN IMMEDIATE``). Should two appends ever
race anyway, the second fails on the primary key (ids are the previous id + 1, not a
sequence) rather than fork the chain. Recording last keeps the lock short and means a
transaction that holds it waits for no other lock: appends cannot deadlock with key updates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from forgeline.audit.chain import GENESIS, AuditError, DetailValue, details_json, entry_hash
from forgeline.audit.events import AuditEvent
from forgeline.db.tables import AuditEntry

APPEND_LOCK = 7305713
"""The PostgreSQL advisory lock of appends (the migrations take 7305712)."""
MAX_LIST = 1000
"""The most rows one listing (CLI or HTTP) shows."""
_MAX_ACTOR, _MAX_SUBJECT = 64, 128


@dataclass(frozen=True)
class AuditRecord:
    """One row of the audit log; ``time`` is naive UTC, ``details`` the stored JSON text."""

    id: int
    time: datetime
    event: str
    actor: str
    subject: str
    details: str
    prev_hash: str
    hash: str

    def details_dict(self) -> dict[str, Any]:
        """The details as a dict; a row edited into something else still lists (and fails
        verification), its text under ``unreadable``."""
        try:
            parsed = json.loads(self.details)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"unreadable": self.details}


def record(
    session: Session,
    event: AuditEvent,
    actor: str,
    subject: str,
    details: Mapping[str, DetailValue] | None = None,
) -> AuditRecord:
    """Append ``event`` in ``session``'s transaction (a ``Database.write`` session). ``details``
    must hold no secret and no personal data: ids, names of things, counts, times."""
    if not 0 < len(actor) <= _MAX_ACTOR or not 0 < len(subject) <= _MAX_SUBJECT:
        raise ValueError(f"audit actor and subject: 1 to {_MAX_ACTOR} and {_MAX_SUBJECT} chars")
    session.flush()  # the change first: the lock below is then held only for this insert
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": APPEND_LOCK})
    elif connection.get_execution_options().get("sqlite_begin") != "IMMEDIATE":
        raise RuntimeError("audit.record needs a Database.write() session (the write lock)")
    last = session.execute(
        select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    row_id, prev_hash = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    row = AuditEntry(
        id=row_id,
        created_at=datetime.now(UTC).replace(tzinfo=None),
        event=str(event),
        actor=actor,
        subject=subject,
        details=details_json(details),
        prev_hash=prev_hash,
    )
    row.hash = entry_hash(row)
    session.add(row)
    session.flush()
    return _record(row)


def list_events(
    session: Session,
    *,
    since: datetime | None = None,
    event: AuditEvent | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """The newest ``limit`` rows, newest first: of one ``event``, from ``since`` (naive UTC)
    on, with ids below ``before`` (to page back)."""
    query = select(AuditEntry)
    if since is not None:
        query = query.where(AuditEntry.created_at >= since)
    if event is not None:
        query = query.where(AuditEntry.event == str(event))
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))
    return [_record(row) for row in rows]


def parse_event(name: str) -> AuditEvent:
    try:
        return AuditEvent(name)
    except ValueError:
        known = ", ".join(e.value for e in AuditEvent)
        raise AuditError(f"--event: no event '{name}' (events: {known})") from None


_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
_LEAP_DAY = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29"
_HOUR_MINUTE = "([01][0-9]|2[0-3]):[0-5][0-9]"
_TIME = f"([T ]{_HOUR_MINUTE}(:[0-5][0-9](\\.[0-9]{{1,6}})?)?(Z|[+-]{_HOUR_MINUTE})?)?"
SINCE_PATTERN = f"^({_YEAR}-{_MONTH_DAY}|{_LEAP_DAY}){_TIME}$"
"""A real date, ``YYYY-MM-DD``, and optionally a time (``THH:MM``, seconds, a fraction, ``Z``
or an offset): exactly what :func:`parse_since` accepts, as the HTTP API publishes it."""


def parse_since(value: str) -> datetime:
    """A date (``2026-11-05``) or time (``2026-11-05T10:30``, with seconds, an offset or
    ``Z`` if wished; UTC otherwise) as naive UTC, the way the database stores times."""
    if re.fullmatch(SINCE_PATTERN, value) is None:
        raise AuditError(
            f"'{value}' is not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] "
            "(UTC unless an offset such as +02:00 is given)"
        )
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # an offset from the first or last day there is: clamp
        return datetime.min if moment.year == 1 else datetime.max


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        time=row.created_at,
        event=row.event,
        actor=row.actor,
        subject=row.subject,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
