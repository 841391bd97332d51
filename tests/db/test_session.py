from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from forgeline.db import Database, database_url
from forgeline.db.tables import Base
from forgeline.errors import ConfigError
from tests.databases import database_urls, disposable_database


@pytest.mark.parametrize("kind", database_urls())
def test_migrations_build_exactly_the_tables_the_code_declares(kind: str, tmp_path: Path) -> None:
    with disposable_database(kind, tmp_path) as url:
        db = Database(url)
        db.migrate()
        db.migrate()  # a second run finds nothing to do
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        db.dispose()
    assert differences == []


@pytest.mark.parametrize(("setting", "level"), [("normal", 1), ("full", 2)])
def test_sqlite_runs_in_wal_mode_with_the_configured_sync(
    tmp_path: Path, setting: str, level: int
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'f.db'}", setting)
    db.migrate()
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == level


def test_relative_sqlite_path_is_resolved_against_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGELINE_DATABASE_URL", raising=False)
    assert database_url("sqlite:///forgeline.db", tmp_path) == f"sqlite:///{tmp_path}/forgeline.db"
    monkeypatch.setenv("FORGELINE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url("sqlite:///forgeline.db", tmp_path) == "postgresql+psycopg://u@h/db"


def test_unsupported_or_unreachable_databases_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="use sqlite or postgresql"):
        Database("mysql://u@h/db")
    with pytest.raises(ConfigError, match="cannot open the database"):
        Database(f"sqlite:///{tmp_path}/missing-dir/x.db").migrate()
