"""Tabular classification: calibrated risk scores, scorecard points and reason codes."""

from forgeline.tasks.tabular.model import TabularClassifier

__all__ = ["TabularClassifier"]
