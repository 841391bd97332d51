"""``forgeline audit``: list the audit log and verify its hash chain; and recording a model
promotion in it.

The log lives in the project's database, found as the keys commands find it (``database.url``
or ``FORGELINE_DATABASE_URL``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column as RichColumn
from rich.table import Table as RichTable
from sqlalchemy.engine import make_url

from forgeline import audit
from forgeline.audit import CLI_ACTOR, Anchor, AuditEvent
from forgeline.cli.billing import open_database
from forgeline.cli.options import ConfigOption
from forgeline.cli.output import console, err_console
from forgeline.config.load import Project
from forgeline.db import Database, database_url
from forgeline.db.session import DATABASE_URL_ENV

audit_app = typer.Typer(
    help="The audit log of security events: list it, verify its hash chain.",
    no_args_is_help=True,
)
_SHOWN_PROBLEMS = 10


@audit_app.command("list")
def audit_list(
    since: Annotated[
        str | None, typer.Option(help="From this date on: YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC).")
    ] = None,
    event: Annotated[
        str | None,
        typer.Option(help=f"Only this event: {', '.join(e.value for e in AuditEvent)}."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=audit.MAX_LIST, help="Show the newest N events.")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    config: ConfigOption = None,
) -> None:
    """Security events, newest first: key changes, refused admin requests, promotions."""
    try:
        since_at = audit.parse_since(since.strip()) if since is not None else None
    except audit.AuditError as exc:
        raise audit.AuditError(f"--since: {exc}") from None
    kind = audit.parse_event(event) if event is not None else None
    _, db = open_database(config)
    with db.read() as session:
        rows = audit.list_events(session, since=since_at, event=kind, limit=limit)
    if as_json:
        print(json.dumps([_as_json(row) for row in rows], indent=2))
        return
    table = RichTable("time (UTC)", "event", "actor", "subject", "details")
    table.columns.insert(0, RichColumn("id", justify="right", no_wrap=True))
    for row in rows:
        table.add_row(
            str(row.id),
            f"{row.time:%Y-%m-%d %H:%M:%S}",
            escape(row.event),
            escape(row.actor),
            escape(row.subject),
            escape(_describe(row.details_dict())),
        )
    console.print(table if rows else "No audit events" + (" match." if since or event else "."))


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            help="ID:HASH printed by an earlier verify: also finds rows deleted since, from the end."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check the hash chain: exit 0 if whole, 1 naming the first broken row."""
    expected = Anchor.parse(anchor) if anchor is not None else None
    _, db = open_database(config)
    with db.read() as session:
        result = audit.verify(session, expected)
    if result.ok:
        head = f"; anchor {result.head}" if result.head else ""
        console.print(f"OK: {result.rows} rows, chain intact{head}", soft_wrap=True)
        return
    first, *others = result.problems
    err_console.print(f"[red]audit log broken at {escape(str(first))}[/red]", soft_wrap=True)
    for problem in others[: _SHOWN_PROBLEMS - 1]:
        err_console.print(f"  also {escape(str(problem))}", soft_wrap=True)
    if len(result.problems) > _SHOWN_PROBLEMS or not result.complete:
        stopped = "; the check stopped there" if not result.complete else ""
        err_console.print(f"  ({len(result.problems)} problems in all{stopped})")
    raise typer.Exit(1)


def promote(project: Project, version: str) -> str:
    """Point the project model's ``latest`` at ``version`` (resolved); recorded in the
    project's database when it has one, in one transaction with the change: a promotion that
    fails is not recorded, and one that cannot be recorded is not made."""
    from forgeline.registry import ModelRegistry

    name = project.config.name
    registry = ModelRegistry(project.registry_dir)
    chosen = registry.resolve(name, version).version
    db = project_database(project)
    if db is None:
        registry.set_latest(name, chosen)
        return chosen
    previous = registry.latest(name)
    try:
        with db.write() as session:
            details = {"model": name, "version": chosen, "previous": previous}
            audit.record(session, AuditEvent.MODEL_PROMOTED, CLI_ACTOR, f"model:{name}", details)
            registry.set_latest(name, chosen)  # last: only the commit can fail after it
    except BaseException:
        if previous is not None and registry.latest(name) == chosen:
            registry.set_latest(name, previous)  # the commit failed: no unrecorded promotion
        raise
    finally:
        db.dispose()
    return chosen


def project_database(project: Project) -> Database | None:
    """The database the keys commands would use, if the project has one: one named by
    ``FORGELINE_DATABASE_URL`` or a ``database`` section, or the default SQLite file once it
    exists (a project that never made a key has no database to record into)."""
    named = bool(os.environ.get(DATABASE_URL_ENV)) or "database" in project.config.model_fields_set
    url = make_url(database_url(project.config.database.url, project.root))
    if named or (url.database and Path(url.database).is_file()):
        return Database.open(project.config.database, project.root)
    return None


def _as_json(row: audit.AuditRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": f"{row.time.isoformat(timespec='microseconds')}Z",
        "event": row.event,
        "actor": row.actor,
        "subject": row.subject,
        "details": row.details_dict(),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def _describe(details: dict[str, Any]) -> str:
    """Details as ``key=value`` pairs, lists comma-joined, empty values left out."""
    parts = []
    for key, value in details.items():
        if value is None or value == []:
            continue
        shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)
