"""Per-group fairness with fairlearn's MetricFrame, for every task with sensitive columns.

Binary decisions (tabular risk scoring): per group the selection rate (share decided as the
event), true and false positive rates and ROC-AUC, plus the demographic parity difference and
the equalized odds difference. Multi-class labels (text classification): per group accuracy and
macro-F1 and the largest gap between groups. Gaps above the configured bound are flagged.

Groups smaller than ``MIN_GROUP_SIZE`` rows are shown but left out of the differences: a rate
from a handful of rows moves by many points with one row, and the between-group gap, a max minus
a min, would report that noise (e.g. an undocumented education code of 3 applicants giving an
equalized odds difference of 1.0).
"""

from __future__ import annotations

import itertools
import math
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

from forgeline.config.data_files import BandConfig
from forgeline.data.io import Table
from forgeline.data.values import is_missing, parse_number
from forgeline.errors import DataError

MIN_GROUP_SIZE = 30


def _counted_rows(
    sensitive: NDArray[Any], min_size: int
) -> tuple[list[str], NDArray[np.bool_] | None]:
    """(the groups under ``min_size`` rows, the rows of the other groups); no rows when fewer
    than 2 groups are left to compare."""
    sizes = pd.Series(sensitive).value_counts()
    small = sorted(str(group) for group in sizes.index[sizes < min_size])
    if len(sizes) - len(small) < 2:
        return small, None
    return small, ~np.isin(sensitive, small)


def _group_size_notes(attribute: str, small: list[str], min_size: int, computed: bool) -> list[str]:
    notes = []
    if small:
        which = f"group {small[0]} has" if len(small) == 1 else f"groups {', '.join(small)} have"
        notes.append(
            f"{attribute}: {which} fewer than {min_size} rows; shown, but left out of the "
            "differences"
        )
    if not computed:
        notes.append(
            f"{attribute}: no difference computed: fewer than 2 groups have {min_size} rows"
        )
    return notes


def _auc(y_true: NDArray[Any], y_score: NDArray[Any]) -> float:
    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else float("nan")


@dataclass(frozen=True)
class AttributeFairness:
    attribute: str
    by_group: pd.DataFrame
    demographic_parity_difference: float
    equalized_odds_difference: float
    small_groups: list[str]
    min_group_size: int

    def warnings(self, bound: float) -> list[str]:
        """Differences above ``bound``, and the groups too small to count."""
        return [
            f"{self.attribute}: {name} {value:.3f} exceeds the bound {bound:.3f}"
            for name, value in (
                ("demographic parity difference", self.demographic_parity_difference),
                ("equalized odds difference", self.equalized_odds_difference),
            )
            if value > bound
        ] + _group_size_notes(
            self.attribute,
            self.small_groups,
            self.min_group_size,
            not math.isnan(self.demographic_parity_difference),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "by_group": self.by_group.to_dict(orient="records"),
            "demographic_parity_difference": self.demographic_parity_difference,
            "equalized_odds_difference": self.equalized_odds_difference,
            "small_groups": self.small_groups,
        }


def binary_fairness(
    events: NDArray[np.int64],
    decisions: NDArray[np.int64],
    probability: NDArray[np.float64],
    groups: pd.DataFrame,
    min_group_size: int = MIN_GROUP_SIZE,
) -> list[AttributeFairness]:
    results = []
    for attribute in groups.columns:
        sensitive = groups[attribute].to_numpy()
        small, counted = _counted_rows(sensitive, min_group_size)
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
        parity = odds = float("nan")
        if counted is not None:
            kept = {"sensitive_features": sensitive[counted]}
            parity = demographic_parity_difference(events[counted], decisions[counted], **kept)
            odds = equalized_odds_difference(events[counted], decisions[counted], **kept)
        results.append(
            AttributeFairness(
                attribute=attribute,
                by_group=table,
                demographic_parity_difference=float(parity),
                equalized_odds_difference=float(odds),
                small_groups=small,
                min_group_size=min_group_size,
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
    small_groups: list[str]
    min_group_size: int

    def warnings(self, bound: float) -> list[str]:
        """Differences above ``bound``, and the groups too small to count."""
        return [
            f"{self.attribute}: {name} {value:.3f} exceeds the bound {bound:.3f}"
            for name, value in (
                ("accuracy difference", self.accuracy_difference),
                ("macro-F1 difference", self.macro_f1_difference),
            )
            if value > bound
        ] + _group_size_notes(
            self.attribute,
            self.small_groups,
            self.min_group_size,
            not math.isnan(self.accuracy_difference),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "by_group": self.by_group.to_dict(orient="records"),
            "accuracy_difference": self.accuracy_difference,
            "macro_f1_difference": self.macro_f1_difference,
            "small_groups": self.small_groups,
        }


def multiclass_fairness(
    truth: list[str],
    predicted: list[str],
    groups: pd.DataFrame,
    min_group_size: int = MIN_GROUP_SIZE,
) -> list[GroupAccuracy]:
    results = []
    y_true, y_pred = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    for attribute in groups.columns:
        sensitive = groups[attribute].to_numpy()
        small, counted = _counted_rows(sensitive, min_group_size)
        frame = MetricFrame(
            metrics={"count": count, "accuracy": accuracy_score, "macro_f1": _macro_f1},
            y_true=y_true,
            y_pred=y_pred,
            sensitive_features=sensitive,
        )
        table = frame.by_group.reset_index().rename(columns={"sensitive_feature_0": "group"})
        table["count"] = table["count"].astype(int)
        differences = {"accuracy": float("nan"), "macro_f1": float("nan")}
        if counted is not None:
            differences = MetricFrame(
                metrics={"accuracy": accuracy_score, "macro_f1": _macro_f1},
                y_true=y_true[counted],
                y_pred=y_pred[counted],
                sensitive_features=sensitive[counted],
            ).difference(method="between_groups")
        results.append(
            GroupAccuracy(
                attribute=attribute,
                by_group=table,
                accuracy_difference=float(differences["accuracy"]),
                macro_f1_difference=float(differences["macro_f1"]),
                small_groups=small,
                min_group_size=min_group_size,
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
