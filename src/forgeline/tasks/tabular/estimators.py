"""The two scoring models: LightGBM (default) and logistic regression (interpretable baseline).

Both give a raw margin (log-odds, before calibration) and per-feature contributions to it, and
both save without pickle: LightGBM in its own text format, logistic regression as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from forgeline.config.schema import GradientBoostingConfig, TabularModelConfig
from forgeline.tasks.tabular.columns import Column

Matrix = NDArray[np.float64]


class Estimator(Protocol):
    kind: str

    def margin(self, features: Matrix) -> NDArray[np.float64]:
        """Log-odds of the event, before calibration."""
        ...

    def contributions(self, features: Matrix) -> tuple[Matrix, NDArray[np.float64]]:
        """Per row and feature column, the push on the margin; and each row's base value.
        Contributions plus base value add up to the margin."""
        ...

    def save(self, directory: Path, stem: str) -> None: ...


def lightgbm_parameters(
    settings: GradientBoostingConfig, seed: int, scale_pos_weight: float
) -> dict[str, Any]:
    """LightGBM's parameters for a binary target under ``settings``, for a pooled fit and for
    the trees a federation's silos add alike."""
    return {
        "objective": "binary",
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 0,
        "verbosity": -1,
        "scale_pos_weight": scale_pos_weight,
    }


class GradientBoosting:
    """LightGBM with native categorical splits and early stopping on validation data.

    Contributions are LightGBM's ``pred_contrib``: exact TreeSHAP values (Lundberg et al.), the
    same numbers shap.TreeExplainer computes, without its per-call overhead at serving time.
    """

    kind = "lightgbm"

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster

    @classmethod
    def fit(
        cls,
        columns: list[Column],
        train: tuple[Matrix, NDArray[np.int64]],
        validation: tuple[Matrix, NDArray[np.int64]],
        config: TabularModelConfig,
    ) -> GradientBoosting:
        settings = config.lightgbm
        categorical = [i for i, c in enumerate(columns) if c.kind == "categorical"]
        names = [c.name for c in columns]
        train_set = lgb.Dataset(
            train[0], train[1], feature_name=names, categorical_feature=categorical
        )
        validation_set = lgb.Dataset(validation[0], validation[1], reference=train_set)
        events = max(int(train[1].sum()), 1)
        balance = (len(train[1]) - events) / events if config.class_weight == "balanced" else 1.0
        params = {**lightgbm_parameters(settings, config.seed, balance), "metric": "auc"}
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=settings.max_rounds,
            valid_sets=[validation_set],
            callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
        )
        return cls(booster)

    def margin(self, features: Matrix) -> NDArray[np.float64]:
        return self._predict(features, raw_score=True)

    def contributions(self, features: Matrix) -> tuple[Matrix, NDArray[np.float64]]:
        values = self._predict(features, pred_contrib=True)
        return values[:, :-1], values[:, -1]

    def _predict(self, features: Matrix, **kind: bool) -> NDArray[np.float64]:
        # One thread for the small batches a server sees: OpenMP's start-up and spin-waiting
        # cost more than a few rows take to score, and take the CPU the server needs.
        threads = 1 if len(features) < 512 else 0
        prediction = self.booster.predict(
            features, num_iteration=self.booster.best_iteration, num_threads=threads, **kind
        )
        return np.asarray(prediction, dtype=np.float64)

    def save(self, directory: Path, stem: str) -> None:
        self.booster.save_model(
            str(directory / f"{stem}.lightgbm.txt"), num_iteration=self.booster.best_iteration
        )

    @classmethod
    def load(cls, directory: Path, stem: str) -> GradientBoosting:
        return cls(lgb.Booster(model_file=str(directory / f"{stem}.lightgbm.txt")))


class Logistic:
    """L2 logistic regression on standardised numbers and one-hot categories.

    Contributions are coefficient x deviation from the training mean (in standardised units),
    summed over a categorical feature's one-hot columns, so they add up to the margin.
    """

    kind = "logistic"

    def __init__(self, columns: list[Column], weights: dict[str, Any]) -> None:
        self.columns = columns
        self.weights = weights

    def design(self, features: Matrix) -> tuple[Matrix, list[int]]:
        """The standardised design matrix and, per design column, its feature column (before
        ``fit`` stores a standardisation, the design matrix as it is)."""
        blocks: list[Matrix] = []
        owner: list[int] = []
        for index, column in enumerate(self.columns):
            values = features[:, index]
            if column.kind == "categorical":
                one_hot = np.stack(
                    [values == code for code in range(len(column.categories))], axis=1
                )
                blocks.append(one_hot.astype(np.float64))
                owner += [index] * len(column.categories)
            else:
                filled = np.where(np.isnan(values), column.median, values)
                blocks.append(filled[:, None])
                owner.append(index)
        design = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(features), 0))
        mean = np.asarray(self.weights.get("mean", np.zeros(design.shape[1])))
        scale = np.asarray(self.weights.get("scale", np.ones(design.shape[1])))
        return (design - mean) / scale, owner

    @classmethod
    def fit(
        cls,
        columns: list[Column],
        train: tuple[Matrix, NDArray[np.int64]],
        config: TabularModelConfig,
    ) -> Logistic:
        unscaled = cls(columns, {})
        design, _ = unscaled.design(train[0])
        mean, scale = design.mean(axis=0), design.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(
            C=1.0,
            max_iter=2000,
            class_weight="balanced" if config.class_weight == "balanced" else None,
        )
        model.fit((design - mean) / scale, train[1])
        weights = {
            "coefficients": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0]),
            "mean": mean.tolist(),
            "scale": scale.tolist(),
        }
        return cls(columns, weights)

    def margin(self, features: Matrix) -> NDArray[np.float64]:
        design, _ = self.design(features)
        coefficients = np.asarray(self.weights["coefficients"], dtype=np.float64)
        return np.asarray(
            design @ coefficients + float(self.weights["intercept"]), dtype=np.float64
        )

    def contributions(self, features: Matrix) -> tuple[Matrix, NDArray[np.float64]]:
        design, owner = self.design(features)
        per_design = design * np.asarray(self.weights["coefficients"])
        result = np.zeros((len(features), len(self.columns)))
        np.add.at(result.T, np.asarray(owner), per_design.T)
        base = np.full(len(features), float(self.weights["intercept"]))
        return result, base

    def save(self, directory: Path, stem: str) -> None:
        (directory / f"{stem}.logistic.json").write_text(json.dumps(self.weights), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, stem: str, columns: list[Column]) -> Logistic:
        weights = json.loads((directory / f"{stem}.logistic.json").read_text(encoding="utf-8"))
        return cls(columns, weights)
