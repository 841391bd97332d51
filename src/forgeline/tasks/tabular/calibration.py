"""Turning margins into probabilities that mean what they say.

Platt scaling (a logistic curve on the margin) or isotonic regression (a monotone step
function), chosen by Brier score with 2-fold cross-fitting on the validation data, so the choice
is judged on rows the calibrator did not see. Both are stored as a few numbers in JSON.

'auto' considers isotonic regression only with ``ISOTONIC_MIN_ROWS`` validation rows or more: on
fewer it overfits (scikit-learn's calibration guide says the same), and its flat steps give whole
slices of applicants one identical probability and score, which costs ranking (ROC-AUC) on new
data even when the cross-fitted Brier score looks better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

Method = Literal["platt", "isotonic", "none"]
ISOTONIC_MIN_ROWS = 1000
Vector = NDArray[np.float64]


def sigmoid(margin: Vector) -> Vector:
    return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=np.float64)


@dataclass(frozen=True)
class Calibrator:
    method: Method
    parameters: dict[str, list[float]]

    def probability(self, margin: Vector) -> Vector:
        if self.method == "platt":
            slope, intercept = self.parameters["platt"]
            return sigmoid(slope * margin + intercept)
        if self.method == "isotonic":
            x, y = self.parameters["x"], self.parameters["y"]
            return np.asarray(np.interp(margin, x, y), dtype=np.float64)
        return sigmoid(margin)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "parameters": self.parameters}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(data["method"], data["parameters"])


def fit_calibrator(method: Method, margin: Vector, events: NDArray[np.int64]) -> Calibrator:
    if method == "platt":
        model = LogisticRegression(C=1e6, max_iter=1000).fit(margin[:, None], events)
        return Calibrator(
            "platt", {"platt": [float(model.coef_[0, 0]), float(model.intercept_[0])]}
        )
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, events)
        return Calibrator(
            "isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        )
    return Calibrator("none", {})


def brier(probability: Vector, events: NDArray[np.int64]) -> float:
    return float(np.mean((probability - events) ** 2))


def choose_calibrator(
    requested: Literal["auto", "isotonic", "platt", "none"],
    margin: Vector,
    events: NDArray[np.int64],
    seed: int,
) -> tuple[Calibrator, dict[str, float]]:
    """Fit the requested calibrator on validation data; 'auto' picks by cross-fitted Brier."""
    if requested != "auto":
        return fit_calibrator(requested, margin, events), {}
    if len(margin) < ISOTONIC_MIN_ROWS:
        return fit_calibrator("platt", margin, events), {}
    order = np.random.default_rng(seed).permutation(len(margin))
    folds = (order[: len(order) // 2], order[len(order) // 2 :])
    scores: dict[str, float] = {}
    for method in ("platt", "isotonic"):
        losses = []
        for fit_rows, score_rows in (folds, folds[::-1]):
            calibrator = fit_calibrator(method, margin[fit_rows], events[fit_rows])
            losses.append(brier(calibrator.probability(margin[score_rows]), events[score_rows]))
        scores[method] = float(np.mean(losses))
    best: Method = "platt" if scores["platt"] <= scores["isotonic"] else "isotonic"
    return fit_calibrator(best, margin, events), scores
