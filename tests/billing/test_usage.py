"""Usage reports: grouping of the ledger per day, model and action, and month parsing."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime

import pytest

from forgeline.billing.usage import UsageRow, parse_month, usage_report
from forgeline.db import Database
from forgeline.db.tables import Tenant, UsageRecord
from forgeline.errors import ForgelineError


def _tenant(db: Database, name: str, plan: str = "pro") -> int:
    with db.write() as session:
        row = Tenant(name=name, plan=plan, created_at=datetime(2026, 1, 1))
        session.add(row)
        session.flush()
        return row.id


def _use(db: Database, tenant_id: int, day: date, model: str, action: str, units: int) -> None:
    with db.write() as session:
        session.add(
            UsageRecord(
                request_id=uuid.uuid4().hex,
                key_id="k1",
                tenant_id=tenant_id,
                model=model,
                action=action,
                units=units,
                created_at=datetime(day.year, day.month, day.day, 12),
                period=day.strftime("%Y-%m"),
                day=day,
            )
        )


def test_groups_per_day_model_and_action_counting_calls_and_units(db: Database) -> None:
    acme = _tenant(db, "acme")
    nov2, nov3 = date(2026, 11, 2), date(2026, 11, 3)
    _use(db, acme, nov3, "intent", "predict", 1)
    _use(db, acme, nov2, "intent", "predict", 5)
    _use(db, acme, nov2, "intent", "predict", 3)
    _use(db, acme, nov2, "intent", "explain", 2)
    _use(db, acme, nov2, "credit", "predict", 7)

    assert usage_report(db, "acme", "2026-11") == [
        UsageRow(nov2, "credit", "predict", calls=1, units=7),
        UsageRow(nov2, "intent", "explain", calls=1, units=2),
        UsageRow(nov2, "intent", "predict", calls=2, units=8),
        UsageRow(nov3, "intent", "predict", calls=1, units=1),
    ]


def test_only_the_month_and_tenant_asked_for(db: Database) -> None:
    acme, other = _tenant(db, "acme"), _tenant(db, "other")
    _use(db, acme, date(2026, 10, 31), "intent", "predict", 100)
    _use(db, acme, date(2026, 11, 1), "intent", "predict", 4)
    _use(db, acme, date(2026, 12, 1), "intent", "predict", 100)
    _use(db, other, date(2026, 11, 1), "intent", "predict", 100)

    report = usage_report(db, "acme", "2026-11")
    assert report == [UsageRow(date(2026, 11, 1), "intent", "predict", calls=1, units=4)]
    assert all(isinstance(r.calls, int) and isinstance(r.units, int) for r in report)
    assert usage_report(db, "acme", "2026-09") == []


def test_unknown_tenant_names_the_known_ones(db: Database) -> None:
    _tenant(db, "beta")
    _tenant(db, "acme")
    with pytest.raises(ForgelineError, match=r"no tenant 'acne' \(tenants: acme, beta\)"):
        usage_report(db, "acne", "2026-11")


@pytest.mark.parametrize("text", ["2026-11", "1999-01", "2030-12"])
def test_parse_month_accepts_real_months(text: str) -> None:
    assert parse_month(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-11",
        "2026/11",
        "",
        "0000-05",
        "2026-11\n",
        "\uff12\uff10\uff12\uff16-11",
    ],
)
def test_parse_month_refuses_anything_else(text: str) -> None:
    with pytest.raises(ForgelineError, match=f"--month: '{re.escape(text)}' is not a month"):
        parse_month(text)
