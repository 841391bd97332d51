"""Test-set evaluation of a tabular classifier: discrimination, calibration, comparison with
the baseline model, explanations and fairness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from forgeline.evaluate.fairness import (
    MIN_GROUP_SIZE,
    binary_fairness,
    group_tables,
    sensitive_groups,
)
from forgeline.evaluate.metrics import expected_calibration_error, reliability_curve
from forgeline.evaluate.plots import (
    confusion_matrix_png,
    contribution_summary_png,
    reliability_png,
    score_distribution_png,
)
from forgeline.tasks.base import Evaluation, ReportSection
from forgeline.tasks.tabular.calibration import brier
from forgeline.tasks.tabular.columns import features_matrix
from forgeline.tasks.tabular.data import EVENT
from forgeline.tasks.tabular.scorecard import points

if TYPE_CHECKING:
    from forgeline.tasks.tabular.model import Scorer, TabularClassifier

SUMMARY_PLOT_ROWS = 2000


def _discrimination(events: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    from forgeline.tasks.tabular.model import ks_statistic

    ks, _ = ks_statistic(events, probability)
    return {
        "roc_auc": float(roc_auc_score(events, probability)),
        "pr_auc": float(average_precision_score(events, probability)),
        "ks": ks,
        "brier": brier(probability, events),
        "expected_calibration_error": expected_calibration_error(probability, events.astype(bool)),
    }


def evaluate_tabular(model: TabularClassifier, data: pd.DataFrame) -> Evaluation:
    settings = model.settings
    events = data[EVENT].to_numpy()
    features = features_matrix(data, settings.columns)
    scorers: list[tuple[str, Scorer]] = [(f"{model.main.estimator.kind} (served)", model.main)]
    if model.baseline is not None:
        scorers.append((f"{model.baseline.estimator.kind} (baseline)", model.baseline))
    probability = model.main.probability(features)
    measured = _discrimination(events, probability)
    decisions = (probability >= settings.threshold).astype(int)
    confusion = np.array(
        [[int(((events == t) & (decisions == p)).sum()) for p in (0, 1)] for t in (0, 1)],
        dtype=np.int64,
    )
    comparison = pd.DataFrame(
        [{"model": name, **_discrimination(events, s.probability(features))} for name, s in scorers]
    )
    contributions, _ = model.main.estimator.contributions(features)
    importance = pd.DataFrame(
        {
            "feature": [c.name for c in settings.columns],
            "mean |contribution|": np.abs(contributions).mean(axis=0),
        }
    ).sort_values("mean |contribution|", ascending=False)
    warnings: list[str] = []
    if len(comparison) > 1 and comparison["roc_auc"].iloc[1] > comparison["roc_auc"].iloc[0]:
        warnings.append(
            f"the baseline {comparison['model'].iloc[1]} beats the served model on test ROC-AUC "
            f"({comparison['roc_auc'].iloc[1]:.4f} vs {comparison['roc_auc'].iloc[0]:.4f}); "
            f"consider model.kind: {model.baseline.estimator.kind if model.baseline else ''}"
        )
    metrics: dict[str, Any] = {
        "examples": len(events),
        "event_rate": float(events.mean()),
        **measured,
        "decision_threshold": settings.threshold,
        "confusion_matrix": {"labels": model.labels, "counts": confusion.tolist()},
        "comparison": comparison.to_dict(orient="records"),
        "feature_importance": importance.to_dict(orient="records"),
    }
    summary = [
        ("examples", str(len(events))),
        ("ROC-AUC", f"{measured['roc_auc']:.4f}"),
        ("PR-AUC", f"{measured['pr_auc']:.4f}"),
        ("KS", f"{measured['ks']:.4f}"),
        ("Brier", f"{measured['brier']:.4f}"),
        ("calibration error (ECE)", f"{measured['expected_calibration_error']:.4f}"),
        (f"'{settings.above}' rate at {settings.threshold:.3f}", f"{decisions.mean():.3f}"),
    ]
    sample = slice(0, min(len(data), SUMMARY_PLOT_ROWS))
    shown = pd.DataFrame(features[sample], columns=[c.name for c in settings.columns])
    sections = [
        ReportSection(
            title="Model comparison",
            paragraphs=[
                "Both models were trained on the same data; the first is served.",
                *(f"Warning: {w}" for w in warnings),
            ],
            tables=[comparison],
        ),
        ReportSection(
            title="Calibration",
            paragraphs=["Predicted probability against the observed event rate per bin."],
            figures_png=[
                reliability_png(
                    reliability_curve(probability, events.astype(bool)),
                    measured["expected_calibration_error"],
                    ("predicted event probability", "observed event rate"),
                )
            ],
        ),
        ReportSection(
            title=f"Decisions at threshold {settings.threshold:.3f}",
            figures_png=[confusion_matrix_png(confusion, model.labels)],
        ),
        ReportSection(
            title="Score distribution",
            figures_png=[
                score_distribution_png(
                    points(probability, settings.scorecard),
                    events,
                    (model.labels[0], model.labels[1]),
                )
            ],
        ),
        ReportSection(
            title="What drives the predictions (SHAP)",
            paragraphs=["Mean absolute contribution to the log-odds of the event, per feature."],
            tables=[importance],
            figures_png=[contribution_summary_png(contributions[sample], shown)],
        ),
    ]
    if settings.sensitive:
        groups = sensitive_groups(data, settings.sensitive, settings.bands)
        fairness = binary_fairness(events, decisions, probability, groups)
        metrics["fairness"] = {f.attribute: f.to_json() for f in fairness}
        fairness_warnings = [
            w for f in fairness for w in f.warnings(settings.fairness_max_difference)
        ]
        metrics["fairness_warnings"] = fairness_warnings
        warnings += fairness_warnings
        paragraphs = [
            f"Per group at the decision threshold: selection rate (share decided '{settings.above}'), "
            "true and false positive rates, and ROC-AUC. Differences above "
            f"{settings.fairness_max_difference:.2f} are flagged. Groups of fewer than "
            f"{MIN_GROUP_SIZE} rows are shown but left out of the differences."
        ] + [f"Warning: {w}" for w in fairness_warnings]
        tables = group_tables(fairness)
        tables.append(
            pd.DataFrame(
                [
                    {
                        "attribute": f.attribute,
                        "demographic parity difference": f.demographic_parity_difference,
                        "equalized odds difference": f.equalized_odds_difference,
                    }
                    for f in fairness
                ]
            )
        )
        sections.append(ReportSection(title="Fairness", paragraphs=paragraphs, tables=tables))
        for f in fairness:
            summary.append(
                (
                    f"{f.attribute} DPD / EOD",
                    f"{f.demographic_parity_difference:.3f} / {f.equalized_odds_difference:.3f}",
                )
            )
    return Evaluation(
        metrics=metrics,
        summary=summary,
        sections=sections,
        warnings=warnings,
    )
