import numpy as np
import pytest
from scipy.special import softmax

from forgeline.tasks.text_classification.fallback import (
    Fallback,
    apply_threshold,
    choose_fallback,
    choose_threshold,
    confidence,
    in_scope_accuracy_and_fallback_recall,
)

FALLBACK = 2


def test_apply_threshold_replaces_low_confidence() -> None:
    predicted = np.array([0, 1, 0])
    scores = np.array([0.9, 0.4, 0.5])
    assert apply_threshold(predicted, scores, 0.5, FALLBACK).tolist() == [0, FALLBACK, 0]


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
    predicted, top = probabilities.argmax(1), probabilities.max(1)
    # No accuracy may be lost: only the lowest in-scope confidence (0.5) is safe.
    assert choose_threshold(predicted, top, truth, FALLBACK, 0.0) == 0.5
    # Losing up to 0.2 allows rejecting the two least confident in-scope rows; at 0.6 the
    # fallback row with confidence 0.55 is caught, the one with 0.6 is not.
    threshold = choose_threshold(predicted, top, truth, FALLBACK, 0.2)
    assert threshold == np.linspace(0.5, 0.95, 10)[2]
    rejected = apply_threshold(predicted, top, threshold, FALLBACK)
    assert in_scope_accuracy_and_fallback_recall(rejected, truth, FALLBACK) == (0.8, 0.5)


def test_confidence_scores() -> None:
    logits = np.array([[2.0, 0.0], [20.0, 18.0]])
    # Same margin, so the same top probability; the second row responds far more strongly.
    np.testing.assert_allclose(confidence(logits, "probability"), softmax(logits, axis=1).max(1))
    assert confidence(logits, "probability")[0] == pytest.approx(
        confidence(logits, "probability")[1]
    )
    np.testing.assert_allclose(confidence(logits, "energy"), np.log(np.exp(logits).sum(1)))


def _logits_where_only_energy_separates() -> tuple[np.ndarray, np.ndarray]:
    # In-scope rows: strong responses (logits around 10); out-of-scope rows: the same margins
    # but weak responses. Top probabilities are identical across both groups.
    margins = np.linspace(1.0, 3.0, 8)
    in_scope = np.array([[10 + m, 10.0, 10.0] for m in margins])
    out_of_scope = np.array([[m, 0.0, 0.0] for m in margins[:4]])
    truth = np.array([0] * 8 + [FALLBACK] * 4)
    return np.vstack([in_scope, out_of_scope]), truth


def test_choose_fallback_takes_the_score_that_catches_more() -> None:
    logits, truth = _logits_where_only_energy_separates()
    chosen = choose_fallback(logits, truth, FALLBACK, 0.0)
    assert chosen.score == "energy"
    assert chosen.recall_by_score == {"probability": 0.0, "energy": 1.0}
    # Every out-of-scope row is below the threshold, every in-scope row at or above it.
    scores = confidence(logits, "energy")
    assert (scores[truth == FALLBACK] < chosen.threshold).all()
    assert (scores[truth != FALLBACK] >= chosen.threshold).all()


def test_choose_fallback_without_out_of_scope_examples_uses_the_default() -> None:
    logits, truth = _logits_where_only_energy_separates()
    in_scope_only = truth != FALLBACK
    chosen = choose_fallback(logits[in_scope_only], truth[in_scope_only], FALLBACK, 0.0)
    assert chosen.score == "probability" and chosen.recall_by_score == {}


def test_choose_fallback_on_a_tie_keeps_the_top_probability() -> None:
    logits = np.array([[9.0, 0.0, 0.0], [8.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    truth = np.array([0, 0, FALLBACK])  # both scores put the fallback row lowest
    chosen = choose_fallback(logits, truth, FALLBACK, 0.0)
    assert chosen.recall_by_score == {"probability": 1.0, "energy": 1.0}
    assert chosen.score == "probability"


def test_choose_fallback_can_be_held_to_one_score() -> None:
    logits, truth = _logits_where_only_energy_separates()
    chosen = choose_fallback(logits, truth, FALLBACK, 0.0, ("probability",))
    assert chosen.score == "probability" and chosen.recall_by_score == {"probability": 0.0}


def test_fallback_describes_its_rule() -> None:
    assert Fallback("oos", 0.4).describe() == "predictions whose top probability is below 0.400"
    assert "log-sum-exp" in Fallback("oos", 7.25, "energy").describe()
