"""`forgeline backup` and `forgeline restore` as a user runs them: the archive written and
restored into a new directory, and a corrupted one refused with a message (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MINIMAL_YAML, write_project
from tests.e2e.conftest import create_key, run_cli


def test_backup_and_restore_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGELINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("FORGELINE_BACKUP_KEY", "k" * 40)
    project = tmp_path / "shop"
    project.mkdir()
    write_project(project, MINIMAL_YAML + "billing:\n  plans:\n    pro: {}\n")
    create_key(project, "--tenant", "acme", "--plan", "pro")
    archive = tmp_path / "nightly.tar.zst"
    made = run_cli("backup", "--output", str(archive), cwd=project)
    assert "encrypted" in made.stdout and "not encrypted" not in made.stdout
    restored = run_cli("restore", str(archive), "--dir", str(tmp_path / "new"), cwd=tmp_path)
    assert "Restored" in restored.stdout and "sqlite database" in restored.stdout
    listed = run_cli("audit", "list", "--json", cwd=tmp_path / "new").stdout
    assert '"backup.created"' in listed and '"backup.restored"' in listed
    again = run_cli("restore", str(archive), cwd=project, check=False)
    assert again.returncode == 2 and "holds data" in again.stderr and "--force" in again.stderr
    blob = bytearray(archive.read_bytes())
    blob[-40] ^= 1
    archive.write_bytes(bytes(blob))
    broken = run_cli(
        "restore", str(archive), "--dir", str(tmp_path / "other"), cwd=tmp_path, check=False
    )
    assert broken.returncode == 2 and "does not decrypt" in broken.stderr
    assert "Traceback" not in broken.stderr and not (tmp_path / "other").exists()
