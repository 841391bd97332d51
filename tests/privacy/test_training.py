"""``data.redact``: personal data replaced in the texts of every split before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forgeline.config import load_project
from forgeline.errors import ConfigError
from forgeline.privacy import PrivacyKeyError
from forgeline.registry.card import render_model_card
from forgeline.tasks import get_task
from tests.conftest import write_project

TEMPLATES = Path(__file__).resolve().parents[2] / "src/forgeline/templates"


def _text_rows() -> str:
    rows = ["text,label"]
    for i in range(20):
        rows.append(f"mail me at user{i}@example.org about parcel {i},shipping")
        rows.append(f"refund order {i} to card 4111 1111 1111 1111,refund")
    return "\n".join(rows) + "\n"


def _text_project(root: Path, extra: str = "") -> Path:
    yaml = "name: demo\ntask: text-classification\ndata:\n  train: data/train.csv\n"
    return write_project(root, yaml + "  redact: true\n" + extra, {"data/train.csv": _text_rows()})


def test_text_classification_texts_are_redacted_in_every_split(tmp_path: Path) -> None:
    project = load_project(_text_project(tmp_path))
    data = get_task("text-classification").prepare_data(project)
    texts = [*data.train["text"], *data.validation["text"], *data.test["text"]]
    assert len(texts) == 40
    assert not any("@example.org" in t or "4111" in t for t in texts)
    assert "mail me at <EMAIL_ADDRESS> about parcel" in " ".join(texts)
    assert data.fingerprint["redaction"] == {
        "operator": "replace",
        "entities": {"CREDIT_CARD": 20, "EMAIL_ADDRESS": 20},
    }
    assert any("40 pieces of personal data replaced (replace)" in w for w in data.warnings)


def test_without_data_redact_nothing_is_replaced(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        "name: demo\ntask: text-classification\ndata:\n  train: data/train.csv\n",
        {"data/train.csv": _text_rows()},
    )
    data = get_task("text-classification").prepare_data(load_project(config))
    assert any("@example.org" in t for t in data.train["text"])
    assert "redaction" not in data.fingerprint


def test_masking_is_the_privacy_sections_choice(tmp_path: Path) -> None:
    project = load_project(_text_project(tmp_path, "privacy:\n  operator: mask\n"))
    data = get_task("text-classification").prepare_data(project)
    assert any("**** **** **** 1111" in t for t in data.train["text"])


def test_encrypting_training_data_is_refused_and_pseudonyms_need_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encrypt = load_project(_text_project(tmp_path / "a", "privacy:\n  operator: encrypt\n"))
    with pytest.raises(ConfigError, match="no model can learn from; use replace"):
        get_task("text-classification").prepare_data(encrypt)
    monkeypatch.delenv("FORGELINE_PRIVACY_KEY", raising=False)
    keyed = load_project(_text_project(tmp_path / "b", "privacy:\n  operator: pseudonymize\n"))
    with pytest.raises(PrivacyKeyError, match=r"data\.redact with pseudonymize needs"):
        get_task("text-classification").prepare_data(keyed)
    monkeypatch.setenv("FORGELINE_PRIVACY_KEY", "p" * 40)
    data = get_task("text-classification").prepare_data(keyed)
    tokens = {t.split()[3] for t in data.train["text"] if t.startswith("mail")}
    assert len(tokens) == len([t for t in data.train["text"] if t.startswith("mail")])
    assert all(token.startswith("<EMAIL_ADDRESS_") for token in tokens)


def test_chat_conversations_are_redacted_message_by_message(tmp_path: Path) -> None:
    conversation = {
        "messages": [
            {"role": "user", "content": "My card 4111 1111 1111 1111 was declined."},
            {"role": "assistant", "content": "Call us on +44 20 7946 0958."},
        ]
    }
    lines = "\n".join(json.dumps(conversation) for _ in range(10)) + "\n"
    yaml = "name: bot\ntask: chat\ndata:\n  train: data/train.jsonl\n  redact: true\n"
    project = load_project(write_project(tmp_path, yaml, {"data/train.jsonl": lines}))
    data = get_task("chat").prepare_data(project)
    [first, *_] = [*data.train["messages"], *data.validation["messages"], *data.test["messages"]]
    assert first == [
        {"role": "user", "content": "My card <CREDIT_CARD> was declined."},
        {"role": "assistant", "content": "Call us on <PHONE_NUMBER>."},
    ]
    assert data.fingerprint["redaction"]["entities"] == {"CREDIT_CARD": 10, "PHONE_NUMBER": 10}


def test_knowledge_base_questions_are_redacted_not_its_answers(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES / "knowledge-qa", tmp_path, dirs_exist_ok=True)
    config = tmp_path / "forgeline.yaml"
    config.write_text(
        config.read_text()
        .replace("__NAME__", "helpdesk")
        .replace("  train: data/questions.csv\n", "  train: data/questions.csv\n  redact: true\n")
    )
    questions = tmp_path / "data/questions.csv"
    questions.write_text(questions.read_text() + "my card 4111 1111 1111 1111 never arrived,none\n")
    data = get_task("knowledge-qa").prepare_data(load_project(config))
    asked = [*data.train["question"], *data.validation["question"], *data.test["question"]]
    assert "my card <CREDIT_CARD> never arrived" in asked
    assert data.fingerprint["redaction"]["entities"] == {"CREDIT_CARD": 1}


def test_the_model_card_says_the_data_was_redacted() -> None:
    manifest = {
        "name": "demo",
        "version": "v1",
        "task": "text-classification",
        "base_model": "minilm-l6",
        "created_at": "2026-12-07T00:00:00+00:00",
        "labels": ["a", "b"],
        "data_fingerprint": {
            "sha256": "0" * 64,
            "redaction": {"operator": "replace", "entities": {"EMAIL_ADDRESS": 3}},
        },
        "packages": {},
    }
    card = render_model_card(manifest, {})
    assert "(data.redact, operator replace): EMAIL_ADDRESS 3" in card
    del manifest["data_fingerprint"]["redaction"]  # type: ignore[attr-defined]
    assert "data.redact" not in render_model_card(manifest, {})
