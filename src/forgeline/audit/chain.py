"""The hash chain: how a row's hash is computed from its fields and its predecessor's hash.

A row's hash is the SHA-256 of a JSON array of its fields in a fixed order, ending with the
previous row's hash (64 zeros before the first row)::

    ["forgeline-audit-1", id, "2026-11-05T10:00:00.123456", event, actor, subject, details,
     prev_hash]

A JSON array quotes and escapes every field, so no two different rows serialize alike (plain
concatenation would let ``"ab" + "c"`` pass for ``"a" + "bc"``); ``ensure_ascii`` keeps the
bytes independent of any database's text encoding; the time is naive UTC to the microsecond,
which both SQLite and PostgreSQL store exactly. ``details`` is hashed as the JSON text stored,
so re-serializing it can never change a hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from forgeline.db.tables import AuditEntry
from forgeline.errors import ForgelineError

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row."""
_FORMAT = "forgeline-audit-1"
"""Names the serialization, so a future change of it cannot be mistaken for tampering."""
_ANCHOR = re.compile(r"([1-9][0-9]{0,18}):([0-9a-f]{64})")

DetailValue = str | int | float | bool | None | list[str]
"""What a detail may hold: ids, names, counts, flags and times, never a secret."""


class AuditError(ForgelineError):
    """A request to the audit log is malformed (a bad date, anchor or event name)."""


def details_json(details: Mapping[str, DetailValue] | None) -> str:
    """The stored (and hashed) text of ``details``: canonical JSON, keys sorted."""
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(row: AuditEntry) -> str:
    """The hash ``row`` must have, given its fields and ``prev_hash``."""
    fields = [
        _FORMAT,
        row.id,
        row.created_at.isoformat(timespec="microseconds"),
        row.event,
        row.actor,
        row.subject,
        row.details,
        row.prev_hash,
    ]
    canonical = json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """A row's id and hash written down outside the database (``forgeline audit verify``
    prints the newest). Checking the chain against it finds rows deleted from the end, and a
    chain re-hashed from the start, which the chain alone cannot show."""

    id: int
    hash: str

    def __str__(self) -> str:
        return f"{self.id}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        match = _ANCHOR.fullmatch(text.strip())
        if match is None:
            raise AuditError(
                f"--anchor: '{text}' is not an anchor; give ID:HASH as `forgeline audit "
                "verify` prints it, e.g. 42:3f1c...(64 hex digits)"
            )
        return cls(int(match.group(1)), match.group(2))
