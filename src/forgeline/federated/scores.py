"""Calibration and the decision threshold from the silos' validation rows, rows staying put.

Platt scaling is a two-parameter logistic regression on the margin: each Newton step needs
only the silos' summed gradients and Hessians (5 numbers each). The decision threshold ("auto":
where the Kolmogorov-Smirnov gap between events and non-events is largest) and the validation
ROC-AUC need only histograms of the silos' scores on a fixed grid.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float64]
HISTOGRAM_BINS = 2000
PLATT_STEPS = 25
_PLATT_RIDGE = 1e-6  # as scikit-learn's C=1e6 in the pooled Platt fit


def sigmoid(values: Vector) -> Vector:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * values)), dtype=np.float64)


def platt_terms(parameters: Vector, margin: Vector, events: Vector) -> NDArray[np.float64]:
    """[gradient (2), Hessian (2x2) flattened] of the log-loss of sigmoid(a*margin + b), summed over
    the silo's rows; ``parameters`` is (a, b)."""
    features = np.column_stack([margin, np.ones(len(margin))])
    probability = sigmoid(features @ parameters)
    gradient = features.T @ (probability - events)
    hessian = (features * (probability * (1 - probability))[:, None]).T @ features
    return np.concatenate([gradient, hessian.ravel()])


def platt_step(parameters: Vector, summed_terms: NDArray[np.float64]) -> Vector:
    """One Newton step of Platt scaling from the silos' summed :func:`platt_terms`."""
    gradient = summed_terms[:2] + _PLATT_RIDGE * parameters
    hessian = summed_terms[2:].reshape(2, 2) + _PLATT_RIDGE * np.eye(2)
    return np.asarray(parameters - np.linalg.solve(hessian, gradient), dtype=np.float64)


def score_histogram(probability: Vector, events: Vector) -> NDArray[np.float64]:
    """Counts of non-events and events per probability bin, shape (2, HISTOGRAM_BINS)."""
    bins = np.minimum((probability * HISTOGRAM_BINS).astype(int), HISTOGRAM_BINS - 1)
    counts = np.zeros((2, HISTOGRAM_BINS))
    np.add.at(counts, (events.astype(int), bins), 1.0)
    return counts


def ks_threshold(counts: NDArray[np.float64]) -> tuple[float, float]:
    """(KS, threshold): the largest gap between the events' and non-events' shares at or
    above a bin edge, and that edge as a probability."""
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1] / totals  # TPR, FPR per edge
    gap = at_or_above[1] - at_or_above[0]
    best = int(np.argmax(gap))
    return float(gap[best]), best / HISTOGRAM_BINS


def histogram_auc(counts: NDArray[np.float64]) -> float:
    """ROC-AUC from score histograms; ties within a bin count one half, as the exact AUC counts
    tied scores."""
    non_events, events = counts
    below = np.cumsum(non_events) - non_events  # non-events in lower bins
    pairs = float(non_events.sum() * events.sum())
    if pairs == 0:
        return float("nan")
    return float((events * (below + 0.5 * non_events)).sum() / pairs)
