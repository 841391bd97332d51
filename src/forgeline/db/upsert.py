"""Insert a row unless its key exists, portably across SQLite and PostgreSQL.

A plain INSERT that fails would abort the whole PostgreSQL transaction, so conflicts are
resolved in the statement (``ON CONFLICT``). RETURNING tells reliably whether the row went in;
rowcount after ON CONFLICT does not (psycopg reports 1 for a skipped row).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from forgeline.db.tables import Base


def insert_ignoring_conflict(
    connection: Connection,
    table: type[Base],
    overwrite_where: ColumnElement[bool] | None = None,
    **values: Any,
) -> bool:
    """Insert a row unless its key exists (then overwrite it where ``overwrite_where`` holds,
    e.g. an expired row); whether the row was written."""
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    core_table = cast(Table, table.__table__)
    statement = dialect_insert(core_table).values(**values)
    keys = list(core_table.primary_key.columns)
    if overwrite_where is None:
        statement = statement.on_conflict_do_nothing()
    else:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_=values, where=overwrite_where
        )
    return connection.execute(statement.returning(keys[0])).first() is not None
