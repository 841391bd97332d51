"""``forgeline keys``, ``forgeline usage`` and ``forgeline billing``: the API product's CLI.

The same operations as the admin HTTP API (:mod:`forgeline.serve.admin`), on the database in
forgeline.yaml (``database.url``) or ``FORGELINE_DATABASE_URL``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Column as RichColumn
from rich.table import Table as RichTable

from forgeline.billing.invoices import build_invoices, invoices_csv, invoices_json
from forgeline.billing.keys import KeyInfo, KeyStore, duration, utcnow
from forgeline.billing.usage import parse_month, usage_report
from forgeline.cli.options import ConfigOption
from forgeline.cli.output import console, err_console, warn
from forgeline.config.load import Project, load_project
from forgeline.db import Database

keys_app = typer.Typer(help="Create, list, revoke and rotate API keys.", no_args_is_help=True)
billing_app = typer.Typer(help="Invoices from the usage ledger.", no_args_is_help=True)


def open_database(config: Path | None) -> tuple[Project, Database]:
    """The project and its database (``database.url`` or ``FORGELINE_DATABASE_URL``)."""
    project = load_project(config, check_files=False)
    return project, Database.open(project.config.database, project.root)


def _key_store(config: Path | None) -> tuple[Project, KeyStore]:
    project, db = open_database(config)
    return project, KeyStore(db, project.config.billing.plans)


def _split(value: str | None) -> list[str] | None:
    """A comma-separated option as a list; None only when the option was not given, so that
    ``--models ""`` is refused as an empty scope instead of widening to every model."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _print_new_key(token: str, info: KeyInfo) -> None:
    # The key alone on stdout, so `KEY=$(forgeline keys create ...)` captures just it.
    who = f"tenant {info.tenant} (plan {info.plan})" if info.tenant else "admin"
    err_console.print(
        f"Created key {info.id} for {who}. It is shown only now; store it somewhere safe:"
    )
    print(token)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="The customer the key bills to.")] = None,
    plan: Annotated[
        str | None, typer.Option(help="The tenant's plan (billing.plans), for a new tenant.")
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may use (default: all).")
    ] = None,
    actions: Annotated[
        str | None,
        typer.Option(help="Comma-separated actions: predict, explain, generate (default: all)."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An admin key (no tenant).")] = False,
    expires_in_days: Annotated[
        float | None,
        typer.Option(min=0.001, max=3650, help="The key stops working after this."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it (once: only its hash is stored)."""
    project, keys = _key_store(config)
    wanted = _split(models)
    if wanted:
        from forgeline.registry import ModelRegistry

        served = set(ModelRegistry(project.registry_dir).names())
        for name in sorted(set(wanted) - served):
            warn(f"model '{name}' is not in {project.registry_dir} (yet)")
    expires = utcnow() + duration(days=expires_in_days) if expires_in_days else None
    token, info = keys.create(
        tenant=tenant,
        plan=plan,
        models=wanted,
        actions=_split(actions),
        admin=admin,
        expires_at=expires,
    )
    _print_new_key(token, info)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    config: ConfigOption = None,
) -> None:
    """List keys (never the keys themselves: only their ids)."""
    _, keys = _key_store(config)
    now = utcnow()
    table = RichTable("tenant", "plan", "models", "actions", "status", "created", "expires")
    table.columns.insert(0, RichColumn("id", no_wrap=True))
    for info in keys.list(tenant):
        table.add_row(
            info.id,
            info.tenant or "(admin)",
            info.plan or "",
            ",".join(info.models),
            ",".join(info.actions) or "admin",
            info.status(now),
            f"{info.created_at:%Y-%m-%d %H:%M}",
            f"{info.expires_at:%Y-%m-%d %H:%M}" if info.expires_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, from `forgeline keys list`.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key: running servers refuse it within a second."""
    _, keys = _key_store(config)
    info = keys.revoke(key_id)
    console.print(f"Revoked key {info.id} ({info.tenant or 'admin'}).")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id, from `forgeline keys list`.")],
    overlap_hours: Annotated[
        float, typer.Option(min=0, max=87_600, help="How long the old key keeps working.")
    ] = 24,
    config: ConfigOption = None,
) -> None:
    """Make a new key with the same tenant and scopes; the old one expires after the overlap."""
    _, keys = _key_store(config)
    token, info = keys.rotate(key_id, duration(hours=overlap_hours))
    err_console.print(f"Key {key_id} keeps working for {overlap_hours:g} h.")
    _print_new_key(token, info)


def usage(
    tenant: Annotated[str, typer.Option(help="The tenant.")],
    month: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Calls and units per model and day of one tenant's month."""
    _, db = open_database(config)
    rows = usage_report(db, tenant, parse_month(month))
    if as_json:
        print(json.dumps([{**row.__dict__, "day": row.day.isoformat()} for row in rows], indent=2))
        return
    table = RichTable("day", "model", "action", "calls", "units", title=f"{tenant}, {month}")
    for row in rows:
        table.add_row(row.day.isoformat(), row.model, row.action, str(row.calls), str(row.units))
    table.add_row("total", "", "", str(sum(r.calls for r in rows)), str(sum(r.units for r in rows)))
    console.print(table)


@billing_app.command("invoice")
def billing_invoice(
    month: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    output_format: Annotated[
        Literal["table", "json", "csv"], typer.Option("--format", help="table, json or csv.")
    ] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
    config: ConfigOption = None,
) -> None:
    """Invoices of a month: subscription, included units, overage, total."""
    project, db = open_database(config)
    invoices = build_invoices(db, project.config.billing, parse_month(month), tenant)
    if output_format == "table":
        text = None
        for invoice in invoices:
            table = RichTable(
                "item", "quantity", "amount", title=f"{invoice.tenant} ({invoice.plan}), {month}"
            )
            for line in invoice.lines:
                table.add_row(line.description, str(line.quantity), _money(line.amount))
            table.add_row(
                "total", f"{invoice.units} units", _money(invoice.total, invoice.currency)
            )
            console.print(table)
        if not invoices:
            console.print(f"No invoices for {month}.")
    else:
        text = invoices_json(invoices) if output_format == "json" else invoices_csv(invoices)
    if text is not None:
        if output is not None:
            output.write_text(text, encoding="utf-8")
            err_console.print(f"Wrote {len(invoices)} invoices to {output}")
        else:
            print(text, end="" if text.endswith("\n") else "\n")


def _money(minor: int, currency: str = "") -> str:
    return f"{minor // 100}.{minor % 100:02d}" + (f" {currency}" if currency else "")
