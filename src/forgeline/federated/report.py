"""The federation's report: what federation gained over each silo alone, what it cost against
pooling, and what crossed the network, for the terminal and ``report.html``."""

from __future__ import annotations

import math

import pandas as pd

from forgeline.federated.comparison import OVERALL, Comparison
from forgeline.federated.server import FederationOutcome
from forgeline.federated.trees import WHAT_TREES_REVEAL
from forgeline.tasks.base import Evaluation, ReportSection

CONVERGED = 1e-3
"""A round has converged once its validation log-loss is within this (relative) of the last."""

WHAT_IS_SHARED = (
    "What left each silo: its column names, kinds, category levels and medians; per-class sums "
    "of outer products of its design matrix (which give means, spreads and correlations of its "
    "features, never a row); the model's coefficients after its local steps each round; sums "
    "of Platt-scaling gradients and a histogram of its validation scores. Coefficients and "
    "moments still describe the silo's data in aggregate: with few rows in a silo they can "
    "reveal much about those rows."
)


def rounds_to_converge(outcome: FederationOutcome) -> int | None:
    """The first round whose validation score (log-loss of averaged models, ROC-AUC of a
    cycled booster) is within ``CONVERGED`` of the best one's."""
    for key, best in (("validation_log_loss", min), ("validation_roc_auc", max)):
        values = [r.get(key) for r in outcome.rounds]
        measured = [v for v in values if v is not None and not math.isnan(v)]
        if measured:
            target = best(measured)
            return next(
                i + 1
                for i, v in enumerate(values)
                if v is not None and abs(v - target) <= CONVERGED * abs(target)
            )
    return None


def epsilon(outcome: FederationOutcome) -> float | None:
    """The privacy budget spent by the whole training, when it ran with differential privacy."""
    spent = [r["epsilon"] for r in outcome.rounds if r.get("epsilon") is not None]
    return spent[-1] if spent else None


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def summary_rows(
    outcome: FederationOutcome, comparison: Comparison | None
) -> list[tuple[str, str]]:
    """The terminal's table; ROC-AUC rows only where a simulation could compare."""
    sent = sum(r["bytes_sent"] + r["bytes_received"] for r in outcome.rounds)
    converged = rounds_to_converge(outcome)
    spent = epsilon(outcome)
    rows = [("silos", str(len(outcome.silos)))]
    if comparison is not None:
        alone = [comparison.auc(name) for name in comparison.silo_alone_rows]
        best_alone = max((a for a in alone if not math.isnan(a)), default=float("nan"))
        per_silo = [c for c in comparison.table.columns if c != OVERALL]
        worst = min(per_silo, key=lambda c: comparison.auc("federated", c))
        federated, pooled = comparison.auc("federated"), comparison.auc("pooled")
        rows += [
            ("ROC-AUC pooled (ceiling)", _fmt(pooled)),
            ("ROC-AUC federated", _fmt(federated)),
            ("federated - pooled", _fmt(federated - pooled)),
            ("ROC-AUC best silo alone", _fmt(best_alone)),
            (f"worst silo (federated): {worst}", _fmt(comparison.auc("federated", worst))),
        ]
    else:
        rows.append(("validation ROC-AUC (all silos)", _fmt(outcome.validation_roc_auc)))
    rows += [
        ("rounds", str(len(outcome.rounds))),
        ("rounds to converge", "-" if converged is None else str(converged)),
        ("model traffic (all rounds)", f"{sent / 1e3:.1f} kB"),
    ]
    if spent is not None:
        rows.append(("epsilon (differential privacy)", f"{spent:.3g}"))
    return rows


def federation_evaluation(outcome: FederationOutcome, comparison: Comparison | None) -> Evaluation:
    rounds = pd.DataFrame(outcome.rounds)
    sections: list[ReportSection] = []
    if comparison is not None:
        sections.append(
            ReportSection(
                "ROC-AUC by how the model was trained and where it was tested",
                [
                    "Pooled: every silo's training rows put together (what federation aims for). "
                    "Federated: trained by the silos together, rows staying put. Alone: one silo's "
                    "rows only. Columns are each silo's test part and all test rows together."
                ],
                [
                    comparison.table.map(
                        lambda v: round(v, 4) if not math.isnan(v) else None
                    ).reset_index(names="trained")
                ],
            )
        )
    sections += [
        ReportSection(
            "Rounds",
            [
                "Per training round: silos that replied and failed, the model's bytes each way, "
                "and the validation log-loss of the global model (weighted over silos)."
            ],
            [rounds] if len(rounds) else [],
        ),
        ReportSection(
            "What crossed the network",
            [
                WHAT_IS_SHARED,
                *([WHAT_TREES_REVEAL] if outcome.estimator.kind == "lightgbm" else []),
            ],
        ),
    ]
    if outcome.refused:
        sections.append(
            ReportSection(
                "Refused silos",
                [f"{silo}: {reason}" for silo, reason in outcome.refused.items()],
            )
        )
    metrics = {
        "roc_auc": None if comparison is None else comparison.table.to_dict(orient="index"),
        "rounds": outcome.rounds,
        "refused": outcome.refused,
    }
    return Evaluation(metrics, summary_rows(outcome, comparison), sections)
