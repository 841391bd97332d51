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


@pytest.mark.parametrize("kind", database_urls())
def test_stored_responses_move_to_their_tenant_when_migrating(kind: str, tmp_path: Path) -> None:
    """Migration 0002 keys idempotent responses by tenant: rows made under 0001 (keyed by API
    key) are kept, under their key's tenant, the earliest first when two keys clash."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import text

    from forgeline.db.session import MIGRATIONS

    with disposable_database(kind, tmp_path) as url:
        db = Database(url)
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                text(
                    "INSERT INTO tenants (id, name, plan, created_at) VALUES (1, 'acme', 'pro', :t)"
                ),
                {"t": "2026-11-01 00:00:00"},
            )
            for key, at in (("key1", "2026-11-01 10:00:00"), ("key2", "2026-11-01 09:00:00")):
                connection.execute(
                    text(
                        "INSERT INTO api_keys (id, tenant_id, secret_hash, models, actions, "
                        "is_admin, created_at) VALUES (:k, 1, 'h', '[]', '[]', false, :t)"
                    ),
                    {"k": key, "t": at},
                )
                connection.execute(
                    text(
                        "INSERT INTO idempotent_responses (key_id, idempotency_key, request_hash, "
                        "request_id, status, body, created_at) VALUES (:k, 'order-1', 'h', :r, "
                        "200, '{}', :t)"
                    ),
                    {"k": key, "r": f"request-{key}", "t": at},
                )
        db.migrate()
        with db.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT tenant_id, idempotency_key, key_id, request_id FROM idempotent_responses"
                )
            ).all()
        db.dispose()
    assert [tuple(row) for row in rows] == [(1, "order-1", "key2", "request-key2")]
