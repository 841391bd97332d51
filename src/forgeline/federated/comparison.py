"""What federation gained: the same rows trained pooled (the ceiling), federated, and by each
silo alone, measured on every silo's test part and on all test rows together.

Only a simulation can draw this table: it holds every silo's rows on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from forgeline.config import TabularClassificationConfig
from forgeline.federated.schema import AgreedSchema
from forgeline.federated.silos import SiloData
from forgeline.tasks.tabular.columns import features_matrix
from forgeline.tasks.tabular.data import EVENT
from forgeline.tasks.tabular.estimators import Estimator, GradientBoosting, Logistic

OVERALL = "all test rows"


@dataclass(frozen=True)
class Comparison:
    table: pd.DataFrame
    """ROC-AUC: one row per way of training, one column per silo's test part and overall."""

    def auc(self, trained: str, tested: str = OVERALL) -> float:
        return float(cast(float, self.table.at[trained, tested]))

    @property
    def silo_alone_rows(self) -> list[str]:
        return [name for name in self.table.index if name.startswith("alone: ")]


def _auc(events: np.ndarray, margin: np.ndarray) -> float:
    return float(roc_auc_score(events, margin)) if len(set(events.tolist())) == 2 else float("nan")


def compare(
    config: TabularClassificationConfig,
    schema: AgreedSchema,
    silos: list[SiloData],
    federated: Estimator,
) -> Comparison:
    def fit(chosen: list[SiloData]) -> Estimator | None:
        train = pd.concat([s.train for s in chosen], ignore_index=True)
        validation = pd.concat([s.validation for s in chosen], ignore_index=True)
        events = train[EVENT].to_numpy()
        if len(set(events.tolist())) < 2:
            return None  # a silo with one class alone learns nothing to rank by
        rows = (features_matrix(train, schema.columns), events)
        if federated.kind == "logistic":
            return Logistic.fit(schema.columns, rows, config.model)
        held_out = (features_matrix(validation, schema.columns), validation[EVENT].to_numpy())
        return GradientBoosting.fit(schema.columns, rows, held_out, config.model)

    models: dict[str, Estimator | None] = {
        "pooled": fit(silos),
        "federated": federated,
        **{f"alone: {s.name}": fit([s]) for s in silos},
    }
    tests = {s.name: s.test for s in silos}
    tests[OVERALL] = pd.concat([s.test for s in silos], ignore_index=True)
    table = pd.DataFrame(index=list(models), columns=list(tests), dtype=float)
    for trained, model in models.items():
        for tested, rows in tests.items():
            if model is None or len(rows) == 0:
                continue
            margin = model.margin(features_matrix(rows, schema.columns))
            table.loc[trained, tested] = _auc(rows[EVENT].to_numpy(), margin)
    return Comparison(table)
