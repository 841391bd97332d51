"""Calibration and threshold from summed terms and histograms, against pooled computations."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from forgeline.federated import scores


def _scores(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    events = (rng.random(rows) < 0.3).astype(float)
    margin = rng.normal(0, 1, rows) + 1.3 * events - 0.5
    return margin, events


def test_platt_from_summed_silo_terms_matches_a_pooled_fit() -> None:
    silos = [_scores(500, seed) for seed in range(3)]
    parameters = np.array([1.0, 0.0])
    for _ in range(scores.PLATT_STEPS):
        summed = np.sum([scores.platt_terms(parameters, m, e) for m, e in silos], axis=0)
        parameters = scores.platt_step(parameters, summed)
    margin = np.concatenate([m for m, _ in silos])
    events = np.concatenate([e for _, e in silos])
    pooled = LogisticRegression(C=1e6, tol=1e-10, max_iter=1000).fit(margin[:, None], events)
    np.testing.assert_allclose(parameters, [pooled.coef_[0, 0], pooled.intercept_[0]], rtol=1e-4)


def test_auc_and_ks_from_histograms_match_the_exact_ones() -> None:
    margin, events = _scores(5000, 7)
    probability = scores.sigmoid(margin)
    counts = scores.score_histogram(probability, events)
    assert counts.sum() == 5000 and counts[1].sum() == events.sum()
    assert abs(scores.histogram_auc(counts) - roc_auc_score(events, probability)) < 2e-3
    fpr, tpr, thresholds = roc_curve(events, probability)
    best = int(np.argmax(tpr - fpr))
    ks, threshold = scores.ks_threshold(counts)
    assert abs(ks - (tpr[best] - fpr[best])) < 5e-3
    assert abs(threshold - thresholds[best]) < 0.02
