"""Token classification: typed entities found in text, returned as character spans."""

from forgeline.tasks.token_classification.model import TokenClassifier

__all__ = ["TokenClassifier"]
