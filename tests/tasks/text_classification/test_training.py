"""Fitting on a tiny data set: real MiniLM weights, a few seconds per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgeline.config import load_project
from forgeline.tasks.text_classification import TextClassifier
from tests.conftest import MINIMAL_YAML, write_project

TRAINING = "training: {epochs: 2, batch_size: 8, max_length: 16, learning_rate: 0.0003}\n"
FALLBACK = "fallback: {label: other, threshold: auto, max_in_scope_accuracy_drop: 0.05}\n"


def _fit(root: Path, csv: str, extra: str = "") -> TextClassifier:
    project = load_project(
        write_project(root, MINIMAL_YAML + TRAINING + extra, {"data/train.csv": csv})
    )
    return TextClassifier.fit(project, TextClassifier.prepare_data(project), lambda _: None)


def test_training_is_deterministic_for_a_seed(tmp_path: Path, labelled_csv: str) -> None:
    first = _fit(tmp_path / "a", labelled_csv)
    second = _fit(tmp_path / "b", labelled_csv)
    texts = ["where is my parcel", "refund please", "password reset"]
    np.testing.assert_array_equal(first.predict_proba(texts), second.predict_proba(texts))


def test_fit_learns_and_records_validation_metrics(tmp_path: Path, labelled_csv: str) -> None:
    model = _fit(tmp_path, labelled_csv, FALLBACK)
    metrics = model.training_metrics
    assert metrics["validation_macro_f1"] > 0.6
    assert metrics["train_examples"] == 72
    assert model.fallback is not None and model.fallback.label == "other"
    assert 0 <= metrics["fallback_threshold"] <= 1
    # 'other' is not a trained class: it appears only through the threshold.
    assert "other" not in model.labels
    assert model.predict(["refund my order 7 please"])[0]["label"] in {"refund", "other"}
