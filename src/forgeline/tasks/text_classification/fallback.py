"""Choosing when a prediction becomes the fallback label: which confidence score, and the
threshold below which the model is not trusted.

The threshold rule is the business trade-off stated directly: the highest threshold that gives
up at most ``max_in_scope_accuracy_drop`` of validation accuracy on in-scope inputs. A higher
threshold catches more out-of-scope inputs, so within that budget the highest one is best; and
the rule needs no out-of-scope examples in the validation data (though they make it better
informed).

Two confidence scores are on offer: the top class probability, and the energy score
(log-sum-exp of the logits; Liu et al., 2020, "Energy-based out-of-distribution detection").
Softmax divides away how strongly the network responds at all, which is what tells an input it
was trained on from one it was not; the energy keeps it. When the validation split holds
out-of-scope examples and one score catches more of them within the same accuracy budget, that
score is used (on CLINC150, energy at every budget ``benchmarks/text_defaults_bench.py`` shows:
validation recall 0.72 against 0.68 at the default budget of 0.2 points). Otherwise the top
probability: a tie or no out-of-scope examples says nothing for either, and on a small
validation split the threshold sits at its least confident correct text, which an unbounded
score carries less well to new texts (the template's 28 validation texts: an energy threshold
turned "reset my password" into the fallback, the probability threshold did not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import logsumexp

ConfidenceScore = Literal["probability", "energy"]
SCORES: tuple[ConfidenceScore, ...] = ("probability", "energy")
DEFAULT_SCORE: ConfidenceScore = "probability"
"""Used unless the validation split shows another score catching more out-of-scope examples."""


@dataclass(frozen=True)
class Fallback:
    """A trained classifier's out-of-scope rule: ``label`` when ``score`` is below
    ``threshold``."""

    label: str
    threshold: float
    score: ConfidenceScore = "probability"

    def describe(self) -> str:
        """Which predictions the rule turns into the fallback label, in words."""
        measure = (
            "top probability"
            if self.score == "probability"
            else "energy score (log-sum-exp of the logits)"
        )
        return f"predictions whose {measure} is below {self.threshold:.3f}"

    def apply(self, logits: NDArray[np.floating[Any]], fallback_index: int) -> NDArray[np.int64]:
        """Class index per row of ``logits``: the top class, or ``fallback_index`` where the
        rule's confidence score is below its threshold."""
        return apply_threshold(
            logits.argmax(axis=1), confidence(logits, self.score), self.threshold, fallback_index
        )


def confidence(logits: NDArray[np.floating[Any]], score: ConfidenceScore) -> NDArray[np.float64]:
    """Per row, how much the model trusts its top class: higher is more confident."""
    values = logits.astype(np.float64)
    energy = np.asarray(logsumexp(values, axis=1), dtype=np.float64)
    if score == "energy":
        return energy
    return np.asarray(np.exp(values.max(axis=1) - energy))  # the top softmax probability


def apply_threshold(
    predicted: NDArray[np.int64],
    confidence: NDArray[np.floating[Any]],
    threshold: float,
    fallback: int,
) -> NDArray[np.int64]:
    return np.where(confidence < threshold, fallback, predicted)


def in_scope_accuracy_and_fallback_recall(
    predicted: NDArray[np.int64], truth: NDArray[np.int64], fallback: int
) -> tuple[float, float | None]:
    in_scope = truth != fallback
    accuracy = float((predicted[in_scope] == truth[in_scope]).mean()) if in_scope.any() else 0.0
    recall = float((predicted[~in_scope] == fallback).mean()) if (~in_scope).any() else None
    return accuracy, recall


def choose_threshold(
    predicted: NDArray[np.int64],
    confidence: NDArray[np.floating[Any]],
    truth: NDArray[np.int64],
    fallback: int,
    max_in_scope_accuracy_drop: float,
) -> float:
    """The highest threshold whose validation in-scope accuracy is within the allowed drop; the
    lowest confidence seen when nothing may be given up."""
    base, _ = in_scope_accuracy_and_fallback_recall(predicted, truth, fallback)
    candidates = np.unique(confidence)
    best = float(candidates[0]) if len(candidates) else 0.0
    # Accuracy only changes at observed confidences, so those are the only candidates.
    for candidate in candidates:
        thresholded = apply_threshold(predicted, confidence, float(candidate), fallback)
        accuracy, _ = in_scope_accuracy_and_fallback_recall(thresholded, truth, fallback)
        if base - accuracy <= max_in_scope_accuracy_drop + 1e-12:
            best = float(candidate)
        else:
            break  # accuracy never recovers as the threshold rises
    return best


@dataclass(frozen=True)
class ChosenFallback:
    score: ConfidenceScore
    threshold: float
    recall_by_score: dict[ConfidenceScore, float]
    """Validation fallback recall each score reached (empty without out-of-scope examples)."""


def choose_fallback(
    logits: NDArray[np.floating[Any]],
    truth: NDArray[np.int64],
    fallback: int,
    max_in_scope_accuracy_drop: float,
    scores: tuple[ConfidenceScore, ...] = SCORES,
) -> ChosenFallback:
    """Per score, the threshold :func:`choose_threshold` picks; the score whose threshold
    catches the most validation out-of-scope examples (ties and no examples: the default)."""
    predicted = logits.argmax(axis=1)
    thresholds: dict[ConfidenceScore, float] = {}
    recalls: dict[ConfidenceScore, float] = {}
    for score in scores:
        values = confidence(logits, score)
        thresholds[score] = choose_threshold(
            predicted, values, truth, fallback, max_in_scope_accuracy_drop
        )
        rejected = apply_threshold(predicted, values, thresholds[score], fallback)
        _, recall = in_scope_accuracy_and_fallback_recall(rejected, truth, fallback)
        if recall is not None:
            recalls[score] = recall
    preferred = DEFAULT_SCORE if DEFAULT_SCORE in scores else scores[0]
    best = max(scores, key=lambda s: (recalls.get(s, 0.0), s == preferred))
    return ChosenFallback(best, thresholds[best], recalls)
