"""Invoices per tenant and month, computed from the usage ledger and the plans in forgeline.yaml.

Money is integer minor units (cents) from the config to the output: binary floats cannot hold
0.10 exactly, and sums of them drift, so an invoice could disagree with itself by a cent. The one
division, units times a price per ``overage_per`` units, is done in integers and rounded half up
to a whole minor unit: the rule people expect on a bill (0.5 cent is a cent), where Python's
``round`` would round half to even. Rounding happens once per line, never per call, so a
million calls of a fraction of a cent each still cost what their total says.

Nothing is stored: an invoice is a pure function of the ledger and the plans, so running it
again gives the same answer, and a corrected price takes effect by re-running it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, func, select

from forgeline.billing.usage import find_tenant
from forgeline.config.service import BillingConfig, PlanConfig
from forgeline.db import Database
from forgeline.db.tables import Tenant, UsageRecord
from forgeline.errors import ForgelineError

MINOR_UNIT_DIGITS = 2
"""Decimal places of the minor unit: 4900 is 49.00. Matches how forgeline.yaml prices convert."""

CSV_COLUMNS = (
    "tenant",
    "plan",
    "month",
    "currency",
    "kind",
    "description",
    "quantity",
    "unit_price",
    "per",
    "amount",
)


@dataclass(frozen=True)
class InvoiceLine:
    kind: str  # 'subscription' | 'included' | 'overage' | 'usage'
    description: str
    quantity: int
    unit_price: int  # minor units per `per` units
    per: int
    amount: int  # minor units


@dataclass(frozen=True)
class Invoice:
    tenant: str
    plan: str
    month: str
    currency: str
    units: int  # all the tenant's units in the month, billed or not
    calls: int
    input_tokens: int  # of generation calls (part of units)
    output_tokens: int
    lines: list[InvoiceLine]
    total: int  # minor units

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "minor_unit_digits": MINOR_UNIT_DIGITS}


def half_up_divide(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, for non-negative integers, without floats."""
    return (2 * numerator + denominator) // (2 * denominator)


TOKENS_PER_PRICE = 1_000_000
"""Token prices are per million tokens."""


def invoice_lines(
    plan_name: str,
    plan: PlanConfig,
    month: str,
    units: int,
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> list[InvoiceLine]:
    """The line items of one month of ``plan`` with ``units`` used, of which ``input_tokens``
    and ``output_tokens`` were generation calls' tokens. A plan with token prices bills those
    tokens at them, and the rest of the units as units; a plan without, all as units."""
    lines: list[InvoiceLine] = []
    if plan.monthly_fee > 0:
        lines.append(
            InvoiceLine(
                "subscription",
                f"plan '{plan_name}', {month}",
                1,
                plan.monthly_fee,
                1,
                plan.monthly_fee,
            )
        )
    if plan.input_token_price is not None and plan.output_token_price is not None:
        units -= input_tokens + output_tokens
        for kind, tokens, price in (
            ("input tokens", input_tokens, plan.input_token_price),
            ("output tokens", output_tokens, plan.output_token_price),
        ):
            if tokens:
                amount = half_up_divide(tokens * price, TOKENS_PER_PRICE)
                description = f"{kind.split()[0]} tokens of generation calls"
                lines.append(
                    InvoiceLine(kind, description, tokens, price, TOKENS_PER_PRICE, amount)
                )
    if plan.included_units > 0:
        included = min(units, plan.included_units)
        description = f"units included in the plan (up to {plan.included_units})"
        lines.append(InvoiceLine("included", description, included, 0, 1, 0))
    billable = max(0, units - plan.included_units)
    # A hard cap stops calls at the included units, so there is never overage to bill; were the
    # ledger ever past the cap, the customer was promised not to pay for it.
    if billable > 0 and not plan.hard_cap:
        if plan.monthly_fee > 0 or plan.included_units > 0:
            kind, description = "overage", f"units beyond the {plan.included_units} included"
        else:
            kind, description = "usage", "units used"
        amount = half_up_divide(billable * plan.overage_price, plan.overage_per)
        lines.append(
            InvoiceLine(kind, description, billable, plan.overage_price, plan.overage_per, amount)
        )
    return lines


def build_invoices(
    db: Database, billing: BillingConfig, month: str, tenant: str | None = None
) -> list[Invoice]:
    """An invoice for each tenant (or just ``tenant``) that used the API in ``month`` or pays a
    monthly fee, sorted by tenant name."""
    query = (
        select(
            Tenant.name,
            Tenant.plan,
            func.count(UsageRecord.id),
            func.coalesce(func.sum(UsageRecord.units), 0),
            func.coalesce(func.sum(UsageRecord.input_tokens), 0),
            func.coalesce(func.sum(UsageRecord.output_tokens), 0),
        )
        .select_from(Tenant)
        # The month goes in the join, not a WHERE, so tenants without calls stay (with zeros).
        .outerjoin(
            UsageRecord, and_(UsageRecord.tenant_id == Tenant.id, UsageRecord.period == month)
        )
        .group_by(Tenant.id, Tenant.name, Tenant.plan)
    )
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    with db.read() as session:
        totals = [
            (name, plan, int(calls), int(units), int(read), int(written))
            for name, plan, calls, units, read, written in session.execute(query)
        ]
        if tenant is not None and not totals:
            find_tenant(session, tenant)  # raises, naming the tenants there are

    # Every tenant's plan must exist, with usage or not: skipping one would silently drop a fee.
    missing = [f"tenant '{t[0]}' is on plan '{t[1]}'" for t in totals if t[1] not in billing.plans]
    if missing:
        raise ForgelineError(f"{'; '.join(missing)}, which forgeline.yaml no longer defines")

    invoices = []
    for name, plan_name, calls, units, read, written in sorted(totals):
        plan = billing.plans[plan_name]
        if calls == 0 and plan.monthly_fee == 0:
            continue
        lines = invoice_lines(plan_name, plan, month, units, read, written)
        invoices.append(
            Invoice(
                tenant=name,
                plan=plan_name,
                month=month,
                currency=billing.currency,
                units=units,
                calls=calls,
                input_tokens=read,
                output_tokens=written,
                lines=lines,
                total=sum(line.amount for line in lines),
            )
        )
    return invoices


def invoices_json(invoices: list[Invoice]) -> str:
    """A JSON array of invoices; each carries its currency and ``minor_unit_digits`` so a
    reader can show 4900 as 49.00 without knowing forgeline's conventions."""
    return json.dumps([invoice.to_dict() for invoice in invoices], indent=2)


def invoices_csv(invoices: list[Invoice]) -> str:
    """One row per line item, amounts in minor units, for a spreadsheet or an accounting import."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for invoice in invoices:
        for line in invoice.lines:
            writer.writerow(
                [
                    invoice.tenant,
                    invoice.plan,
                    invoice.month,
                    invoice.currency,
                    line.kind,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.per,
                    line.amount,
                ]
            )
    return out.getvalue()
