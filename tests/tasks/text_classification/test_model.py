"""TextClassifier behaviour that needs no training (the fixture has a fresh head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

from forgeline.errors import InputError
from forgeline.tasks.text_classification import TextClassifier


def test_predictions_follow_input_order_despite_length_sorting(
    untrained_classifier: TextClassifier,
) -> None:
    texts = ["a much longer message about a refund for my order", "hi", "parcel"]
    batch = untrained_classifier.predict(texts)
    one_by_one = [untrained_classifier.predict([t])[0] for t in texts]
    for together, alone in zip(batch, one_by_one, strict=True):
        assert together["label"] == alone["label"]
        assert together["score"] == pytest.approx(alone["score"], abs=1e-5)


def test_threshold_turns_low_confidence_into_the_fallback(
    untrained_classifier: TextClassifier,
) -> None:
    from forgeline.tasks.text_classification.model import Fallback

    untrained_classifier.fallback = Fallback("other", 1.0)  # nothing is that confident
    try:
        predictions = untrained_classifier.predict(["refund please", "where is my parcel"])
    finally:
        untrained_classifier.fallback = Fallback("other", 0.0)
    assert [p["label"] for p in predictions] == ["other", "other"]
    assert all(set(p["probabilities"]) == {"account", "refund", "shipping"} for p in predictions)


def test_energy_threshold_decides_on_the_logits_not_the_probabilities(
    untrained_classifier: TextClassifier,
) -> None:
    from forgeline.tasks.text_classification.model import Fallback

    texts = ["refund please", "where is my parcel"]
    energy = logsumexp(untrained_classifier.logits(texts).astype(np.float64), axis=1)
    # A threshold between the two energies: only the less energetic text falls back, whatever
    # its top probability.
    untrained_classifier.fallback = Fallback("other", float(energy.mean()), "energy")
    try:
        predictions = untrained_classifier.predict(texts)
    finally:
        untrained_classifier.fallback = Fallback("other", 0.0)
    assert [p["fallback"] for p in predictions] == list(energy < energy.mean())
    assert sum(p["label"] == "other" for p in predictions) == 1


def test_fallback_rule_is_saved_with_its_score(
    untrained_classifier: TextClassifier, tmp_path: Path
) -> None:
    from forgeline.tasks.text_classification.model import Fallback

    untrained_classifier.fallback = Fallback("other", 3.5, "energy")
    try:
        untrained_classifier.save(tmp_path)
    finally:
        untrained_classifier.fallback = Fallback("other", 0.0)
    assert TextClassifier.load(tmp_path).fallback == Fallback("other", 3.5, "energy")


def test_inputs_from_table_names_the_bad_row(untrained_classifier: TextClassifier) -> None:
    frame = pd.DataFrame({"text": ["fine", None, "also fine"]})
    with pytest.raises(InputError, match=r"in\.csv, row 2, column 'text': empty text"):
        untrained_classifier.inputs_from_table(frame, "in.csv")
    with pytest.raises(InputError, match=r"no 'text' column to predict on; columns are 'body'"):
        untrained_classifier.inputs_from_table(pd.DataFrame({"body": ["x"]}), "in.csv")


def test_evaluation_audits_sensitive_groups(untrained_classifier: TextClassifier) -> None:
    from forgeline.config.data_files import BandConfig
    from forgeline.tasks.text_classification.model import FairnessAudit

    data = pd.DataFrame(
        {
            "text": ["refund please", "where is my parcel", "reset my password", "refund now"],
            "label": ["refund", "shipping", "account", "refund"],
            "age": ["22", "41", "67", "35"],
        }
    )
    untrained_classifier.audit = FairnessAudit(
        ["age_band"], {"age_band": BandConfig(column="age", edges=[30, 60])}, 0.1
    )
    try:
        evaluation = untrained_classifier.evaluate(data)
    finally:
        untrained_classifier.audit = None
    by_group = evaluation.metrics["fairness"]["age_band"]["by_group"]
    assert {row["group"]: row["count"] for row in by_group} == {"<30": 1, "30-<60": 2, ">=60": 1}
    assert any(section.title == "Fairness" for section in evaluation.sections)
