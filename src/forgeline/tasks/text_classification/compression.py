"""Compressing a text classifier: the shared gate (:mod:`forgeline.compress.gate`) with
validation macro-F1 as the metric int8 may not cost more than allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sklearn.metrics import f1_score

from forgeline.compress.gate import compress_encoder_model
from forgeline.config.encoder import CompressConfig
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.text_classification.data import LABEL, TEXT

if TYPE_CHECKING:
    from forgeline.tasks.text_classification.model import TextClassifier


def compress_text_classifier(
    model: TextClassifier, data: DataSplits, settings: CompressConfig, notify: Notify
) -> tuple[TextClassifier, dict[str, Any]]:
    texts, truth = list(data.validation[TEXT]), list(data.validation[LABEL])

    def macro_f1(candidate: TextClassifier) -> float:
        predicted = candidate.predicted_labels(candidate.logits(texts))
        return float(f1_score(truth, predicted, average="macro", zero_division=0))

    return compress_encoder_model(model, texts, macro_f1, "macro_f1", "macro-F1", settings, notify)
