"""``forgeline audit`` and the events the CLI records, on SQLite and PostgreSQL: key commands
and `models promote` recorded, a readable list, `verify` that exits 0 on a whole chain and 1
naming the first broken row, and user mistakes that say the format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.db import Database
from forgeline.tasks.text_classification import TextClassifier
from tests.conftest import MINIMAL_YAML, write_project
from tests.databases import database_urls, disposable_database
from tests.e2e.conftest import create_key, run_cli
from tests.serve.test_app import _registry_with

PROJECT_YAML = MINIMAL_YAML + "billing:\n  plans:\n    pro: {}\n"


@pytest.fixture(params=database_urls())
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The URL of the project's database: the default SQLite file, or PostgreSQL through
    FORGELINE_DATABASE_URL (the CLI runs in a subprocess that inherits it)."""
    if request.param == "sqlite":
        monkeypatch.delenv("FORGELINE_DATABASE_URL", raising=False)
        yield f"sqlite:///{tmp_path / 'forgeline.db'}"
        return
    with disposable_database("postgresql", tmp_path) as url:
        monkeypatch.setenv("FORGELINE_DATABASE_URL", url)
        yield url


@pytest.fixture
def project(tmp_path: Path, untrained_classifier: TextClassifier) -> Path:
    write_project(tmp_path, PROJECT_YAML)
    _registry_with(tmp_path, untrained_classifier)  # v1
    _registry_with(tmp_path, untrained_classifier)  # v2, latest
    return tmp_path


def _tamper(url: str, statement: str) -> None:
    db = Database(url)
    with db.engine.begin() as connection:
        if db.is_sqlite:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        else:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        connection.exec_driver_sql(statement)
    db.dispose()


def test_cli_changes_are_recorded_listed_and_verified(project: Path, database: str) -> None:
    key = create_key(project, "--tenant", "acme", "--plan", "pro")
    key_id = key.split("_")[1]
    rotated = run_cli("keys", "rotate", key_id, "--overlap-hours", "1", cwd=project).stdout.strip()
    run_cli("keys", "revoke", rotated.split("_")[1], cwd=project)
    assert "latest of demo is now v1" in run_cli("models", "promote", "v1", cwd=project).stdout
    bad_version = run_cli("models", "promote", "v9", cwd=project, check=False)
    assert bad_version.returncode == 2 and "has no version 'v9'" in bad_version.stderr

    events = json.loads(run_cli("audit", "list", "--json", cwd=project).stdout)
    assert [(e["id"], e["event"], e["actor"]) for e in events] == [
        (4, "model.promoted", "cli"),
        (3, "key.revoked", "cli"),
        (2, "key.rotated", "cli"),
        (1, "key.created", "cli"),
    ]
    assert events[0]["details"] == {"model": "demo", "version": "v1", "previous": "v2"}
    assert key not in json.dumps(events) and rotated not in json.dumps(events)
    table = run_cli("audit", "list", "--event", "key.rotated", "--since", "2000-01-01", cwd=project)
    assert "key.rotated" in table.stdout and "key.created" not in table.stdout
    assert f"new_key={rotated.split('_')[1]}" in table.stdout

    verified = run_cli("audit", "verify", cwd=project)
    assert verified.stdout.startswith("OK: 4 rows, chain intact; anchor 4:")
    anchor = verified.stdout.split("anchor ")[1].strip()
    _tamper(database, "DELETE FROM audit_log WHERE id = 2")
    broken = run_cli("audit", "verify", cwd=project, check=False)
    assert broken.returncode == 1
    assert "audit log broken at row 3: row 2 before it is missing (deleted)" in broken.stderr
    _tamper(database, "DELETE FROM audit_log WHERE id = 4")
    against_anchor = run_cli("audit", "verify", "--anchor", anchor, cwd=project, check=False)
    assert against_anchor.returncode == 1
    assert "row 4: the anchor's row is gone: deleted from the end" in against_anchor.stderr


def test_promoting_without_a_database_records_nothing_and_creates_none(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGELINE_DATABASE_URL", raising=False)
    run_cli("models", "promote", "v1", cwd=project)
    assert not (project / "forgeline.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["list", "--since", "2026-13-01"],
            "--since: '2026-13-01' is not a date; write YYYY-MM-DD",
        ),
        (
            ["list", "--event", "key.deleted"],
            "--event: no event 'key.deleted' (events: key.created",
        ),
        (["verify", "--anchor", "4:xyz"], "--anchor: '4:xyz' is not an anchor; give ID:HASH"),
    ],
)
def test_audit_mistakes_say_what_is_wrong(tmp_path: Path, args: list[str], message: str) -> None:
    write_project(tmp_path, PROJECT_YAML)
    result = run_cli("audit", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
