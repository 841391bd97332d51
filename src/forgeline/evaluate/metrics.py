"""Classification metrics shared by every classifying task."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def metrics_json(metrics: Any) -> str:
    """Metrics as strict JSON: an undefined value (NaN, e.g. the AUC of a group with one class)
    is null, since other tools' JSON parsers reject NaN."""

    def strict(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: strict(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [strict(item) for item in value]
        return value

    return json.dumps(strict(metrics), indent=2, allow_nan=False)


def expected_calibration_error(
    confidence: NDArray[np.floating[Any]], correct: NDArray[np.bool_], bins: int = 15
) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by how many predictions fall in each (Guo et al., 2017)."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; confidence 0 goes to the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            gap = abs(float(correct[in_bin].mean()) - float(confidence[in_bin].mean()))
            total += gap * float(in_bin.mean())
    return total


def reliability_curve(
    confidence: NDArray[np.floating[Any]], correct: NDArray[np.bool_], bins: int = 15
) -> list[tuple[float, float, int]]:
    """Per non-empty bin: (mean confidence, accuracy, count), for the reliability diagram."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    return [
        (
            float(confidence[index == b].mean()),
            float(correct[index == b].mean()),
            int((index == b).sum()),
        )
        for b in range(bins)
        if (index == b).any()
    ]


@dataclass(frozen=True)
class ClassificationMetrics:
    labels: list[str]
    accuracy: float
    macro_f1: float
    micro_f1: float
    ece: float
    per_class: list[dict[str, Any]]
    confusion: NDArray[np.int64]
    reliability: list[tuple[float, float, int]]

    def worst_confused_pairs(self, top: int = 10) -> list[tuple[str, str, int]]:
        """(true label, predicted label, count) of the most frequent mistakes, ties by name."""
        mistakes = [
            (self.labels[i], self.labels[j], int(self.confusion[i, j]))
            for i, j in zip(*np.nonzero(self.confusion), strict=True)
            if i != j
        ]
        return sorted(mistakes, key=lambda m: (-m[2], m[0], m[1]))[:top]

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "micro_f1": self.micro_f1,
            "expected_calibration_error": self.ece,
            "per_class": self.per_class,
            "confusion_matrix": {"labels": self.labels, "counts": self.confusion.tolist()},
            "worst_confused_pairs": [
                {"true": t, "predicted": p, "count": c} for t, p, c in self.worst_confused_pairs()
            ],
        }


def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    confidence: NDArray[np.floating[Any]],
    labels: Sequence[str],
) -> ClassificationMetrics:
    """Metrics over ``labels`` (every class the model knows, seen in the data or not)."""
    label_list = list(labels)
    seen = sorted(set(y_true) | set(y_pred), key=label_list.index)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=seen, zero_division=0
    )
    per_class = [
        {
            "label": label,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(seen)
    ]
    correct = np.asarray(y_true, dtype=object) == np.asarray(y_pred, dtype=object)
    return ClassificationMetrics(
        labels=label_list,
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)),
        micro_f1=float(f1_score(y_true, y_pred, labels=seen, average="micro", zero_division=0)),
        ece=expected_calibration_error(confidence, correct),
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=label_list).astype(np.int64),
        reliability=reliability_curve(confidence, correct),
    )
