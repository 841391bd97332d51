import json

import numpy as np
import pytest

from forgeline.evaluate import classification_metrics, expected_calibration_error, metrics_json


def test_ece_of_a_perfectly_calibrated_model_is_zero() -> None:
    confidence = np.array([0.8] * 10)
    correct = np.array([True] * 8 + [False] * 2)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)


def test_ece_by_hand() -> None:
    # Bin (0.8667, 0.9333]: conf 0.9, acc 0.5 -> gap 0.4, weight 0.5.
    # Bin (0.2667, 0.3333]: conf 0.3, acc 1.0 -> gap 0.7, weight 0.5.
    confidence = np.array([0.9, 0.9, 0.3, 0.3])
    correct = np.array([True, False, True, True])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.55)


def test_classification_metrics_by_hand() -> None:
    truth = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    measured = classification_metrics(truth, predicted, np.full(5, 0.6), ["a", "b", "c"])
    assert measured.accuracy == pytest.approx(0.6)
    per_class = {row["label"]: row for row in measured.per_class}
    assert per_class["a"]["precision"] == pytest.approx(0.5)
    assert per_class["b"]["recall"] == pytest.approx(1.0)
    assert per_class["b"]["precision"] == pytest.approx(2 / 3)
    assert per_class["c"]["f1"] == 0.0
    # F1: a = 0.5, b = 0.8, c = 0.
    assert measured.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert measured.micro_f1 == pytest.approx(0.6)
    assert measured.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert measured.worst_confused_pairs() == [("a", "b", 1), ("c", "a", 1)]


def test_metrics_json_is_serialisable() -> None:
    import json

    measured = classification_metrics(["a", "b"], ["a", "a"], np.array([0.9, 0.7]), ["a", "b"])
    payload = json.loads(json.dumps(measured.to_json()))
    assert payload["confusion_matrix"]["counts"] == [[1, 0], [1, 0]]
    assert payload["worst_confused_pairs"] == [{"true": "b", "predicted": "a", "count": 1}]


def test_metrics_json_writes_undefined_values_as_null() -> None:
    metrics = {"auc": float("nan"), "groups": [{"auc": float("inf"), "count": 3}], "f1": 0.5}
    assert json.loads(metrics_json(metrics)) == {
        "auc": None,
        "groups": [{"auc": None, "count": 3}],
        "f1": 0.5,
    }
