"""Checking the audit log's hash chain, row by row, and naming what broke.

What the chain shows, for someone who got past the triggers (dropped them, or wrote to the
database file):

* a row **edited** in place: its fields no longer hash to its ``hash``;
* a row **deleted** from the middle: its successor's id jumps (ids are consecutive) and its
  ``prev_hash`` names a row that is gone;
* a row **inserted out of chain**: it does not link to the row before it (a ``prev_hash`` of
  an older row is a fork), or its hash does not match;
* an edited row whose hash was recomputed: its successor no longer links to it.

What it cannot show on its own: rows deleted from the end (the shorter chain is whole), or
a chain rewritten and re-hashed from the edited row on (or rows appended by someone who
computes hashes the same way). For those, keep the anchor (newest id and hash) that
``forgeline audit verify`` prints somewhere the database's writers cannot reach, and pass it
later with ``--anchor``: rows up to it must still be there, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.audit.chain import GENESIS, Anchor, entry_hash
from forgeline.db.tables import AuditEntry

ProblemKind = Literal["edited", "missing", "fork", "unlinked", "inserted", "anchor"]
_BATCH = 1000


@dataclass(frozen=True)
class Problem:
    row: int
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(frozen=True)
class Verification:
    rows: int
    """Rows read (all of them unless ``complete`` is false)."""
    head: Anchor | None
    """The newest row's id and hash: the anchor to keep."""
    problems: list[Problem] = field(default_factory=list)
    complete: bool = True
    """False when the check stopped at ``max_problems``."""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, anchor: Anchor | None = None, max_problems: int = 100) -> Verification:
    """Walk the chain in id order (one read transaction: rows appended meanwhile are not
    seen), recomputing each hash; the problems found, the first broken row first."""
    problems: list[Problem] = []
    rows, prev_id, prev_hash, anchor_seen = 0, 0, GENESIS, False
    query = select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=_BATCH)
    for row in session.scalars(query):
        if len(problems) >= max_problems:
            return Verification(rows, None, problems, complete=False)
        rows += 1
        if row.id <= prev_id:  # only ids below 1 sort before the first row
            problems.append(Problem(row.id, "inserted", "its id is before the chain's first row"))
            continue
        if row.id != prev_id + 1:
            gone = (
                f"row {prev_id + 1} before it is"
                if row.id == prev_id + 2
                else f"rows {prev_id + 1} to {row.id - 1} before it are"
            )
            problems.append(Problem(row.id, "missing", f"{gone} missing (deleted)"))
        elif row.prev_hash != prev_hash:
            problems.append(_link_problem(session, row, prev_id))
        if entry_hash(row) != row.hash:
            problems.append(Problem(row.id, "edited", "edited: its fields do not match its hash"))
        if anchor is not None and row.id == anchor.id:
            anchor_seen = True
            if row.hash != anchor.hash:
                problems.append(
                    Problem(row.id, "anchor", "is not the row the anchor recorded (replaced)")
                )
        prev_id, prev_hash = row.id, row.hash
    if anchor is not None and not anchor_seen:
        where = "the end" if anchor.id > prev_id else "the chain"
        problems.append(
            Problem(anchor.id, "anchor", f"the anchor's row is gone: deleted from {where}")
        )
    head = Anchor(prev_id, prev_hash) if prev_id else None
    return Verification(rows, head, problems)


def _link_problem(session: Session, row: AuditEntry, prev_id: int) -> Problem:
    """Why ``row`` (whose id follows ``prev_id``) does not link to that row."""
    linked = session.scalar(select(AuditEntry.id).where(AuditEntry.hash == row.prev_hash))
    if linked is not None:
        return Problem(
            row.id,
            "fork",
            f"inserted out of chain: it links to row {linked}, not to row {prev_id} (a fork)",
        )
    before = f"row {prev_id}" if prev_id else "the chain's origin"
    return Problem(
        row.id,
        "unlinked",
        f"does not link to {before}: that row was edited and re-hashed, or this row was "
        "inserted out of chain",
    )
