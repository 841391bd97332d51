"""The databases tests run against: a SQLite file always, PostgreSQL when one answers.

Each PostgreSQL test gets a schema of its own (through ``search_path``), dropped afterwards, so
tests neither see each other's rows nor leave tables behind in the shared ``test`` database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

POSTGRES_URL = os.environ.get(
    "FORGELINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except (OperationalError, ModuleNotFoundError):
        return False


_POSTGRES = postgres_available()


def database_urls() -> list[Any]:
    """Parameters for a fixture: ``sqlite`` and ``postgresql`` (skipped when absent)."""
    return [
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not _POSTGRES, reason=f"no PostgreSQL at {POSTGRES_URL}"),
        ),
    ]


@contextmanager
def disposable_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of ``kind``, removed when the block ends."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'forgeline.db'}"
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
