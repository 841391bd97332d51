"""User mistakes end in one clear message and exit status 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MINIMAL_YAML, write_project
from tests.e2e.conftest import run_cli


def test_help_on_every_command(tmp_path: Path) -> None:
    for command in (
        ["--help"],
        ["init", "--help"],
        ["train", "--help"],
        ["evaluate", "--help"],
        ["predict", "--help"],
        ["serve", "--help"],
        ["config", "schema", "--help"],
    ):
        result = run_cli(*command, cwd=tmp_path)
        assert "Usage:" in result.stdout


def test_missing_data_file_is_a_clean_error(tmp_path: Path) -> None:
    write_project(tmp_path, MINIMAL_YAML)
    result = run_cli("train", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "data.train: no such file 'data/train.csv'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_row_is_a_clean_error(tmp_path: Path) -> None:
    write_project(tmp_path, MINIMAL_YAML, {"data/train.csv": "text,label\nhello,a\n,b\n"})
    result = run_cli("train", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "data/train.csv, row 2 (line 3), column 'text': empty text" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_before_training(tmp_path: Path, labelled_csv: str) -> None:
    write_project(tmp_path, MINIMAL_YAML, {"data/train.csv": labelled_csv})
    result = run_cli("predict", "hello", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "run `forgeline train` first" in result.stderr


def test_config_schema_is_json_schema(tmp_path: Path) -> None:
    schema = json.loads(run_cli("config", "schema", cwd=tmp_path).stdout)
    assert set(schema["discriminator"]["mapping"]) == {
        "text-classification",
        "tabular-classification",
        "chat",
        "token-classification",
        "knowledge-qa",
    }
    text = schema["$defs"]["TextClassificationConfig"]
    assert {"name", "task", "data"} <= set(text["required"])


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    result = run_cli("init", "taken", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "directory exists and is not empty" in result.stderr


def test_init_rejects_a_bad_name_without_leaving_files(tmp_path: Path) -> None:
    result = run_cli("init", "Bad Name", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "'Bad Name' is not a valid project name" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_port_out_of_range(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "99999", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "Invalid value for '--port'" in result.stderr and "65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_flag(tmp_path: Path) -> None:
    assert run_cli("--version", cwd=tmp_path).stdout.startswith("forgeline 0.")
