"""`forgeline backup` and `restore` of a project: its database (SQLite, and PostgreSQL when one
answers), registry and config, round trip and refusals; and a backup taken while calls are
being recorded restores to a ledger that reconciles with its invoices."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from forgeline import audit
from forgeline.backup import BackupError, backup_secret, create_backup, restore_backup
from forgeline.backup.archive import verified_archive
from forgeline.billing.invoices import build_invoices
from forgeline.billing.keys import KeyStore, utcnow
from forgeline.billing.ledger import UsageLedger
from forgeline.billing.records import StoredResponse, Usage
from forgeline.config import load_project
from forgeline.config.load import Project
from forgeline.db import Database
from forgeline.db.tables import ApiKey, UsageCounter, UsageRecord
from tests.conftest import write_project
from tests.databases import POSTGRES_URL, database_urls, disposable_database

SECRET = "b" * 40


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:///forgeline.db"  # relative: each project directory has its own
        return
    with disposable_database("postgresql", tmp_path) as url:
        yield url


def _project(root: Path, url: str, extra: str = "") -> Project:
    yaml = (
        "name: demo\ntask: text-classification\ndata:\n  train: data/train.csv\n"
        f"database:\n  url: '{url}'\n"
        "billing:\n  plans:\n    capped: {included_units: 1000000, hard_cap: true}\n" + extra
    )
    config = write_project(root, yaml, {"data/train.csv": "text,label\na,x\nb,y\n"})
    for name, content in {"demo/v1/model.json": '{"w": 1}', "demo/LATEST": "v1\n"}.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "models" / name).write_text(content)
    return load_project(config, check_files=False)


def _open(project: Project) -> Database:
    return Database.open(project.config.database, project.root)


def _with_a_key(project: Project) -> None:
    db = _open(project)
    KeyStore(db, project.config.billing.plans).create(tenant="acme", plan="capped")
    db.dispose()


def _wipe(url: str, root: Path) -> None:
    """The disaster: the database is gone (a new, empty one in its place)."""
    if url.startswith("sqlite"):
        for path in root.glob("forgeline.db*"):
            path.unlink()
        return
    schema = url.rsplit("%3D", 1)[1]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()


def _events(db: Database) -> list[str]:
    with db.read() as session:
        return [r.event for r in reversed(audit.list_events(session, limit=100))]


def test_a_backup_restores_the_database_registry_and_config(
    tmp_path: Path, database_url: str
) -> None:
    project = _project(tmp_path / "shop", database_url)
    _with_a_key(project)
    archive = tmp_path / "backup.tar.zst"
    summary = create_backup(project, archive, None)
    assert summary.files == 4 and not summary.encrypted  # config, database, two model files
    _wipe(database_url, project.root)
    target = tmp_path / "shop" if database_url.startswith("postgresql") else tmp_path / "new"
    if target.exists():
        (target / "forgeline.yaml").unlink()  # a new machine: nothing but the archive
        for path in (target / "models").rglob("*"):
            if path.is_file():
                path.unlink()
    restored = restore_backup(archive, target, None, force=False)
    assert restored.models == 1 and not restored.set_aside
    assert (target / "models/demo/v1/model.json").read_text() == '{"w": 1}'
    assert "name: demo" in (target / "forgeline.yaml").read_text()
    db = _open(load_project(target / "forgeline.yaml", check_files=False))
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
        assert audit.verify(session).problems == []
    assert _events(db) == ["key.created", "backup.created", "backup.restored"]
    db.dispose()


def test_an_encrypted_backup_needs_its_key(tmp_path: Path) -> None:
    project = _project(tmp_path / "shop", "sqlite:///forgeline.db")
    archive = tmp_path / "backup.tar.zst"
    create_backup(project, archive, SECRET)
    assert b"name: demo" not in archive.read_bytes()
    with pytest.raises(BackupError, match="is encrypted: give its key"):
        restore_backup(archive, tmp_path / "new", None, force=False)
    assert not (tmp_path / "new").exists()
    restore_backup(archive, tmp_path / "new", SECRET, force=False)
    assert (tmp_path / "new/models/demo/LATEST").read_text() == "v1\n"


def test_a_corrupted_archive_writes_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path / "shop", "sqlite:///forgeline.db")
    archive = tmp_path / "backup.tar.zst"
    create_backup(project, archive, None)
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0x55
    archive.write_bytes(bytes(blob))
    (tmp_path / "new").mkdir()
    with pytest.raises(BackupError, match="refused"):
        restore_backup(archive, tmp_path / "new", None, force=False)
    assert list((tmp_path / "new").iterdir()) == []


def test_a_database_with_data_or_another_registry_is_only_replaced_when_forced(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "shop", "sqlite:///forgeline.db")
    _with_a_key(project)
    archive = tmp_path / "backup.tar.zst"
    create_backup(project, archive, None)
    _with_a_key(project)  # a second key after the backup: restoring would lose it
    (project.root / "models/demo/v2").mkdir()
    (project.root / "models/demo/v2/model.json").write_text('{"w": 2}')
    with pytest.raises(BackupError, match=r"holds data and the registry .* other model versions"):
        restore_backup(archive, project.root, None, force=False)
    assert (project.root / "models/demo/v2/model.json").exists()
    restored = restore_backup(archive, project.root, None, force=True)
    registry_aside, database_aside = restored.set_aside
    assert (registry_aside / "demo/v2/model.json").read_text() == '{"w": 2}'
    assert not (project.root / "models/demo/v2").exists()
    kept = Database(f"sqlite:///{database_aside}")
    with kept.read() as session:  # what was there is kept whole
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 2
    kept.dispose()
    db = _open(project)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
    assert _events(db)[-1] == "backup.restored"
    db.dispose()


def test_passwords_in_the_config_are_masked_in_the_archive(tmp_path: Path) -> None:
    redis = "redis:\n  url: redis://:hunter2-secret@cache.internal:6379/0\n"
    project = _project(tmp_path / "shop", "sqlite:///forgeline.db", redis)
    archive = tmp_path / "backup.tar.zst"
    create_backup(project, archive, None)
    with verified_archive(archive, None) as staged:
        config = staged.path("forgeline.yaml").read_text()
    assert "hunter2" not in config and "redis://:***@cache.internal:6379/0" in config


def test_the_key_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGELINE_BACKUP_KEY", raising=False)
    assert backup_secret(None, False) is None
    with pytest.raises(BackupError, match="--encrypt needs a key"):
        backup_secret(None, True)
    (tmp_path / "key").write_text("short\n")
    (tmp_path / "key").chmod(0o600)
    with pytest.raises(BackupError, match="has 5 characters"):
        backup_secret(tmp_path / "key", True)
    monkeypatch.setenv("FORGELINE_BACKUP_KEY", SECRET)
    assert backup_secret(None, False) == SECRET


def test_a_backup_under_load_restores_to_a_ledger_that_reconciles(
    tmp_path: Path, database_url: str
) -> None:
    """Calls are recorded while the backup is taken: the copy is one moment of the ledger, so
    each capped tenant's counter equals the sum of its records, and the invoice bills them."""
    project = _project(tmp_path / "shop", database_url)
    db = _open(project)
    _, key = KeyStore(db, project.config.billing.plans).create(tenant="acme", plan="capped")
    with db.read() as session:
        tenant_id = session.scalar(select(ApiKey.tenant_id))
    assert tenant_id is not None
    ledger = UsageLedger(db)
    ledger.start()
    stop = threading.Event()

    def load() -> None:
        async def calls() -> None:
            while not stop.is_set():
                batch = [
                    Usage(
                        uuid.uuid4().hex, key.id, tenant_id, "demo", "predict", 3, utcnow(), 10**6
                    )
                    for _ in range(20)
                ]
                await asyncio.gather(
                    *(ledger.record(u, StoredResponse(200, b"{}", u.request_id)) for u in batch)
                )

        asyncio.run(calls())

    worker = threading.Thread(target=load)
    worker.start()
    try:
        while True:  # some calls before the backup, more during and after it
            with db.read() as session:
                if (session.scalar(select(func.count()).select_from(UsageRecord)) or 0) >= 200:
                    break
        archive = tmp_path / "backup.tar.zst"
        create_backup(project, archive, None)
    finally:
        stop.set()
        worker.join()
        ledger.close()
    with db.read() as session:
        recorded_at_end = session.scalar(select(func.count()).select_from(UsageRecord))
    db.dispose()
    _wipe(database_url, project.root)
    for path in (project.root / "models").rglob("*"):
        if path.is_file():
            path.unlink()
    restore_backup(archive, project.root, None, force=False)
    restored = _open(project)
    month = utcnow().strftime("%Y-%m")
    with restored.read() as session:
        records = session.scalar(select(func.count()).select_from(UsageRecord))
        units = session.scalar(select(func.sum(UsageRecord.units)))
        counted = session.scalar(select(UsageCounter.units).where(UsageCounter.period == month))
    assert records is not None and 200 <= records <= (recorded_at_end or 0)
    assert counted == units == 3 * records
    [invoice] = build_invoices(restored, project.config.billing, month)
    assert (invoice.calls, invoice.units) == (records, units)
    restored.dispose()
