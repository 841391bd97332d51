"""Federated logistic regression that converges to the pooled model.

The pooled model is :class:`forgeline.tasks.tabular.estimators.Logistic`: L2 logistic regression
(scikit-learn's ``C=1``, optionally balanced class weights) on standardised features. Its
objective divided by the number of rows N is a row-weighted mean of per-silo objectives,

    F(theta) = sum_k (n_k / N) F_k(theta),   F_k(theta) = (1/n_k) sum_{i in k} w_i logloss_i(theta) + ||beta||^2 / (2N),

so the weighted average FedAvg computes of the silos' gradient steps is a step on F itself.
Each step is preconditioned by Böhning's bound on the logistic Hessian,
B = 1/4 (1/N) sum_i w_i z~_i z~_i^T + diag(1/N, ..., 0), a fixed matrix the server computes once from
the silos' second moments: theta ← theta - B^-1 grad F_k(theta) decreases F monotonically (a
majorize-minimize step) and, with one local step per round, reaches the pooled optimum in tens
of rounds (to 1e-9 in about 20 on tests/federated's silos), not thousands of plain gradient
steps.

Standardisation, class weights and B come from per-class second moments of each silo's design
matrix (sums of outer products: no row leaves the silo); :class:`Design` is what the server
agrees and sends back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from forgeline.federated.schema import AgreedSchema
from forgeline.federated.silos import SiloData
from forgeline.tasks.tabular.columns import features_matrix
from forgeline.tasks.tabular.data import EVENT
from forgeline.tasks.tabular.estimators import Logistic, Matrix

Vector = NDArray[np.float64]


def raw_design(schema: AgreedSchema, frame: Any) -> Matrix:
    """The unstandardised design matrix (numbers, one-hot levels) of a silo's rows."""
    design, _ = Logistic(schema.columns, {}).design(features_matrix(frame, schema.columns))
    return design


def design_shift(schema: AgreedSchema) -> Vector:
    """Per design column, an agreed value near its centre (a numeric column's fill value, 0
    for a level): moments are summed about it, so a column like a timestamp (1.7e9, spread 10)
    keeps its variance instead of losing it to cancellation."""
    shift: list[float] = []
    for column in schema.columns:
        if column.kind == "categorical":
            shift += [0.0] * len(column.categories)
        else:
            shift.append(column.median if column.kind == "numeric" else 0.0)
    return np.asarray(shift, dtype=np.float64)


def class_moments(schema: AgreedSchema, silo: SiloData) -> NDArray[np.float64]:
    """Per class (non-event, event), sum x~ x~^T over the silo's training rows, x~ = [x - shift,
    1] (see :func:`design_shift`): counts, sums and second moments in one array of shape
    (2, d+1, d+1)."""
    design = raw_design(schema, silo.train) - design_shift(schema)
    augmented = np.column_stack([design, np.ones(len(design))])
    events = silo.train[EVENT].to_numpy() == 1
    return np.stack(
        [augmented[~events].T @ augmented[~events], augmented[events].T @ augmented[events]]
    )


@dataclass(frozen=True)
class Design:
    """The agreed standardisation, class weights and preconditioner of every silo's steps."""

    mean: Vector
    scale: Vector
    class_weights: tuple[float, float]
    total_rows: int
    preconditioner_inverse: Matrix
    """B^-1, (d+1) x (d+1), the last coordinate the intercept."""

    def standardised(self, design: Matrix) -> Matrix:
        """z~ = [(x - mean) / scale, 1] per row."""
        return np.column_stack([(design - self.mean) / self.scale, np.ones(len(design))])

    def to_arrays(self) -> list[NDArray[np.float64]]:
        weights = np.array([*self.class_weights, float(self.total_rows)])
        return [self.mean, self.scale, weights, self.preconditioner_inverse]

    @classmethod
    def from_arrays(cls, arrays: list[NDArray[Any]]) -> Design:
        mean, scale, weights, inverse = arrays
        return cls(mean, scale, (float(weights[0]), float(weights[1])), int(weights[2]), inverse)


def combine_moments(
    moments: list[NDArray[np.float64]], schema: AgreedSchema, balanced: bool
) -> Design:
    """The :class:`Design` of the pooled rows, from the silos' :func:`class_moments`."""
    per_class = np.sum(moments, axis=0)  # (2, d+1, d+1)
    pooled = per_class[0] + per_class[1]
    d = pooled.shape[0] - 1
    rows = pooled[d, d]
    mean = pooled[:d, d] / rows
    variance = np.maximum(np.diag(pooled)[:d] / rows - mean**2, 0.0)
    scale = np.sqrt(variance)
    # A constant column (including one a silo alone would see) is left unscaled, as Logistic.fit.
    scale[scale <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    counts = per_class[:, d, d]
    weights = (
        (rows / (2 * counts[0]) if counts[0] else 1.0, rows / (2 * counts[1]) if counts[1] else 1.0)
        if balanced
        else (1.0, 1.0)
    )
    # z~ = T x~ with T = [[diag(1/s), -m/s], [0, 1]].
    transform = np.zeros((d + 1, d + 1))
    transform[:d, :d] = np.diag(1.0 / scale)
    transform[:d, d] = -mean / scale
    transform[d, d] = 1.0
    weighted = weights[0] * per_class[0] + weights[1] * per_class[1]
    bound = 0.25 * transform @ weighted @ transform.T / rows
    bound[np.arange(d), np.arange(d)] += 1.0 / rows
    centre = np.asarray(mean + design_shift(schema), dtype=np.float64)
    return Design(centre, scale, weights, int(rows), np.linalg.pinv(bound, hermitian=True))


def _sigmoid(margin: Vector) -> Vector:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * margin)), dtype=np.float64)


def gradient(theta: Vector, design: Design, standardised: Matrix, events: Vector) -> Vector:
    """grad F_k(theta): the silo's share of the pooled objective's gradient, per row of the silo."""
    weights = np.where(events == 1, design.class_weights[1], design.class_weights[0])
    residual = weights * (_sigmoid(standardised @ theta) - events)
    penalty = np.append(theta[:-1], 0.0) / design.total_rows
    return np.asarray(standardised.T @ residual / max(len(events), 1) + penalty, dtype=np.float64)


def local_steps(
    theta: Vector,
    design: Design,
    schema: AgreedSchema,
    silo: SiloData,
    epochs: int,
    proximal_mu: float = 0.0,
    own_bound: bool = False,
) -> Vector:
    """``epochs`` preconditioned steps on the silo's objective from the global theta; FedProx's
    ``proximal_mu`` adds mu/2 ||theta - theta_global||^2 to it."""
    standardised = design.standardised(raw_design(schema, silo.train))
    events = silo.train[EVENT].to_numpy().astype(np.float64)
    start = theta.copy()
    inverse = design.preconditioner_inverse
    if own_bound:
        # Silos weighed equally (differential privacy) make the objective an unweighted mean of
        # the silos' own, which the row-weighted bound need not cover: bound this silo's own.
        inverse = _own_bound_inverse(design, standardised, events)
    if proximal_mu:
        # The proximal term adds mu to the Hessian, so the bound must too, or steps overshoot.
        bound = np.linalg.pinv(inverse, hermitian=True) + proximal_mu * np.eye(len(theta))
        inverse = np.asarray(np.linalg.pinv(bound, hermitian=True), dtype=np.float64)
    for _ in range(epochs):
        step = gradient(theta, design, standardised, events) + proximal_mu * (theta - start)
        theta = theta - inverse @ step
    return theta


def _own_bound_inverse(design: Design, standardised: Matrix, events: Vector) -> Matrix:
    weights = np.where(events == 1, design.class_weights[1], design.class_weights[0])
    bound = 0.25 * (standardised * weights[:, None]).T @ standardised / max(len(events), 1)
    d = bound.shape[0] - 1
    bound[np.arange(d), np.arange(d)] += 1.0 / design.total_rows
    return np.asarray(np.linalg.pinv(bound, hermitian=True), dtype=np.float64)


def margin(theta: Vector, design: Design, schema: AgreedSchema, frame: Any) -> Vector:
    """Log-odds of the event for each row of ``frame``."""
    return np.asarray(design.standardised(raw_design(schema, frame)) @ theta, dtype=np.float64)


def as_estimator(theta: Vector, design: Design, schema: AgreedSchema) -> Logistic:
    """The federated theta as the tabular task's logistic estimator (same JSON file, same serving)."""
    return Logistic(
        schema.columns,
        {
            "coefficients": theta[:-1].tolist(),
            "intercept": float(theta[-1]),
            "mean": design.mean.tolist(),
            "scale": design.scale.tolist(),
        },
    )
