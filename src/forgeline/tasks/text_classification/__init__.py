"""Text classification: fine-tune a pretrained encoder to label texts (e.g. support intents)."""

from forgeline.tasks.text_classification.model import TextClassifier

__all__ = ["TextClassifier"]
