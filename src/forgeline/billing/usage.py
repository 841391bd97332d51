"""What a tenant used in a billing month, read from the usage ledger.

The ledger holds one row per billable response; reports aggregate it in the database with one
``GROUP BY`` so a month of millions of calls never crosses into Python row by row. ``calls`` and
``units`` differ on purpose: one call may predict many inputs, and the unit is what is billed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from forgeline.db import Database
from forgeline.db.tables import Tenant, UsageRecord
from forgeline.errors import ForgelineError

MONTH_PATTERN = r"^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(0[1-9]|1[0-2])$"
"""A real month written ``YYYY-MM`` (years 0001 to 9999), as the HTTP API documents it."""


def month_problem(text: str) -> str | None:
    """What is wrong with ``text`` as a month (the ledger's ``period``), or None. A lax parse
    would let '2026-1' silently match no rows and report zero usage."""
    if re.fullmatch(MONTH_PATTERN, text):
        return None
    return f"'{text}' is not a month; write YYYY-MM, e.g. 2026-11"


def parse_month(text: str) -> str:
    """``text`` if it is a real month written ``YYYY-MM``, else an error naming ``--month``."""
    problem = month_problem(text)
    if problem is not None:
        raise ForgelineError(f"--month: {problem}")
    return text


class UnknownTenant(ForgelineError):
    """No tenant has the name given."""


def find_tenant(session: Session, name: str) -> Tenant:
    """The tenant called ``name``; a typo gets the list of names rather than an empty report."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()
    if tenant is None:
        names = sorted(session.scalars(select(Tenant.name)))
        known = f"tenants: {', '.join(names)}" if names else "there are no tenants yet"
        raise UnknownTenant(f"no tenant '{name}' ({known})")
    return tenant


@dataclass(frozen=True)
class UsageRow:
    day: date
    model: str
    action: str
    calls: int
    units: int


def usage_report(db: Database, tenant: str, month: str) -> list[UsageRow]:
    """Calls and units of ``tenant`` in ``month`` per day, model and action, in that order."""
    with db.read() as session:
        tenant_id = find_tenant(session, tenant).id
        query = (
            select(
                UsageRecord.day,
                UsageRecord.model,
                UsageRecord.action,
                func.count(),
                func.sum(UsageRecord.units),
            )
            .where(UsageRecord.tenant_id == tenant_id, UsageRecord.period == month)
            .group_by(UsageRecord.day, UsageRecord.model, UsageRecord.action)
        )
        # int(): PostgreSQL's SUM may come back as a Decimal for wide integer columns.
        rows = [
            UsageRow(day=day, model=model, action=action, calls=int(calls), units=int(units))
            for day, model, action, calls, units in session.execute(query)
        ]
    # Sorted here, not with ORDER BY: PostgreSQL's locale collation orders names with '-' or '.'
    # differently from SQLite's, and a report should read the same on either database.
    return sorted(rows, key=lambda row: (row.day, row.model, row.action))
