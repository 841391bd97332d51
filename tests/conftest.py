"""Shared fixtures: small projects on disk and a real (untrained-head) MiniLM classifier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.db import Database
from forgeline.encoders.runtime import TorchEncoder
from forgeline.tasks.text_classification.model import Fallback, TextClassifier
from forgeline.tasks.token_classification import TokenClassifier
from tests.databases import database_urls, disposable_database

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(params=database_urls())
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database: a SQLite file, and PostgreSQL when one answers."""
    with disposable_database(request.param, tmp_path) as url:
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEMPLATE_DATA = (
    Path(__file__).resolve().parents[1]
    / "src/forgeline/templates/text-classification/data/train.csv"
)


def write_project(root: Path, yaml_text: str, files: dict[str, str] | None = None) -> Path:
    """Write forgeline.yaml and data files under ``root``; return the config path."""
    for relative, content in (files or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    config = root / "forgeline.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    return config


MINIMAL_YAML = """\
name: demo
task: text-classification
data:
  train: data/train.csv
"""


@pytest.fixture
def labelled_csv() -> str:
    rows = ["text,label"]
    for i in range(30):
        rows.append(f"where is my parcel number {i},shipping")
        rows.append(f"refund my order {i} please,refund")
        rows.append(f"my password {i} does not work,account")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="session")
def untrained_classifier() -> TextClassifier:
    """MiniLM with a fresh 3-class head: real weights, no training, loads in about a second."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from forgeline.base_models import resolve_base_model

    base = resolve_base_model("minilm-l6")
    labels = ["account", "refund", "shipping"]
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=3, use_safetensors=True
    )
    return TextClassifier(
        TorchEncoder(model),
        AutoTokenizer.from_pretrained(base),
        labels,
        max_length=32,
        fallback=Fallback("other", 0.0),
        training_metrics={"validation_accuracy": 0.5},
    )


@pytest.fixture(scope="session")
def untrained_tagger() -> TokenClassifier:
    """MiniLM with a fresh head for two entity types: real weights and tokenizer, no training;
    short windows, so that texts of a few dozen words already take several."""
    from transformers import AutoModelForTokenClassification

    from forgeline.base_models import resolve_base_model
    from forgeline.encoders.heads import with_fresh_head
    from forgeline.tasks.token_classification.training import tag_names

    tags = tag_names(["city", "person"])
    network, tokenizer = with_fresh_head(
        AutoModelForTokenClassification, resolve_base_model("minilm-l6"), tags
    )
    return TokenClassifier(TorchEncoder(network), tokenizer, tags, 64, 16, {})
