"""Evaluation: classification metrics, calibration, plots and the self-contained HTML report."""

from forgeline.evaluate.metrics import (
    ClassificationMetrics,
    classification_metrics,
    expected_calibration_error,
    metrics_json,
)
from forgeline.evaluate.report import write_report

__all__ = [
    "ClassificationMetrics",
    "classification_metrics",
    "expected_calibration_error",
    "metrics_json",
    "write_report",
]
