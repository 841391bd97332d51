"""The tabular classifier: calibrated event probability, scorecard points, a decision and
reason codes per row, behind the same Task interface as every other task."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score, roc_curve

from forgeline.config import Project, TabularClassificationConfig
from forgeline.data import Table
from forgeline.errors import InputError, NotSupportedError
from forgeline.tasks.base import Capability, DataSplits, Evaluation, Notify, Prediction
from forgeline.tasks.tabular import schemas
from forgeline.tasks.tabular.calibration import Calibrator, brier, choose_calibrator
from forgeline.tasks.tabular.columns import (
    Column,
    check_input_row,
    features_matrix,
    file_location,
)
from forgeline.tasks.tabular.data import (
    EVENT,
    prepare_tabular_data,
    select_features,
    target_classes,
)
from forgeline.tasks.tabular.estimators import Estimator, GradientBoosting, Logistic, Matrix
from forgeline.tasks.tabular.scorecard import points
from forgeline.tasks.tabular.settings import TabularSettings

SETTINGS_FILE = "tabular.json"


@dataclass
class Scorer:
    """A fitted estimator with its calibrator."""

    estimator: Estimator
    calibrator: Calibrator

    def probability(self, features: Matrix) -> NDArray[np.float64]:
        return self.calibrator.probability(self.estimator.margin(features))


def ks_statistic(events: NDArray[np.int64], score: NDArray[np.float64]) -> tuple[float, float]:
    """(KS, threshold): the largest TPR - FPR gap and the score (for a decision threshold, a
    probability) where it occurs."""
    fpr, tpr, thresholds = roc_curve(events, score)
    best = int(np.argmax(tpr - fpr))
    return float(tpr[best] - fpr[best]), float(min(thresholds[best], 1.0))


def _fit_estimator(
    kind: str,
    columns: list[Column],
    train: tuple[Matrix, NDArray[np.int64]],
    validation: tuple[Matrix, NDArray[np.int64]],
    config: TabularClassificationConfig,
) -> Estimator:
    if kind == "lightgbm":
        return GradientBoosting.fit(columns, train, validation, config.model)
    return Logistic.fit(columns, train, config.model)


def _load_estimator(kind: str, directory: Path, stem: str, columns: list[Column]) -> Estimator:
    if kind == "lightgbm":
        return GradientBoosting.load(directory, stem)
    return Logistic.load(directory, stem, columns)


class TabularClassifier:
    """Rows in, event probability out: ``fit``, ``predict``, ``explain``, ``evaluate``."""

    name: ClassVar[str] = "tabular-classification"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"predict", "explain"})

    def __init__(
        self,
        settings: TabularSettings,
        main: Scorer,
        baseline: Scorer | None,
        training_metrics: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.main = main
        self.baseline = baseline
        self._training_metrics = training_metrics or {}

    # -- the Task interface ------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        return [self.settings.non_event, self.settings.event]

    @property
    def training_metrics(self) -> dict[str, Any]:
        return dict(self._training_metrics)

    @classmethod
    def prepare_data(cls, project: Project) -> DataSplits:
        return prepare_tabular_data(project)

    @classmethod
    def fit(cls, project: Project, data: DataSplits, notify: Notify) -> Self:
        config = project.config_for(TabularClassificationConfig)
        columns = select_features(
            Table(data.train, project.data_files()["train"]), config.data
        ).columns
        train = (features_matrix(data.train, columns), data.train[EVENT].to_numpy())
        validation = (features_matrix(data.validation, columns), data.validation[EVENT].to_numpy())
        kinds = [config.model.kind]
        if config.model.compare_baseline:
            kinds.append("logistic" if config.model.kind == "lightgbm" else "lightgbm")
        scorers: list[Scorer] = []
        metrics: dict[str, Any] = {"train_examples": len(data.train)}
        for kind in kinds:
            started = time.perf_counter()
            estimator = _fit_estimator(kind, columns, train, validation, config)
            margin = estimator.margin(validation[0])
            calibrator, brier_by_method = choose_calibrator(
                config.model.calibration, margin, validation[1], config.model.seed
            )
            scorer = Scorer(estimator, calibrator)
            probability = scorer.probability(validation[0])
            # Ranking is measured on the margin: the calibrator was fitted on these rows, and
            # an isotonic fit's ties would flatter its own training data.
            ks, _ = ks_statistic(validation[1], margin)
            metrics[f"{kind}_train_seconds"] = round(time.perf_counter() - started, 2)
            metrics[f"{kind}_validation_roc_auc"] = float(roc_auc_score(validation[1], margin))
            metrics[f"{kind}_validation_ks"] = ks
            metrics[f"{kind}_validation_brier"] = brier(probability, validation[1])
            metrics[f"{kind}_calibration"] = calibrator.method
            notify(
                f"{kind}: validation ROC-AUC {metrics[f'{kind}_validation_roc_auc']:.4f}, KS {ks:.4f}, "
                f"calibrated with {calibrator.method}"
                + (
                    " (cross-fitted Brier "
                    + ", ".join(f"{m} {b:.4f}" for m, b in brier_by_method.items())
                    + ")"
                    if brier_by_method
                    else ""
                )
            )
            scorers.append(scorer)
        main_probability = scorers[0].probability(validation[0])
        if config.decision.threshold == "auto":
            _, threshold = ks_statistic(validation[1], main_probability)
        else:
            threshold = float(config.decision.threshold)
        metrics["decision_threshold"] = threshold
        settings = TabularSettings.from_config(config, columns, target_classes(project), threshold)
        return cls(settings, scorers[0], scorers[1] if len(scorers) > 1 else None, metrics)

    def save(self, directory: Path) -> None:
        self.main.estimator.save(directory, "model")
        if self.baseline is not None:
            self.baseline.estimator.save(directory, "baseline")
        payload = {
            "settings": self.settings.to_json(),
            "model": {
                "kind": self.main.estimator.kind,
                "calibrator": self.main.calibrator.to_json(),
            },
            "baseline": None
            if self.baseline is None
            else {
                "kind": self.baseline.estimator.kind,
                "calibrator": self.baseline.calibrator.to_json(),
            },
        }
        (directory / SETTINGS_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        payload = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        settings = TabularSettings.from_json(payload["settings"])

        def scorer(part: dict[str, Any], stem: str) -> Scorer:
            estimator = _load_estimator(part["kind"], directory, stem, settings.columns)
            return Scorer(estimator, Calibrator.from_json(part["calibrator"]))

        metrics_file = directory / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        baseline = payload["baseline"]
        return cls(
            settings,
            scorer(payload["model"], "model"),
            scorer(baseline, "baseline") if baseline else None,
            metrics,
        )

    def input_schema(self) -> dict[str, Any]:
        return schemas.input_schema(self.settings)

    def prediction_schema(self) -> dict[str, Any]:
        return schemas.prediction_schema(self.settings)

    def explanation_schema(self) -> dict[str, Any]:
        return schemas.explanation_schema(self.settings)

    def check_inputs(self, inputs: Sequence[Any], max_input_chars: int | None = None) -> None:
        # The only text a row may hold is a category level seen in training, so there is no
        # free text for max_input_chars to bound.
        for index, row in enumerate(inputs):
            check_input_row(index, row, self.settings.inputs, strict=True)

    def inputs_from_table(self, frame: pd.DataFrame, source: str) -> list[Any]:
        names = [c.name for c in self.settings.inputs]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise InputError(f"{source}: missing feature column(s) {', '.join(map(repr, missing))}")
        rows = (
            frame[names].astype(object).where(frame[names].notna(), None).to_dict(orient="records")
        )
        for position, row in enumerate(rows):
            check_input_row(position, row, self.settings.inputs, file_location(source, position))
        return rows

    def parse_cli_input(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"expected a JSON object of feature values, e.g. '{{\"age\": 30}}': {exc.msg}"
            ) from None

    def _features(self, inputs: Sequence[Any]) -> Matrix:
        frame = pd.DataFrame(list(inputs), columns=[c.name for c in self.settings.inputs])
        return features_matrix(frame, self.settings.columns)

    def _explained(
        self, features: Matrix
    ) -> tuple[Matrix, NDArray[np.float64], NDArray[np.float64]]:
        """Per row: feature contributions, base value and calibrated probability. The margin
        is the contributions' sum plus the base value, so the model runs once, not twice."""
        contributions, base = self.main.estimator.contributions(features)
        probability = self.main.calibrator.probability(contributions.sum(axis=1) + base)
        return contributions, base, probability

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        features = self._features(inputs)
        contributions, _, probability = self._explained(features)
        scores = points(probability, self.settings.scorecard)
        predictions = []
        for row, p in enumerate(probability):
            predictions.append(
                {
                    "label": self.settings.event
                    if p >= self.settings.threshold
                    else self.settings.non_event,
                    "probability": round(float(p), 6),
                    "score": round(float(scores[row]), 1),
                    "decision": self.settings.above
                    if p >= self.settings.threshold
                    else self.settings.below,
                    "reason_codes": self._reason_codes(
                        inputs[row], features[row], contributions[row]
                    ),
                }
            )
        return predictions

    def compress(
        self, project: Project, data: DataSplits, notify: Notify
    ) -> tuple[Self, dict[str, Any]]:
        raise NotSupportedError(
            "tabular models are already small and fast (gradient-boosted trees or a linear "
            "model); compression applies to transformer models"
        )

    def explain(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        contributions, base, probability = self._explained(self._features(inputs))
        margin = contributions.sum(axis=1) + base
        return [
            {
                "base_value": round(float(base[row]), 6),
                "margin": round(float(margin[row]), 6),
                "probability": round(float(probability[row]), 6),
                "contributions": {
                    c.name: round(float(v), 6)
                    for c, v in zip(self.settings.columns, contributions[row], strict=True)
                },
            }
            for row in range(len(base))
        ]

    def evaluate(self, data: pd.DataFrame) -> Evaluation:
        from forgeline.tasks.tabular.evaluation import evaluate_tabular

        return evaluate_tabular(self, data)

    # -- helpers -----------------------------------------------------------------------------

    def _reason_codes(
        self, row: dict[str, Any], features: NDArray[np.float64], contributions: NDArray[np.float64]
    ) -> list[dict[str, Any]]:
        """The features that pushed this row's risk up most, with their values (see
        ``_reason_value``)."""
        order = np.argsort(-contributions)
        reasons = []
        for index in order[: self.settings.reason_codes]:
            if contributions[index] <= 0:
                break
            column = self.settings.columns[index]
            reasons.append(
                {
                    "feature": column.name,
                    "value": _reason_value(column, row.get(column.name), float(features[index])),
                    "contribution": round(float(contributions[index]), 4),
                }
            )
        return reasons


def _reason_value(column: Column, sent: Any, feature: float) -> Any:
    """A reason code's value: a number for numeric and derived features, whether it was sent as
    JSON, as a CSV cell's text or computed; a category or yes/no as sent."""
    if np.isnan(feature):
        return None
    if column.kind == "numeric":
        return round(feature, 6)
    return sent
