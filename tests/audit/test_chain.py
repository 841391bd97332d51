"""The audit log's hash chain on SQLite and PostgreSQL: appends, the append-only triggers,
tampering found and named (by someone who dropped the triggers or only inserts), what an
anchor adds, and concurrent appends that keep one chain."""

from __future__ import annotations

import itertools
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError

from forgeline import audit
from forgeline.audit import Anchor, AuditError, AuditEvent
from forgeline.audit.chain import GENESIS, entry_hash
from forgeline.audit.log import SINCE_PATTERN
from forgeline.db import Database
from forgeline.db.tables import AuditEntry


def _append(db: Database, count: int, event: AuditEvent = AuditEvent.KEY_CREATED) -> None:
    for number in range(count):
        with db.write() as session:
            audit.record(session, event, "cli", f"key:{number:012x}", {"tenant": "acme"})


def _verify(db: Database, anchor: Anchor | None = None) -> audit.Verification:
    with db.read() as session:
        return audit.verify(session, anchor)


def _rows(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _without_triggers(db: Database, *statements: str) -> None:
    """Run ``statements`` as someone who dropped the append-only triggers first."""
    with db.engine.begin() as connection:
        if db.is_sqlite:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        else:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        for statement in statements:
            connection.execute(text(statement))


def _forged(row_id: int, prev_hash: str, like: AuditEntry) -> dict[str, object]:
    """A row made the way record() makes one, but linked where the forger wants."""
    row = AuditEntry(
        id=row_id,
        created_at=like.created_at + timedelta(seconds=1),
        event=like.event,
        actor=like.actor,
        subject="key:forged",
        details=like.details,
        prev_hash=prev_hash,
    )
    row.hash = entry_hash(row)
    return {column.key: getattr(row, column.key) for column in AuditEntry.__table__.columns}


def test_a_chain_of_real_appends_verifies_and_lists(db: Database) -> None:
    _append(db, 3)
    _append(db, 2, AuditEvent.KEY_REVOKED)
    rows = _rows(db)
    assert [row.id for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(rows))
    result = _verify(db)
    assert result.ok and result.rows == 5 and result.head == Anchor(5, rows[-1].hash)
    with db.read() as session:
        newest = audit.list_events(session, limit=2)
        revoked = audit.list_events(session, event=AuditEvent.KEY_REVOKED)
        older = audit.list_events(session, before=newest[-1].id)
        future = audit.list_events(session, since=rows[-1].created_at + timedelta(seconds=1))
    assert [row.id for row in newest] == [5, 4]
    assert [row.id for row in revoked] == [5, 4]
    assert [row.id for row in older] == [3, 2, 1]
    assert future == []
    assert newest[0].details_dict() == {"tenant": "acme"}


def test_the_triggers_refuse_updates_and_deletes(db: Database) -> None:
    _append(db, 2)
    refused = ["UPDATE audit_log SET subject = 'key:other'", "DELETE FROM audit_log WHERE id = 2"]
    if not db.is_sqlite:
        refused.append("TRUNCATE audit_log")
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"), db.write() as session:
            session.execute(text(statement))
    assert [row.subject for row in _rows(db)] == ["key:000000000000", "key:000000000001"]


def test_an_edited_row_is_named(db: Database) -> None:
    _append(db, 5)
    _without_triggers(db, 'UPDATE audit_log SET details = \'{"tenant":"other"}\' WHERE id = 2')
    result = _verify(db)
    assert [(p.row, p.kind) for p in result.problems] == [(2, "edited")]
    assert str(result.problems[0]) == "row 2: edited: its fields do not match its hash"


def test_an_edited_and_rehashed_row_is_caught_by_its_successor(db: Database) -> None:
    _append(db, 5)
    _without_triggers(db, "UPDATE audit_log SET actor = 'admin-key:someone' WHERE id = 2")
    edited = _rows(db)[1]
    with db.engine.begin() as connection:
        connection.execute(
            update(AuditEntry).where(AuditEntry.id == 2).values(hash=entry_hash(edited))
        )
    [problem] = _verify(db).problems
    assert (problem.row, problem.kind) == (3, "unlinked")
    assert "does not link to row 2" in problem.message


def test_a_deleted_middle_row_is_named(db: Database) -> None:
    _append(db, 5)
    _without_triggers(db, "DELETE FROM audit_log WHERE id = 3")
    result = _verify(db)
    assert result.rows == 4
    assert [str(p) for p in result.problems] == ["row 4: row 3 before it is missing (deleted)"]
    _without_triggers(db, "DELETE FROM audit_log WHERE id IN (1, 2)")
    first = _verify(db).problems[0]
    assert str(first) == "row 4: rows 1 to 3 before it are missing (deleted)"


def test_a_deleted_last_row_is_found_only_against_a_kept_anchor(db: Database) -> None:
    """The chain alone cannot tell a deleted last row from one never written: an anchor kept
    outside the database can."""
    _append(db, 5)
    kept = _verify(db).head
    assert kept is not None and kept.id == 5
    _without_triggers(db, "DELETE FROM audit_log WHERE id = 5")
    assert _verify(db).ok  # the documented limit
    [problem] = _verify(db, kept).problems
    assert (problem.row, problem.kind) == (5, "anchor")
    assert "deleted from the end" in problem.message
    _append(db, 1)  # a new row 5 is not the row the anchor recorded
    [problem] = _verify(db, kept).problems
    assert (problem.row, problem.kind) == (5, "anchor")
    assert _verify(db, Anchor(3, _rows(db)[2].hash)).ok


def test_rows_inserted_out_of_chain_are_named(db: Database) -> None:
    """Triggers cannot refuse inserts: a row appended with a valid hash but linked to an older
    row is a fork; one linked to nothing, or put before the first row, is named too."""
    _append(db, 4)
    rows = _rows(db)
    with db.engine.begin() as connection:
        connection.execute(insert(AuditEntry).values(**_forged(5, rows[1].hash, rows[3])))
    [problem] = _verify(db).problems
    assert (problem.row, problem.kind) == (5, "fork")
    assert "links to row 2, not to row 4" in problem.message

    with db.engine.begin() as connection:
        connection.execute(insert(AuditEntry).values(**_forged(6, "f" * 64, rows[3])))
        connection.execute(insert(AuditEntry).values(**_forged(0, GENESIS, rows[0])))
    problems = [(p.row, p.kind) for p in _verify(db).problems]
    assert problems == [(0, "inserted"), (5, "fork"), (6, "unlinked")]


def test_a_row_with_a_made_up_hash_is_named(db: Database) -> None:
    _append(db, 2)
    fields = _forged(3, _rows(db)[1].hash, _rows(db)[1])
    with db.engine.begin() as connection:
        connection.execute(insert(AuditEntry).values(**{**fields, "hash": "a" * 64}))
    assert [(p.row, p.kind) for p in _verify(db).problems] == [(3, "edited")]


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    """Threads appending at once (as two server processes would) wait for each other: one
    chain, consecutive ids, no append lost."""
    threads, each = 6, 8
    failures: list[BaseException] = []

    def append() -> None:
        try:
            _append(db, each)
        except BaseException as exc:  # reported below, with the assertion
            failures.append(exc)

    workers = [threading.Thread(target=append) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    result = _verify(db)
    assert result.ok and result.rows == threads * each
    assert [row.id for row in _rows(db)] == list(range(1, threads * each + 1))


def test_appending_needs_the_write_lock(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/forgeline.db")
    db.migrate()
    with pytest.raises(RuntimeError, match=r"Database.write\(\)"), db.read() as session:
        audit.record(session, AuditEvent.KEY_CREATED, "cli", "key:x")
    db.dispose()


def test_bad_input_says_the_format() -> None:
    with pytest.raises(AuditError, match="not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM"):
        audit.parse_since("2026-13-01")
    assert audit.parse_since("2026-11-05T12:00+02:00").hour == 10
    assert audit.parse_since("2026-11-05").isoformat() == "2026-11-05T00:00:00"
    with pytest.raises(AuditError, match=r"no event 'key\.deleted' \(events: key\.created, "):
        audit.parse_event("key.deleted")
    with pytest.raises(AuditError, match="give ID:HASH"):
        Anchor.parse("12:abc")
    assert Anchor.parse(f"12:{'ab' * 32}") == Anchor(12, "ab" * 32)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2024-02-29", True),
        ("2000-02-29T10:00", True),
        ("2026-11-05 10:00:00.123456+05:30", True),
        ("2026-11-05T23:59:59Z", True),
        ("0001-01-01T00:00+01:00", True),  # before the first day there is, in UTC: the first
        ("2026-02-29", False),
        ("1900-02-29", False),
        ("2026-04-31", False),
        ("0000-01-01", False),
        ("2026-11-05T24:00", False),
        ("20261105", False),
        ("2026-11-05T10:00:00.1234567", False),
    ],
)
def test_the_published_pattern_is_exactly_what_since_accepts(text: str, valid: bool) -> None:
    """GET /admin/v1/audit publishes SINCE_PATTERN: what matches must be accepted, and what
    does not refused (the fuzzer holds the server to both)."""
    try:
        audit.parse_since(text)
        accepted = True
    except AuditError:
        accepted = False
    assert accepted == valid
    assert (re.fullmatch(SINCE_PATTERN, text) is not None) == valid
