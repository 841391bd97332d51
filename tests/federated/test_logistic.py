"""The federated logistic regression's arithmetic against hand computations on pooled rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from sklearn.linear_model import LogisticRegression

from forgeline.config.schema import TabularModelConfig
from forgeline.federated import logistic
from forgeline.federated.schema import AgreedSchema, agree, describe_silo
from forgeline.federated.silos import SiloData, federation_config, read_silo
from forgeline.tasks.tabular.columns import features_matrix
from forgeline.tasks.tabular.data import EVENT
from forgeline.tasks.tabular.estimators import Logistic
from tests.federated.conftest import federation_project


def _silos(tmp_path: Path) -> tuple[list[SiloData], AgreedSchema]:
    project = federation_project(tmp_path)
    config, federated = federation_config(project)
    silos = [read_silo(project, name) for name in federated.silos]
    return silos, agree([describe_silo(s, config.data) for s in silos])


def _pooled(silos: list[SiloData], schema: AgreedSchema) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([logistic.raw_design(schema, s.train) for s in silos])
    events = np.concatenate([s.train[EVENT].to_numpy() for s in silos]).astype(float)
    return rows, events


def test_combined_moments_give_the_pooled_standardisation_and_bound(tmp_path: Path) -> None:
    silos, schema = _silos(tmp_path)
    design = logistic.combine_moments(
        [logistic.class_moments(schema, s) for s in silos], schema, balanced=True
    )
    rows, events = _pooled(silos, schema)
    np.testing.assert_allclose(design.mean, rows.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(design.scale, rows.std(axis=0), rtol=1e-7)
    n, n_event = len(events), events.sum()
    assert design.class_weights == (n / (2 * (n - n_event)), n / (2 * n_event))
    z = np.column_stack([(rows - rows.mean(axis=0)) / rows.std(axis=0), np.ones(n)])
    w = np.where(events == 1, design.class_weights[1], design.class_weights[0])
    bound = 0.25 * (z * w[:, None]).T @ z / n + np.diag([1 / n] * (z.shape[1] - 1) + [0.0])
    np.testing.assert_allclose(
        np.linalg.inv(design.preconditioner_inverse), bound, rtol=1e-6, atol=1e-9
    )


def test_fedavg_of_the_silos_steps_is_the_pooled_step(tmp_path: Path) -> None:
    silos, schema = _silos(tmp_path)
    design = logistic.combine_moments(
        [logistic.class_moments(schema, s) for s in silos], schema, balanced=False
    )
    theta = np.random.default_rng(0).normal(0, 0.3, len(design.mean) + 1)
    replies = [
        RecordDict(
            {
                "arrays": ArrayRecord([logistic.local_steps(theta, design, schema, s, epochs=1)]),
                "metrics": MetricRecord({"num-examples": len(s.train)}),
            }
        )
        for s in silos
    ]
    averaged = aggregate_arrayrecords(replies, "num-examples").to_numpy_ndarrays()[0]
    rows, events = _pooled(silos, schema)
    z = np.column_stack([(rows - design.mean) / design.scale, np.ones(len(rows))])
    p = 1 / (1 + np.exp(-(z @ theta)))
    pooled_gradient = z.T @ (p - events) / len(rows) + np.append(theta[:-1], 0) / len(rows)
    expected = theta - design.preconditioner_inverse @ pooled_gradient
    np.testing.assert_allclose(averaged, expected, rtol=1e-9, atol=1e-12)


def test_repeated_rounds_reach_the_pooled_optimum(tmp_path: Path) -> None:
    silos, schema = _silos(tmp_path)
    design = logistic.combine_moments(
        [logistic.class_moments(schema, s) for s in silos], schema, balanced=True
    )
    theta = np.zeros(len(design.mean) + 1)
    weights = np.array([len(s.train) for s in silos], dtype=float)
    for _ in range(30):
        steps = [logistic.local_steps(theta, design, schema, s, epochs=1) for s in silos]
        theta = np.average(steps, axis=0, weights=weights)
    rows, events = _pooled(silos, schema)
    standardised = (rows - design.mean) / design.scale
    # scikit-learn on the pooled rows, solved tighter than its default tolerance (1e-4).
    exact = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-10, max_iter=10_000)
    exact.fit(standardised, events)
    np.testing.assert_allclose(theta[:-1], exact.coef_[0], atol=1e-6)
    assert abs(theta[-1] - exact.intercept_[0]) < 1e-6
    # ... and the same predictions as the tabular task's own pooled logistic fit.
    pooled_rows = pd.concat([s.train for s in silos], ignore_index=True)
    pooled = Logistic.fit(
        schema.columns,
        (features_matrix(pooled_rows, schema.columns), pooled_rows[EVENT].to_numpy()),
        TabularModelConfig(kind="logistic"),
    )
    federated = logistic.as_estimator(theta, design, schema)
    test = pd.concat([s.test for s in silos], ignore_index=True)
    matrix = features_matrix(test, schema.columns)
    np.testing.assert_allclose(federated.margin(matrix), pooled.margin(matrix), atol=2e-3)


def test_a_column_far_from_zero_keeps_its_spread(tmp_path: Path) -> None:
    project = federation_project(tmp_path)
    for silo in ("north", "south", "east"):
        path = tmp_path / "data" / f"{silo}.csv"
        frame = pd.read_csv(path)
        frame["applied_at"] = 1.7e9 + np.random.default_rng(1).normal(0, 10, len(frame)).round(3)
        frame.to_csv(path, index=False)
    config, federated = federation_config(project)
    silos = [read_silo(project, name) for name in federated.silos]
    schema = agree([describe_silo(s, config.data) for s in silos])
    design = logistic.combine_moments(
        [logistic.class_moments(schema, s) for s in silos], schema, balanced=True
    )
    rows, _ = _pooled(silos, schema)
    np.testing.assert_allclose(design.scale, rows.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(design.mean, rows.mean(axis=0), rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.linalg.inv(design.preconditioner_inverse)) > 0)
