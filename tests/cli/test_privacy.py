"""``forgeline redact`` and ``forgeline unredact`` as a user runs them: texts and files, the
project's privacy settings, and clear errors (exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import MINIMAL_YAML, write_project
from tests.e2e.conftest import run_cli

KEY = "k" * 40
TICKETS = (
    "id,body,note\n"
    '1,"Call Maria Lopez on +44 20 7946 0958, card 4111 1111 1111 1111",card 4111 1111 1111 1111\n'
    "2,电话13812345678谢谢、或 +44 20 7946 0958,ok\n"
    "3,,empty body\n"
)


@pytest.fixture
def privacy_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FORGELINE_PRIVACY_KEY", KEY)
    return KEY


def test_redact_texts_given_as_arguments(tmp_path: Path) -> None:
    result = run_cli(
        "redact",
        "Call Maria Lopez on +44 20 7946 0958, card 4111 1111 1111 1111",
        "电话１３８１２３４５６７８谢谢",
        cwd=tmp_path,
    )
    assert result.stdout.splitlines() == [
        "Call Maria Lopez on <PHONE_NUMBER>, card <CREDIT_CARD>",
        "电话<PHONE_NUMBER>谢谢",
    ]
    text = "Mail a.b@example.com"
    shown = json.loads(run_cli("redact", "--json", text, cwd=tmp_path).stdout)
    assert shown["text"] == "Mail <EMAIL_ADDRESS>"
    [entity] = shown["entities"]
    assert (
        entity["type"] == "EMAIL_ADDRESS"
        and text[entity["start"] : entity["end"]] == "a.b@example.com"
    )


def test_csv_redacted_by_column_with_the_projects_settings(
    tmp_path: Path, labelled_csv: str, privacy_key: str
) -> None:
    privacy = "privacy:\n  operator: pseudonymize\n  entities: [PHONE_NUMBER, CREDIT_CARD]\n"
    write_project(tmp_path, MINIMAL_YAML + privacy, {"data/train.csv": labelled_csv})
    (tmp_path / "tickets.csv").write_text(TICKETS, encoding="utf-8")
    result = run_cli("redact", "--file", "tickets.csv", "--columns", "body", cwd=tmp_path)
    assert "Redacted 3 rows of tickets.csv (column body) with pseudonymize: 4 entities" in (
        result.stdout
    )
    source = pd.read_csv(tmp_path / "tickets.csv", dtype=str, keep_default_na=False)
    clean = pd.read_csv(tmp_path / "tickets.redacted.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(clean[["id", "note"]], source[["id", "note"]])
    first, second, third = clean["body"]
    phone = first.split(" on ")[1].split(",")[0]
    assert phone.startswith("<PHONE_NUMBER_") and phone in second  # same number, same token
    assert "4111" not in first and "13812345678" not in second and third == ""


def test_encrypted_file_round_trip_and_a_wrong_key(
    tmp_path: Path, privacy_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [
        {"id": 1, "body": "Call +44 20 7946 0958, card 4111 1111 1111 1111"},
        {"id": 2, "body": "身份证11010519491231002X"},
    ]
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    run_cli(
        "redact",
        "-f",
        "tickets.jsonl",
        "--columns",
        "body",
        "--operator",
        "encrypt",
        "--output",
        "clean.jsonl",
        cwd=tmp_path,
    )
    clean = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert "<CN_RESIDENT_ID:" in clean[1]["body"] and "1101" not in clean[1]["body"]
    run_cli("unredact", "-f", "clean.jsonl", "--columns", "body", "-o", "back.jsonl", cwd=tmp_path)
    back = [json.loads(line) for line in (tmp_path / "back.jsonl").read_text().splitlines()]
    assert back == records

    monkeypatch.setenv("FORGELINE_PRIVACY_KEY", "w" * 40)
    wrong = run_cli(
        "unredact",
        "-f",
        "clean.jsonl",
        "--columns",
        "body",
        "-o",
        "out.jsonl",
        cwd=tmp_path,
        check=False,
    )
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "clean.jsonl, line 1, column 'body': cannot decrypt the <PHONE_NUMBER:...>" in (
        wrong.stderr
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_column_and_missing_key_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORGELINE_PRIVACY_KEY", raising=False)
    (tmp_path / "tickets.csv").write_text(TICKETS, encoding="utf-8")
    column = run_cli("redact", "-f", "tickets.csv", "--columns", "text", cwd=tmp_path, check=False)
    assert column.returncode == 2 and "Traceback" not in column.stderr
    assert "tickets.csv: no column 'text' (columns: id, body, note)" in column.stderr
    key = run_cli(
        "redact", "--operator", "encrypt", "card 4111 1111 1111 1111", cwd=tmp_path, check=False
    )
    assert key.returncode == 2 and "Traceback" not in key.stderr
    assert "encrypt needs the project's privacy key" in key.stderr
    assert "FORGELINE_PRIVACY_KEY" in key.stderr and "privacy.key_file" in key.stderr
