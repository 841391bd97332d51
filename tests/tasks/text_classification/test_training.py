"""Fitting on a tiny data set: real MiniLM weights, a few seconds per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from forgeline.base_models import resolve_base_model
from forgeline.config import load_project
from forgeline.tasks.text_classification import TextClassifier
from forgeline.tasks.text_classification.training import covering_length
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
    # No 'other' examples in validation to choose by: the top probability, with a threshold
    # that keeps in-scope validation accuracy within the allowed drop.
    assert model.fallback.score == metrics["fallback_score"] == "probability"
    assert np.isfinite(metrics["fallback_threshold"])
    validation = TextClassifier.prepare_data(load_project(tmp_path / "forgeline.yaml")).validation
    logits = model.logits(list(validation["text"]))
    truth = list(validation["label"])
    unthresholded = np.mean(
        [model.labels[i] == label for i, label in zip(logits.argmax(1), truth, strict=True)]
    )
    assert metrics["validation_in_scope_accuracy"] >= unthresholded - 0.05 - 1e-9
    # 'other' is not a trained class: it appears only through the threshold.
    assert "other" not in model.labels
    assert model.predict(["refund my order 7 please"])[0]["label"] in {"refund", "other"}


def test_covering_length_holds_99_percent_in_a_multiple_of_8() -> None:
    assert (
        covering_length([10] * 99 + [400], ceiling=512) == 16
    )  # one outlier is cut, not padded for
    assert covering_length(list(range(1, 101)), ceiling=512) == 104  # 99th percentile 99.01
    assert covering_length([30] * 50, ceiling=512) == 32
    assert covering_length([900] * 10, ceiling=512) == 512
    assert covering_length([], ceiling=512) == 16


def test_max_length_auto_is_chosen_from_the_training_texts_and_saved(
    tmp_path: Path, labelled_csv: str
) -> None:
    auto = TRAINING.replace("max_length: 16", "max_length: auto")
    project = load_project(
        write_project(tmp_path, MINIMAL_YAML + auto, {"data/train.csv": labelled_csv})
    )
    data = TextClassifier.prepare_data(project)
    messages: list[str] = []
    model = TextClassifier.fit(project, data, messages.append)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("minilm-l6"))
    longest = max(len(tokenizer(text)["input_ids"]) for text in data.train["text"])
    expected = max(16, -(-longest // 8) * 8)  # a small set: its 99th percentile is near the max
    assert model.training_metrics["max_length"] in range(expected - 8, expected + 1)
    assert any(
        m.startswith(f"max_length {model.training_metrics['max_length']} tokens") for m in messages
    )
    model.save(tmp_path / "saved")
    assert (
        TextClassifier.load(tmp_path / "saved")._max_length == model.training_metrics["max_length"]
    )
