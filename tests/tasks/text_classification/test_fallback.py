import numpy as np

from forgeline.tasks.text_classification.fallback import (
    apply_threshold,
    choose_threshold,
    in_scope_accuracy_and_fallback_recall,
)

FALLBACK = 2


def test_apply_threshold_replaces_low_confidence() -> None:
    predicted = np.array([0, 1, 0])
    confidence = np.array([0.9, 0.4, 0.5])
    assert apply_threshold(predicted, confidence, 0.5, FALLBACK).tolist() == [0, FALLBACK, 0]


def test_in_scope_accuracy_and_recall() -> None:
    truth = np.array([0, 1, FALLBACK, FALLBACK])
    predicted = np.array([0, FALLBACK, FALLBACK, 1])
    assert in_scope_accuracy_and_fallback_recall(predicted, truth, FALLBACK) == (0.5, 0.5)


def test_choose_highest_threshold_within_the_accuracy_budget() -> None:
    # Ten in-scope rows, all correct, with confidences 0.5..0.95; two fallback rows.
    probabilities = np.array(
        [[c, 1 - c, 0.0] for c in np.linspace(0.5, 0.95, 10)] + [[0.45, 0.55, 0], [0.6, 0.4, 0]]
    )
    truth = np.array([0] * 10 + [FALLBACK, FALLBACK])
    # No accuracy may be lost: only the lowest in-scope confidence (0.5) is safe.
    assert choose_threshold(probabilities, truth, FALLBACK, 0.0) == 0.5
    # Losing up to 0.2 allows rejecting the two least confident in-scope rows; at 0.6 the
    # fallback row with confidence 0.55 is caught, the one with 0.6 is not.
    threshold = choose_threshold(probabilities, truth, FALLBACK, 0.2)
    assert threshold == np.linspace(0.5, 0.95, 10)[2]
    rejected = apply_threshold(probabilities.argmax(1), probabilities.max(1), threshold, FALLBACK)
    assert in_scope_accuracy_and_fallback_recall(rejected, truth, FALLBACK) == (0.8, 0.5)
