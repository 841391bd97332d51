"""Invoices: line items per kind of plan, half-up rounding in integer minor units, which tenants
are invoiced, reconciliation with the ledger, and the JSON and CSV exports."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from forgeline.billing.invoices import (
    CSV_COLUMNS,
    MINOR_UNIT_DIGITS,
    Invoice,
    InvoiceLine,
    build_invoices,
    invoice_lines,
    invoices_csv,
    invoices_json,
)
from forgeline.config.service import BillingConfig, PlanConfig
from forgeline.db import Database
from forgeline.db.tables import Tenant, UsageRecord
from forgeline.errors import ForgelineError

MONTH = "2026-11"
FREE = PlanConfig.model_validate({"included_units": 1000, "hard_cap": True})
PRO = PlanConfig.model_validate(
    {
        "monthly_fee": "49.00",
        "included_units": 100_000,
        "overage_price": "0.50",
        "overage_per": 1000,
    }
)
PAYG = PlanConfig.model_validate({"overage_price": "2.00", "overage_per": 1000})
BILLING = BillingConfig(currency="EUR", plans={"free": FREE, "pro": PRO, "payg": PAYG})


def _tenant(db: Database, name: str, plan: str) -> int:
    with db.write() as session:
        row = Tenant(name=name, plan=plan, created_at=datetime(2026, 1, 1))
        session.add(row)
        session.flush()
        return row.id


def _use(db: Database, tenant_id: int, units: int, month: str = MONTH, calls: int = 1) -> None:
    """``calls`` ledger rows in ``month`` adding up to ``units`` (the first row takes the rest)."""
    year, mon = map(int, month.split("-"))
    day = date(year, mon, 15)
    share = [units // calls] * calls
    share[0] += units - sum(share)
    with db.write() as session:
        for part in share:
            session.add(
                UsageRecord(
                    request_id=uuid.uuid4().hex,
                    key_id="k1",
                    tenant_id=tenant_id,
                    model="intent",
                    action="predict",
                    units=part,
                    created_at=datetime(year, mon, 15, 12),
                    period=month,
                    day=day,
                )
            )


def _only(invoices: list[Invoice], tenant: str) -> Invoice:
    [invoice] = [i for i in invoices if i.tenant == tenant]
    return invoice


def _overage(units: int) -> int:
    lines = invoice_lines("pro", PRO, MONTH, units)
    return sum(line.amount for line in lines if line.kind == "overage")


def test_prices_are_integer_minor_units() -> None:
    assert (PRO.monthly_fee, PRO.overage_price, PAYG.overage_price) == (4900, 50, 200)
    assert PlanConfig.model_validate({"monthly_fee": "1"}).monthly_fee == 10**MINOR_UNIT_DIGITS


@pytest.mark.parametrize(
    ("units", "cents"),
    [
        (100_000, 0),  # all included
        (100_001, 0),  # 0.05 cent
        (100_009, 0),  # 0.45 cent
        (100_010, 1),  # 0.5 cent exactly: half up (round-half-even would give 0)
        (100_030, 2),  # 1.5 cents
        (100_999, 50),  # 49.95 cents
        (101_000, 50),
        (1_100_000, 50_000),  # a million units over: 500.00
    ],
)
def test_pro_overage_rounds_half_up_to_a_whole_minor_unit(units: int, cents: int) -> None:
    assert _overage(units) == cents


def test_pro_invoice_has_fee_included_and_overage_lines(db: Database) -> None:
    _use(db, _tenant(db, "acme", "pro"), 100_999, calls=3)
    [invoice] = build_invoices(db, BILLING, MONTH)
    assert invoice == Invoice(
        tenant="acme",
        plan="pro",
        month=MONTH,
        currency="EUR",
        units=100_999,
        calls=3,
        input_tokens=0,
        output_tokens=0,
        lines=[
            InvoiceLine("subscription", "plan 'pro', 2026-11", 1, 4900, 1, 4900),
            InvoiceLine("included", "units included in the plan (up to 100000)", 100_000, 0, 1, 0),
            InvoiceLine("overage", "units beyond the 100000 included", 999, 50, 1000, 50),
        ],
        total=4950,
    )


def test_free_hard_capped_plan_never_bills_overage(db: Database) -> None:
    _use(db, _tenant(db, "small", "free"), 800)
    _use(db, _tenant(db, "over", "free"), 1200)  # past the cap, which the server should refuse
    invoices = build_invoices(db, BILLING, MONTH)
    assert [i.tenant for i in invoices] == ["over", "small"]
    assert _only(invoices, "small").lines == [
        InvoiceLine("included", "units included in the plan (up to 1000)", 800, 0, 1, 0)
    ]
    over = _only(invoices, "over")
    assert [line.kind for line in over.lines] == ["included"]
    assert (over.units, over.lines[0].quantity, over.total) == (1200, 1000, 0)


def test_pay_per_use_plan_bills_every_unit(db: Database) -> None:
    _use(db, _tenant(db, "meter", "payg"), 1250, calls=2)
    [invoice] = build_invoices(db, BILLING, MONTH)
    assert invoice.lines == [InvoiceLine("usage", "units used", 1250, 200, 1000, 250)]
    assert (invoice.total, invoice.calls) == (250, 2)


def test_subscriber_without_usage_pays_the_fee_and_free_idle_tenants_get_nothing(
    db: Database,
) -> None:
    _tenant(db, "quiet", "pro")
    _tenant(db, "idle-free", "free")
    _tenant(db, "idle-payg", "payg")
    _use(db, _tenant(db, "busy", "payg"), 10, month="2026-10")  # another month only
    [invoice] = build_invoices(db, BILLING, MONTH)
    assert (invoice.tenant, invoice.units, invoice.calls, invoice.total) == ("quiet", 0, 0, 4900)
    assert [line.kind for line in invoice.lines] == ["subscription", "included"]


def test_one_tenant_and_unknown_tenant(db: Database) -> None:
    _use(db, _tenant(db, "acme", "payg"), 500)
    _use(db, _tenant(db, "beta", "payg"), 700)
    [invoice] = build_invoices(db, BILLING, MONTH, tenant="beta")
    assert (invoice.tenant, invoice.total) == ("beta", 140)
    assert build_invoices(db, BILLING, "2026-12", tenant="beta") == []
    with pytest.raises(ForgelineError, match=r"no tenant 'gamma' \(tenants: acme, beta\)"):
        build_invoices(db, BILLING, MONTH, tenant="gamma")


def test_plan_missing_from_config_is_an_error(db: Database) -> None:
    _tenant(db, "acme", "gold")
    _use(db, _tenant(db, "beta", "payg"), 10)
    with pytest.raises(
        ForgelineError,
        match=r"^tenant 'acme' is on plan 'gold', which forgeline.yaml no longer defines$",
    ):
        build_invoices(db, BILLING, MONTH)
    [invoice] = build_invoices(db, BILLING, MONTH, tenant="beta")  # the others still bill
    assert invoice.tenant == "beta"


def test_invoice_units_reconcile_with_the_ledger(db: Database) -> None:
    for name, plan, units, calls in [
        ("a", "pro", 123_456, 7),
        ("b", "free", 999, 3),
        ("c", "payg", 1, 1),
        ("d", "payg", 31_337, 5),
    ]:
        tenant_id = _tenant(db, name, plan)
        _use(db, tenant_id, units, calls=calls)
        _use(db, tenant_id, 50, month="2026-10", calls=2)
    invoices = build_invoices(db, BILLING, MONTH)
    with db.read() as session:
        ledger_units = session.scalar(
            select(func.sum(UsageRecord.units)).where(UsageRecord.period == MONTH)
        )
        ledger_calls = session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.period == MONTH)
        )
    assert sum(i.units for i in invoices) == ledger_units == 123_456 + 999 + 1 + 31_337
    assert sum(i.calls for i in invoices) == ledger_calls == 16
    for invoice in invoices:
        assert invoice.total == sum(line.amount for line in invoice.lines)
        assert type(invoice.units) is int and type(invoice.calls) is int
        assert type(invoice.total) is int
        for line in invoice.lines:
            assert all(type(v) is int for v in (line.quantity, line.unit_price, line.per))
            assert type(line.amount) is int


def test_json_round_trip_keeps_integer_minor_units(db: Database) -> None:
    _use(db, _tenant(db, "acme", "pro"), 100_010)
    _use(db, _tenant(db, "meter", "payg"), 1250)
    invoices = build_invoices(db, BILLING, MONTH)
    data = json.loads(invoices_json(invoices))
    assert data == [invoice.to_dict() for invoice in invoices]
    assert [(d["tenant"], d["total"], d["currency"]) for d in data] == [
        ("acme", 4901, "EUR"),
        ("meter", 250, "EUR"),
    ]
    assert all(d["minor_unit_digits"] == MINOR_UNIT_DIGITS == 2 for d in data)
    amounts = [d["total"] for d in data] + [
        x for d in data for ln in d["lines"] for x in ln.values()
    ]
    assert not any(isinstance(x, float) for x in amounts)
    assert invoices_json([]) == "[]"


def test_csv_has_one_row_per_line_item(db: Database) -> None:
    _use(db, _tenant(db, "acme", "pro"), 101_000)
    _use(db, _tenant(db, "meter", "payg"), 1250)
    text = invoices_csv(build_invoices(db, BILLING, MONTH))
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert tuple(header) == CSV_COLUMNS
    assert rows == [
        [
            "acme",
            "pro",
            MONTH,
            "EUR",
            "subscription",
            "plan 'pro', 2026-11",
            "1",
            "4900",
            "1",
            "4900",
        ],
        [
            "acme",
            "pro",
            MONTH,
            "EUR",
            "included",
            "units included in the plan (up to 100000)",
            "100000",
            "0",
            "1",
            "0",
        ],
        [
            "acme",
            "pro",
            MONTH,
            "EUR",
            "overage",
            "units beyond the 100000 included",
            "1000",
            "50",
            "1000",
            "50",
        ],
        ["meter", "payg", MONTH, "EUR", "usage", "units used", "1250", "200", "1000", "250"],
    ]
    assert invoices_csv([]) == ",".join(CSV_COLUMNS) + "\n"


def test_a_plan_with_token_prices_bills_generated_tokens_at_them() -> None:
    """Generation calls' tokens are billed per million at the plan's token prices, apart from
    the units of other calls (which the plan's included units and overage cover)."""
    plan = PlanConfig(
        monthly_fee="10.00",
        included_units=100,
        overage_price="1.00",
        overage_per=100,
        input_token_price="0.20",
        output_token_price="0.60",
    )
    lines = invoice_lines("chat", plan, "2026-11", 2_500_350, 1_500_000, 1_000_000)
    assert lines == [
        InvoiceLine("subscription", "plan 'chat', 2026-11", 1, 1000, 1, 1000),
        InvoiceLine(
            "input tokens", "input tokens of generation calls", 1_500_000, 20, 1_000_000, 30
        ),
        InvoiceLine(
            "output tokens", "output tokens of generation calls", 1_000_000, 60, 1_000_000, 60
        ),
        InvoiceLine("included", "units included in the plan (up to 100)", 100, 0, 1, 0),
        InvoiceLine("overage", "units beyond the 100 included", 250, 100, 100, 250),
    ]


def test_token_prices_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="give both input_token_price and output_token_price"):
        PlanConfig(input_token_price="0.20")
