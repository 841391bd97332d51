"""Choosing the confidence threshold below which a prediction becomes the fallback label.

The rule is the business trade-off stated directly: the highest threshold that gives up at most
``max_in_scope_accuracy_drop`` of validation accuracy on in-scope inputs. A higher threshold
catches more out-of-scope inputs, so within that budget the highest one is best; and the rule
needs no out-of-scope examples in the validation data (though they make it better informed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


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
    probabilities: NDArray[np.floating[Any]],
    truth: NDArray[np.int64],
    fallback: int,
    max_in_scope_accuracy_drop: float,
) -> float:
    """The highest threshold whose validation in-scope accuracy is within the allowed drop."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    base, _ = in_scope_accuracy_and_fallback_recall(predicted, truth, fallback)
    best = 0.0
    # Accuracy only changes at observed confidences, so those are the only candidates.
    for candidate in np.unique(confidence):
        thresholded = apply_threshold(predicted, confidence, float(candidate), fallback)
        accuracy, _ = in_scope_accuracy_and_fallback_recall(thresholded, truth, fallback)
        if base - accuracy <= max_in_scope_accuracy_drop + 1e-12:
            best = float(candidate)
        else:
            break  # accuracy never recovers as the threshold rises
    return best
