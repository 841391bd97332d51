"""One :class:`Database` per process: the engine, its sessions and its migrations.

SQLite (the default) runs in WAL mode so readers never wait for the ledger writer. With
``synchronous=NORMAL`` (the default, SQLite's advice for WAL) a commit survives any crash or
kill of the process, which is what the ledger's crash test checks; ``FULL`` also survives a
power loss, at an fsync per (group) commit. PostgreSQL commits are durable either way. Write transactions start
with ``BEGIN IMMEDIATE`` to take SQLite's write lock up front: a deferred transaction that reads
and then writes can fail with "database is locked" when another process writes in between.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from forgeline.config.service import DatabaseConfig
from forgeline.credentials import redact_url
from forgeline.errors import ConfigError
from forgeline.privacy.sealing import KeyRing, load_key_ring

MIGRATIONS = Path(__file__).parent / "migrations"
DATABASE_URL_ENV = "FORGELINE_DATABASE_URL"
log = logging.getLogger("forgeline.db")


def database_url(configured: str, root: Path) -> str:
    """The URL to use: ``FORGELINE_DATABASE_URL`` if set, with a relative SQLite path resolved
    against the project directory rather than wherever the command happens to run."""
    raw = os.environ.get(DATABASE_URL_ENV) or configured
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"database.url: not a database URL: '{redact_url(raw)}'") from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute():
            url = url.set(database=str(root / path))
    return url.render_as_string(hide_password=False)


class Database:
    def __init__(
        self, url: str, sqlite_synchronous: str = "normal", keys: KeyRing | None = None
    ) -> None:
        """``keys`` encrypt what is stored of requests and replies (see
        :mod:`forgeline.privacy.sealing`); by default a key that dies with the process."""
        self.url = url
        self.keys = keys or KeyRing.ephemeral()
        backend = make_url(url).get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ConfigError(f"database.url: use sqlite or postgresql, not '{backend}'")
        self.is_sqlite = backend == "sqlite"
        # hide_parameters: a failed statement's error (logged, or shown by the CLI) must not
        # carry its values: idempotency keys, stored responses with applicants' inputs.
        options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            self.engine: Engine = create_engine(url, **options)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"database.url needs the driver '{exc.name}': pip install 'forgeline[postgres]'"
            ) from None
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_synchronous.upper())
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._write_sessions = sessionmaker(self._writer_engine, expire_on_commit=False)

    @classmethod
    def open(cls, config: DatabaseConfig, root: Path) -> Database:
        """The database a project uses, migrated to the newest schema, with its data keys."""
        keys_file = config.keys_file if config.keys_file.is_absolute() else root / config.keys_file
        keys, notice = load_key_ring(config.keys_env, keys_file)
        if notice is not None:
            log.warning(notice)
        db = cls(database_url(config.url, root), config.sqlite_synchronous, keys)
        db.migrate()
        return db

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there already)."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as exc:
            raise ConfigError(f"cannot open the database {self.display_url}: {exc.orig}") from None

    @property
    def display_url(self) -> str:
        return redact_url(make_url(self.url).render_as_string(hide_password=True))

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction, committed on success and rolled back on error."""
        with self._write_sessions() as session, session.begin():
            yield session

    def write_connection(self) -> Connection:
        """A Core connection whose transactions take the write lock up front: for the ledger's
        hot path, where the ORM's unit of work would only add cost. The caller closes it."""
        return self._writer_engine.connect()

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, instead of pysqlite's own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")
