"""Test-set evaluation of a text classifier: metrics, calibration, confusions, report sections."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forgeline.encoders.runtime import softmax
from forgeline.evaluate.fairness import (
    MIN_GROUP_SIZE,
    group_tables,
    multiclass_fairness,
    sensitive_groups,
)
from forgeline.evaluate.metrics import classification_metrics
from forgeline.evaluate.plots import confusion_matrix_png, reliability_png
from forgeline.tasks.base import Evaluation, ReportSection
from forgeline.tasks.text_classification.data import LABEL, TEXT

if TYPE_CHECKING:
    from forgeline.tasks.text_classification.model import TextClassifier


def evaluate_text_classifier(model: TextClassifier, data: pd.DataFrame) -> Evaluation:
    texts = list(data[TEXT])
    truth = list(data[LABEL])
    logits = model.logits(texts)
    probabilities = softmax(logits)
    predicted = model.predicted_labels(logits)
    labels = model.labels
    if model.fallback is not None and model.fallback.label not in labels:
        labels = [*labels, model.fallback.label]
    labels += sorted(set(truth) - set(labels))  # unseen test labels still count as errors
    measured = classification_metrics(truth, predicted, probabilities.max(axis=1), labels)
    metrics: dict[str, Any] = {"examples": len(truth), **measured.to_json()}
    summary = [
        ("examples", str(len(truth))),
        ("accuracy", f"{measured.accuracy:.4f}"),
        ("macro F1", f"{measured.macro_f1:.4f}"),
        ("micro F1", f"{measured.micro_f1:.4f}"),
        ("calibration error (ECE)", f"{measured.ece:.4f}"),
    ]
    if model.fallback is not None:
        fallback = model.fallback.label
        truth_array, predicted_array = (
            np.array(truth, dtype=object),
            np.array(predicted, dtype=object),
        )
        in_scope = truth_array != fallback
        in_scope_accuracy = (
            float((predicted_array[in_scope] == truth_array[in_scope]).mean())
            if in_scope.any()
            else None
        )
        fallback_recall = (
            float((predicted_array[~in_scope] == fallback).mean()) if (~in_scope).any() else None
        )
        metrics["fallback"] = {
            "label": fallback,
            "threshold": model.fallback.threshold,
            "score": model.fallback.score,
            "in_scope_accuracy": in_scope_accuracy,
            "fallback_recall": fallback_recall,
        }
        if in_scope_accuracy is not None:
            summary.append(("in-scope accuracy", f"{in_scope_accuracy:.4f}"))
        if fallback_recall is not None:
            summary.append((f"'{fallback}' recall", f"{fallback_recall:.4f}"))

    per_class = pd.DataFrame(measured.per_class).sort_values("f1")
    pairs = pd.DataFrame(
        measured.worst_confused_pairs(), columns=["true label", "predicted as", "count"]
    )
    sections = [
        ReportSection(
            title="Per-class results",
            paragraphs=["Sorted from the weakest class (lowest F1) to the strongest."],
            tables=[per_class],
        ),
        ReportSection(
            title="Most confused class pairs",
            paragraphs=[
                "The most frequent mistakes: inputs of the true label predicted as another."
            ]
            if len(pairs)
            else ["No mistakes on this data."],
            tables=[pairs] if len(pairs) else [],
        ),
        ReportSection(
            title="Confusion matrix",
            figures_png=[confusion_matrix_png(measured.confusion, labels)],
        ),
        ReportSection(
            title="Calibration",
            paragraphs=[
                "How often the model is right at each level of confidence; points below the "
                "diagonal are over-confident. Numbers are predictions per bin."
            ],
            figures_png=[reliability_png(measured.reliability, measured.ece)],
        ),
    ]
    if model.fallback is not None:
        sections.insert(
            0,
            ReportSection(
                title="Out-of-scope handling",
                paragraphs=[
                    f"{model.fallback.describe().capitalize()} (chosen on the validation split) "
                    f"are returned as '{model.fallback.label}'."
                ],
            ),
        )
    warnings: list[str] = []
    if model.audit is not None:
        groups = sensitive_groups(data, model.audit.sensitive, model.audit.bands)
        audited = multiclass_fairness(truth, predicted, groups)
        metrics["fairness"] = {a.attribute: a.to_json() for a in audited}
        warnings = [w for a in audited for w in a.warnings(model.audit.max_difference)]
        tables = group_tables(audited)
        for result in audited:
            summary.append(
                (f"{result.attribute} accuracy gap", f"{result.accuracy_difference:.3f}")
            )
        sections.append(
            ReportSection(
                title="Fairness",
                paragraphs=[
                    "Accuracy and macro-F1 per group; gaps above "
                    f"{model.audit.max_difference:.2f} are flagged. Groups of fewer than "
                    f"{MIN_GROUP_SIZE} rows are shown but left out of the gaps.",
                    *(f"Warning: {w}" for w in warnings),
                ],
                tables=tables,
            )
        )
    return Evaluation(metrics=metrics, summary=summary, sections=sections, warnings=warnings)
