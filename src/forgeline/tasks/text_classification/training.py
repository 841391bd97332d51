"""Fine-tuning with Hugging Face ``Trainer``: dynamic padding, length-grouped batches, early
stopping on validation macro-F1, and the fallback threshold chosen on validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    set_seed,
)

from forgeline.base_models import resolve_base_model
from forgeline.config import Project, TextClassificationConfig
from forgeline.encoders.runtime import TorchEncoder
from forgeline.encoders.training import Metric, fine_tune, with_fresh_head
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.text_classification.data import LABEL, TEXT
from forgeline.tasks.text_classification.fallback import (
    apply_threshold,
    choose_threshold,
    in_scope_accuracy_and_fallback_recall,
)
from forgeline.tasks.text_classification.inference import class_probabilities


@dataclass
class TrainedText:
    model: PreTrainedModel
    tokenizer: Any
    labels: list[str]
    fallback_label: str | None
    threshold: float
    metrics: dict[str, Any]


class _EncodedTexts(torch.utils.data.Dataset[dict[str, Any]]):
    """Tokenised texts with integer labels; padding happens per batch in the collator."""

    def __init__(self, encodings: dict[str, list[list[int]]], labels: list[int]) -> None:
        self._encodings = encodings
        self._labels = labels

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {key: values[index] for key, values in self._encodings.items()}
        item["labels"] = self._labels[index]
        return item


def _compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    predicted = np.asarray(prediction.predictions).argmax(axis=-1)
    truth = np.asarray(prediction.label_ids)
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def train_text_classifier(project: Project, data: DataSplits, notify: Notify) -> TrainedText:
    config = project.config_for(TextClassificationConfig)
    settings = config.training
    set_seed(settings.seed)
    labels = sorted(set(data.train[LABEL]))
    label_ids = {label: i for i, label in enumerate(labels)}
    base_dir = resolve_base_model(config.base_model, project.root)
    model, tokenizer = with_fresh_head(AutoModelForSequenceClassification, base_dir, labels)

    def encode(frame: Any) -> _EncodedTexts:
        encodings = tokenizer(list(frame[TEXT]), truncation=True, max_length=settings.max_length)
        # Validation labels unseen in training cannot be predicted; -100 is ignored by the loss.
        return _EncodedTexts(
            dict(encodings), [label_ids.get(label, -100) for label in frame[LABEL]]
        )

    tuned = fine_tune(
        model,
        settings,
        (encode(data.train), encode(data.validation)),
        DataCollatorWithPadding(tokenizer),
        _compute_metrics,
        Metric("macro_f1", "macro-F1"),
        notify,
    )
    best_model = tuned.model
    probabilities = class_probabilities(
        TorchEncoder(best_model),
        tokenizer,
        list(data.validation[TEXT]),
        settings.max_length,
        len(labels),
    )
    truth_labels = list(data.validation[LABEL])
    metrics: dict[str, Any] = {
        "train_seconds": round(tuned.seconds, 1),
        "train_examples": len(data.train),
        "epochs_run": tuned.epochs_run,
    }
    fallback_label: str | None = None
    threshold = 0.0
    predicted = probabilities.argmax(axis=1)
    if config.fallback is not None:
        fallback_label = config.fallback.label
        fallback_index = label_ids.get(fallback_label, len(labels))
        truth = np.array(
            [label_ids.get(t, fallback_index if t == fallback_label else -1) for t in truth_labels]
        )
        if config.fallback.threshold == "auto":
            threshold = choose_threshold(
                probabilities, truth, fallback_index, config.fallback.max_in_scope_accuracy_drop
            )
        else:
            threshold = float(config.fallback.threshold)
        predicted = apply_threshold(predicted, probabilities.max(axis=1), threshold, fallback_index)
        in_scope, recall = in_scope_accuracy_and_fallback_recall(predicted, truth, fallback_index)
        metrics.update(
            {
                "fallback_threshold": threshold,
                "validation_in_scope_accuracy": in_scope,
                "validation_fallback_recall": recall,
            }
        )
        notify(
            f"fallback '{fallback_label}' below confidence {threshold:.3f}: validation in-scope "
            f"accuracy {in_scope:.4f}"
            + (f", fallback recall {recall:.4f}" if recall is not None else "")
        )
    names = labels + (
        [fallback_label] if fallback_label and fallback_label not in label_ids else []
    )
    predicted_names = [names[i] for i in predicted]
    metrics["validation_accuracy"] = float(accuracy_score(truth_labels, predicted_names))
    metrics["validation_macro_f1"] = float(
        f1_score(truth_labels, predicted_names, average="macro", zero_division=0)
    )
    return TrainedText(best_model, tokenizer, labels, fallback_label, threshold, metrics)
