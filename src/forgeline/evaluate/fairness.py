"""Per-group fairness with fairlearn's MetricFrame, for every task with sensitive columns.

Binary decisions (tabular risk scoring): per group the selection rate (share decided as the
event), true and false positive rates and ROC-AUC, plus the demographic parity difference and
the equalized odds difference. Multi-class labels (text classification): per group accuracy and
macro-F1 and the largest gap between groups. Gaps above the configured bound are flagged.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from forgeline.config.schema import BandConfig
from forgeline.data.io import Table
from forgeline.data.values import is_missing, parse_number
from forgeline.errors import DataError


def _auc(y_true: NDArray[Any], y_score: NDArray[Any]) -> float:
    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else float("nan")


@dataclass(frozen=True)
class AttributeFairness:
    attribute: str
    by_group: pd.DataFrame
    demographic_parity_difference: float
    equalized_odds_difference: float

    def exceeds(self, bound: float) -> list[str]:
        return [
            f"{self.attribute}: {name} {value:.3f} exceeds the bound {bound:.3f}"
            for name, value in (
                ("demographic parity difference", self.demographic_parity_difference),
                ("equalized odds difference", self.equalized_odds_difference),
            )
            if value > bound
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "by_group": self.by_group.to_dict(orient="records"),
            "demographic_parity_difference": self.demographic_parity_difference,
            "equalized_odds_difference": self.equalized_odds_difference,
        }


def binary_fairness(
    events: NDArray[np.int64],
    decisions: NDArray[np.int64],
    probability: NDArray[np.float64],
    groups: pd.DataFrame,
) -> list[AttributeFairness]:
    results = []
    for attribute in groups.columns:
        sensitive = groups[attribute].to_numpy()
        decided = MetricFrame(
            metrics={
                "count": count,
                "selection_rate": selection_rate,
                "tpr": true_positive_rate,
                "fpr": false_positive_rate,
            },
            y_true=events,
            y_pred=decisions,
            sensitive_features=sensitive,
        )
        ranked = MetricFrame(
            metrics={"auc": _auc}, y_true=events, y_pred=probability, sensitive_features=sensitive
        )
        table = decided.by_group.join(ranked.by_group).reset_index()
        table = table.rename(columns={"sensitive_feature_0": "group"})
        table["count"] = table["count"].astype(int)
        results.append(
            AttributeFairness(
                attribute=attribute,
                by_group=table,
                demographic_parity_difference=float(
                    demographic_parity_difference(events, decisions, sensitive_features=sensitive)
                ),
                equalized_odds_difference=float(
                    equalized_odds_difference(events, decisions, sensitive_features=sensitive)
                ),
            )
        )
    return results


def band_labels(band: BandConfig) -> list[str]:
    """Half-open bands: with edges 25, 35 a value of 25 is in "25-<35"."""
    edges = [f"{e:g}" for e in band.edges]
    return [
        f"<{edges[0]}",
        *(f"{a}-<{b}" for a, b in itertools.pairwise(edges)),
        f">={edges[-1]}",
    ]


def check_bands(table: Table, bands: dict[str, BandConfig]) -> None:
    """A band needs a numeric column; name the first cell that is not a number."""
    for name, band in bands.items():
        if band.column not in table.frame.columns:
            continue  # reported with the other unknown columns
        for position, value in enumerate(table.frame[band.column]):
            if not is_missing(value) and parse_number(value) is None:
                raise DataError(
                    f"data.bands.{name}: column '{band.column}' must hold numbers, but "
                    f"{table.where(position, band.column)} is {value!r}"
                )


def sensitive_groups(
    frame: pd.DataFrame, sensitive: list[str], bands: dict[str, BandConfig]
) -> pd.DataFrame:
    """One column per sensitive attribute, banding numeric columns as configured."""
    groups = {}
    for name in sensitive:
        if name in bands:
            band = bands[name]
            labels = band_labels(band)
            numbers = [parse_number(v) if not is_missing(v) else None for v in frame[band.column]]
            groups[name] = [
                "missing" if n is None else labels[sum(n >= edge for edge in band.edges)]
                for n in numbers
            ]
        else:
            groups[name] = ["missing" if is_missing(v) else str(v).strip() for v in frame[name]]
    return pd.DataFrame(groups, index=frame.index)


def _macro_f1(y_true: NDArray[Any], y_pred: NDArray[Any]) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


@dataclass(frozen=True)
class GroupAccuracy:
    attribute: str
    by_group: pd.DataFrame
    accuracy_difference: float
    macro_f1_difference: float

    def exceeds(self, bound: float) -> list[str]:
        return [
            f"{self.attribute}: {name} {value:.3f} exceeds the bound {bound:.3f}"
            for name, value in (
                ("accuracy difference", self.accuracy_difference),
                ("macro-F1 difference", self.macro_f1_difference),
            )
            if value > bound
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "by_group": self.by_group.to_dict(orient="records"),
            "accuracy_difference": self.accuracy_difference,
            "macro_f1_difference": self.macro_f1_difference,
        }


def multiclass_fairness(
    truth: list[str], predicted: list[str], groups: pd.DataFrame
) -> list[GroupAccuracy]:
    results = []
    for attribute in groups.columns:
        frame = MetricFrame(
            metrics={"count": count, "accuracy": accuracy_score, "macro_f1": _macro_f1},
            y_true=np.asarray(truth, dtype=object),
            y_pred=np.asarray(predicted, dtype=object),
            sensitive_features=groups[attribute].to_numpy(),
        )
        differences = frame.difference(method="between_groups")
        table = frame.by_group.reset_index().rename(columns={"sensitive_feature_0": "group"})
        table["count"] = table["count"].astype(int)
        results.append(
            GroupAccuracy(
                attribute=attribute,
                by_group=table,
                accuracy_difference=float(differences["accuracy"]),
                macro_f1_difference=float(differences["macro_f1"]),
            )
        )
    return results


def group_tables(results: list[AttributeFairness] | list[GroupAccuracy]) -> list[pd.DataFrame]:
    """Each attribute's per-group table, labelled with the attribute, for the report."""
    tables = []
    for result in results:
        table = result.by_group.copy()
        table.insert(0, "attribute", result.attribute)
        tables.append(table)
    return tables
