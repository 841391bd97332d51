"""A consistent copy of the database of keys, usage and audit, and putting one back.

SQLite: the online backup API copies the database in one step inside one read transaction,
so the copy is a moment of the database as it was, while the server goes on writing.
PostgreSQL: ``pg_dump`` (custom format) dumps inside one snapshot, ``pg_restore`` puts it
back; both are PostgreSQL's own client programs, given the password through ``PGPASSWORD``
(never on a command line another user can read). A URL whose ``options`` set a
``search_path`` is dumped as that schema.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

from forgeline.backup.archive import BackupError
from forgeline.credentials import hide_credentials
from forgeline.db import Database
from forgeline.db.tables import ApiKey, AuditEntry, Tenant, UsageRecord

SQLITE_MEMBER = "database/forgeline.sqlite3"
POSTGRES_MEMBER = "database/forgeline.pgdump"
_KINDS = {"sqlite": SQLITE_MEMBER, "postgresql": POSTGRES_MEMBER}


def kind(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgresql"


def member_of(database_kind: str) -> str:
    return _KINDS[database_kind]


def snapshot(db: Database, target: Path) -> None:
    """The database as it is now, in ``target``."""
    url = make_url(db.url)
    if db.is_sqlite:
        source = sqlite3.connect(_sqlite_path(url))
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)  # pages=-1: one step, so one consistent moment
        finally:
            copy.close()
            source.close()
        return
    _run_pg("pg_dump", url, ["--format=custom", "--no-owner", "--no-privileges", "-f", str(target)])


def holds_data(db: Database) -> bool:
    """Whether the database has tenants, keys, usage or audit rows that a restore would replace."""
    with db.read() as session:
        return any(
            session.scalar(select(func.count()).select_from(table)) for table in _KEPT_TABLES
        )


_KEPT_TABLES = (Tenant, ApiKey, UsageRecord, AuditEntry)


def restore(db: Database, dump: Path, set_aside: Path | None) -> None:
    """Replace the database's contents with ``dump``; with ``set_aside``, the contents it had
    are copied there first."""
    url = make_url(db.url)
    if set_aside is not None:
        snapshot(db, set_aside)
    db.dispose()  # no pooled connection keeps reading the old pages
    if db.is_sqlite:
        source = sqlite3.connect(dump)
        target = sqlite3.connect(_sqlite_path(url))
        try:
            source.backup(target)  # page by page under the target's write lock
        finally:
            target.close()
            source.close()
        return
    options = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
    _run_pg("pg_restore", url, [*options, "--exit-on-error", str(dump)])


def _sqlite_path(url: URL) -> str:
    if not url.database or url.database == ":memory:":
        raise BackupError("database.url: an in-memory SQLite database cannot be backed up")
    return url.database


def _run_pg(program: str, url: URL, arguments: list[str]) -> None:
    executable = shutil.which(program)
    if executable is None:
        raise BackupError(
            f"{program} is not installed: backing up PostgreSQL uses its client programs "
            "(Debian/Ubuntu: apt install postgresql-client, of the server's major version)"
        )
    env = {**os.environ}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    # libpq's form of the URL: no driver name, no password, no SQLAlchemy options.
    target = url.set(drivername="postgresql", password=None, query={}).render_as_string()
    schema = _search_path_schema(url)
    command = [executable, f"--dbname={target}", *(["--schema", schema] if schema else [])]
    if program == "pg_restore":
        command = command[:2]  # the dump holds only the schema it was made of
    result = subprocess.run(
        [*command, *arguments], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BackupError(f"{program} failed: {hide_credentials(result.stderr.strip())[:2000]}")


def _search_path_schema(url: URL) -> str | None:
    options = url.query.get("options")
    text = unquote(options if isinstance(options, str) else " ".join(options or ()))
    match = re.search(r"-c\s*search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)", text)
    return match[1] if match else None
