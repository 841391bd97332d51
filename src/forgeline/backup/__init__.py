"""``forgeline backup`` and ``forgeline restore``: a project's database, model registry and
config in one archive, and back.

    summary = create_backup(project, Path("forgeline-2026-11-30.tar.zst"), secret)
    restored = restore_backup(Path("forgeline-2026-11-30.tar.zst"), target_dir, secret)

The database copy is consistent while the server runs (:mod:`.database`), every member is
hashed into the archive's manifest, and the archive may be encrypted (:mod:`.sealed_stream`).
A restore checks the whole archive before it writes anything, and refuses to replace a
database that holds data, or a registry that differs, unless forced; forced, what was there is
set aside first, never deleted. Backups and restores are written to the audit log.

Not in the archive: the data keys (``forgeline.keys``), which must be kept apart from the data
they protect (a restored server without them cannot replay the day's stored replies), and the
training data, which is the user's own. Passwords in the config's URLs are masked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from forgeline import audit
from forgeline.audit import CLI_ACTOR, AuditEvent
from forgeline.backup import database
from forgeline.backup.archive import ArchiveWriter, BackupError, VerifiedArchive, verified_archive
from forgeline.config.load import PROJECT_FILE, Project, load_project
from forgeline.credentials import hide_credentials, read_secret_file
from forgeline.db import Database

__all__ = ["BackupError", "BackupSummary", "RestoreSummary", "create_backup", "restore_backup"]

CONFIG_MEMBER = "forgeline.yaml"
MODELS = "models/"
BACKUP_KEY_ENV = "FORGELINE_BACKUP_KEY"


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    files: int
    bytes: int
    database: str
    encrypted: bool


@dataclass(frozen=True)
class RestoreSummary:
    project: Path
    models: int
    database: str
    set_aside: list[Path]


def create_backup(project: Project, output: Path, secret: str | None) -> BackupSummary:
    """Write the archive ``output``; ``secret``: encrypt it with that key."""
    if output.exists():
        raise BackupError(f"{output} exists; choose another --output (a backup never overwrites)")
    if not output.parent.is_dir():
        raise BackupError(f"--output: no such directory '{output.parent}'")
    db = Database.open(project.config.database, project.root)
    kind = database.kind(db)
    # Recorded first, so that the copy holds its own backup in its audit chain.
    with db.write() as session:
        details: dict[str, audit.DetailValue] = {"encrypted": secret is not None}
        audit.record(session, AuditEvent.BACKUP_CREATED, CLI_ACTOR, output.name[:128], details)
    writer = ArchiveWriter(output, secret)
    try:
        with tempfile.TemporaryDirectory(prefix="forgeline-backup-") as work:
            config = Path(work) / CONFIG_MEMBER
            config.write_text(hide_credentials(project.config_file.read_text(encoding="utf-8")))
            writer.add(CONFIG_MEMBER, config)
            snapshot = Path(work) / "database"
            database.snapshot(db, snapshot)
            writer.add(database.member_of(kind), snapshot)
        registry = project.registry_dir
        for path in sorted(registry.rglob("*")) if registry.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                writer.add(MODELS + path.relative_to(registry).as_posix(), path)
        writer.finish(
            {
                "project": project.config.name,
                "database": kind,
                "encrypted": secret is not None,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
    except BaseException:
        writer.abandon()
        raise
    finally:
        db.dispose()
    return BackupSummary(output, len(writer.files), output.stat().st_size, kind, secret is not None)


def restore_backup(archive: Path, target: Path, secret: str | None, force: bool) -> RestoreSummary:
    """Restore ``archive`` into the project directory ``target`` (its ``forgeline.yaml`` says
    where the database and registry go; the archive's is written there when it has none)."""
    if not archive.is_file():
        raise BackupError(f"no such archive '{archive}'")
    with verified_archive(archive, secret) as staged:
        config_file = target / PROJECT_FILE
        writes_config = not config_file.exists()
        if writes_config:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staged.path(CONFIG_MEMBER), config_file)
        try:
            return _restore_into(
                load_project(config_file, check_files=False), staged, archive, force
            )
        except BaseException:
            if writes_config:
                config_file.unlink(missing_ok=True)  # nothing else was written
            raise


def _restore_into(
    project: Project, staged: VerifiedArchive, archive: Path, force: bool
) -> RestoreSummary:
    kind = staged.manifest["database"]
    db = Database.open(project.config.database, project.root)
    if database.kind(db) != kind:
        db.dispose()
        raise BackupError(
            f"{archive.name} holds a {kind} database and this project uses {database.kind(db)}; "
            "set database.url (or FORGELINE_DATABASE_URL) to a database of the same kind"
        )
    registry = project.registry_dir
    models = staged.names(MODELS)
    registry_differs = _differs(registry, staged, models)
    held = database.holds_data(db)
    conflicts = [
        what
        for what, clash in (
            (f"the database {db.display_url} holds data", held),
            (f"the registry {registry} holds other model versions", registry_differs),
        )
        if clash
    ]
    if conflicts and not force:
        db.dispose()
        raise BackupError(
            f"not restored: {' and '.join(conflicts)}; restore into an empty project, or "
            "give --force to set what is there aside (it is kept, not deleted)"
        )
    # Everything is checked: from here on the project is written.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    set_aside = []
    if registry_differs and registry.exists():
        aside = registry.with_name(f"{registry.name}.before-restore-{stamp}")
        registry.rename(aside)
        set_aside.append(aside)
    for name in models:
        destination = registry / name.removeprefix(MODELS)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staged.path(name), destination)
    suffix = Path(database.member_of(kind)).suffix
    db_aside = project.root / f"database.before-restore-{stamp}{suffix}" if held else None
    database.restore(db, staged.path(database.member_of(kind)), db_aside)
    if db_aside is not None:
        set_aside.append(db_aside)
    restored = Database.open(project.config.database, project.root)  # migrated to this version
    try:
        with restored.write() as session:
            details: dict[str, audit.DetailValue] = {
                "backup_created_at": str(staged.manifest.get("created_at", "")),
                "sha256": _sha256(archive),
                "forced": bool(conflicts),
            }
            audit.record(
                session, AuditEvent.BACKUP_RESTORED, CLI_ACTOR, archive.name[:128], details
            )
    finally:
        restored.dispose()
    return RestoreSummary(project.root, _versions(models), kind, set_aside)


def _differs(registry: Path, staged: VerifiedArchive, models: list[str]) -> bool:
    """Whether the registry holds anything the archive would change or not have."""
    present = {
        MODELS + path.relative_to(registry).as_posix()
        for path in (registry.rglob("*") if registry.is_dir() else [])
        if path.is_file()
    }
    if not present:
        return False
    if present != set(models):
        return True
    return any(
        _sha256(registry / name.removeprefix(MODELS)) != staged.manifest["files"][name]["sha256"]
        for name in models
    )


def _versions(models: list[str]) -> int:
    return len({tuple(name.split("/")[1:3]) for name in models if name.count("/") >= 3})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def backup_secret(key_file: Path | None, wanted: bool) -> str | None:
    """The archive's key: from ``key_file``, else ``$FORGELINE_BACKUP_KEY``; None when the
    archive is not to be encrypted (``wanted`` False and no key given)."""
    if key_file is not None:
        secret = read_secret_file(key_file, "backup key")
    elif os.environ.get(BACKUP_KEY_ENV, "").strip():
        secret = os.environ[BACKUP_KEY_ENV].strip()
    elif wanted:
        raise BackupError(
            f"--encrypt needs a key: set {BACKUP_KEY_ENV} or give --key-file (at least 32 "
            "characters; keep it apart from the archive)"
        )
    else:
        return None
    if len(secret) < 32:
        raise BackupError(f"the backup key has {len(secret)} characters; use at least 32")
    return secret
