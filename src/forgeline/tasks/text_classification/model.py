"""The text classifier: a fine-tuned transformer encoder with an optional fallback label."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from forgeline.base_models import resolve_base_model
from forgeline.config import Project, TextClassificationConfig
from forgeline.config.data_files import BandConfig
from forgeline.encoders.batching import batched_logits
from forgeline.encoders.runtime import Encoder, TorchEncoder, load_encoder, softmax
from forgeline.errors import NotSupportedError
from forgeline.tasks.base import Capability, DataSplits, Evaluation, Notify, Prediction
from forgeline.tasks.text_classification.data import LABEL, TEXT, prepare_text_data
from forgeline.tasks.text_classification.fallback import Fallback
from forgeline.tasks.text_inputs import check_texts, text_input_schema, texts_from_table

# Transformers' own bars (weight loading, shard writing) are noise next to Forgeline's output.
hf_logging.disable_progress_bar()

TASK_FILE = "task.json"


@dataclass(frozen=True)
class FairnessAudit:
    """Which columns of the evaluation data to audit, and the bound on between-group gaps."""

    sensitive: list[str]
    bands: dict[str, BandConfig]
    max_difference: float

    def to_json(self) -> dict[str, Any]:
        return {
            "sensitive": self.sensitive,
            "bands": {name: band.model_dump() for name, band in self.bands.items()},
            "max_difference": self.max_difference,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FairnessAudit:
        bands = {name: BandConfig(**band) for name, band in data["bands"].items()}
        return cls(data["sensitive"], bands, data["max_difference"])


class TextClassifier:
    """Text in, one label out: ``fit``, ``predict``, ``evaluate``, ``save`` and ``load``."""

    name: ClassVar[str] = "text-classification"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"predict"})

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Any,
        labels: list[str],
        max_length: int,
        fallback: Fallback | None,
        training_metrics: dict[str, Any] | None = None,
        text_column: str = TEXT,
        audit: FairnessAudit | None = None,
    ) -> None:
        self.encoder = encoder
        self._tokenizer = tokenizer
        self._labels = labels
        self._max_length = max_length
        self.fallback = fallback
        self._training_metrics = training_metrics or {}
        self._text_column = text_column
        self.audit = audit

    # -- the Task interface ------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def training_metrics(self) -> dict[str, Any]:
        return dict(self._training_metrics)

    @classmethod
    def prepare_data(cls, project: Project) -> DataSplits:
        config = project.config_for(TextClassificationConfig)
        resolve_base_model(config.base_model, project.root)  # fail before any data work
        return prepare_text_data(project)

    @classmethod
    def fit(cls, project: Project, data: DataSplits, notify: Notify) -> Self:
        from forgeline.tasks.text_classification.training import train_text_classifier

        config = project.config_for(TextClassificationConfig)
        trained = train_text_classifier(project, data, notify)
        return cls(
            TorchEncoder(trained.model),
            trained.tokenizer,
            trained.labels,
            trained.max_length,
            trained.fallback,
            trained.metrics,
            config.data.text_column,
            FairnessAudit(
                list(config.data.sensitive), dict(config.data.bands), config.fairness_max_difference
            )
            if config.data.sensitive
            else None,
        )

    def save(self, directory: Path) -> None:
        self.encoder.save(directory)
        self._tokenizer.save_pretrained(directory)
        settings = {
            "labels": self._labels,
            "max_length": self._max_length,
            "text_column": self._text_column,
            "fairness": None if self.audit is None else self.audit.to_json(),
            "fallback": None
            if self.fallback is None
            else {
                "label": self.fallback.label,
                "threshold": self.fallback.threshold,
                "score": self.fallback.score,
            },
        }
        (directory / TASK_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = json.loads((directory / TASK_FILE).read_text(encoding="utf-8"))
        encoder = load_encoder(directory, AutoModelForSequenceClassification)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        fallback = settings["fallback"]
        metrics_file = directory / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        return cls(
            encoder,
            tokenizer,
            settings["labels"],
            settings["max_length"],
            # Models saved before the energy score existed thresholded the top probability.
            Fallback(fallback["label"], fallback["threshold"], fallback.get("score", "probability"))
            if fallback
            else None,
            metrics,
            settings.get("text_column", TEXT),
            FairnessAudit.from_json(settings["fairness"]) if settings.get("fairness") else None,
        )

    def input_schema(self) -> dict[str, Any]:
        return text_input_schema("The text to classify.")

    def prediction_schema(self) -> dict[str, Any]:
        probability = {"type": "number", "minimum": 0, "maximum": 1}
        returned = [*self._labels]
        if self.fallback is not None and self.fallback.label not in returned:
            returned.append(self.fallback.label)
        return {
            "type": "object",
            "properties": {
                "label": {"enum": returned},
                "score": {**probability, "description": "The probability of label."},
                "fallback": {
                    "type": "boolean",
                    "description": "Whether the confidence threshold chose the label.",
                },
                "probabilities": {
                    "type": "object",
                    "properties": {label: probability for label in self._labels},
                    "required": self._labels,
                    "additionalProperties": False,
                },
            },
            "required": ["label", "score", "fallback", "probabilities"],
            "additionalProperties": False,
        }

    def explanation_schema(self) -> dict[str, Any]:
        raise NotSupportedError("text classifiers have no explanations yet")

    def check_inputs(self, inputs: Sequence[Any], max_input_chars: int | None = None) -> None:
        check_texts(inputs, max_input_chars)

    def inputs_from_table(self, frame: pd.DataFrame, source: str) -> list[Any]:
        """Texts from the training text column, or from a column named ``text``."""
        return texts_from_table(frame, [self._text_column, TEXT], source)

    def parse_cli_input(self, text: str) -> Any:
        return text

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        """Per input: ``label``; ``score``, the model's probability of that label (0 for a
        fallback label that is not a trained class); ``fallback``, whether the label comes from
        the confidence threshold rather than the model's top class; all ``probabilities``."""
        logits = self.logits(inputs)
        probabilities = softmax(logits)
        predictions = []
        for label, row in zip(self.predicted_labels(logits), probabilities, strict=True):
            by_label = {name: float(p) for name, p in zip(self._labels, row, strict=True)}
            predictions.append(
                {
                    "label": label,
                    "score": round(by_label.get(label, 0.0), 6),
                    "fallback": label != self._labels[int(row.argmax())],
                    "probabilities": {name: round(p, 6) for name, p in by_label.items()},
                }
            )
        return predictions

    def compress(
        self, project: Project, data: DataSplits, notify: Notify
    ) -> tuple[Self, dict[str, Any]]:
        from forgeline.tasks.text_classification.compression import compress_text_classifier

        settings = project.config_for(TextClassificationConfig).compress
        compressed, report = compress_text_classifier(self, data, settings, notify)
        return cast(Self, compressed), report

    def explain(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotSupportedError(
            "explanations of text classifiers (token attributions) are not available yet"
        )

    def evaluate(self, data: pd.DataFrame) -> Evaluation:
        from forgeline.tasks.text_classification.evaluation import evaluate_text_classifier

        return evaluate_text_classifier(self, data)

    # -- helpers -----------------------------------------------------------------------------

    def _fallback_index(self) -> int:
        """The fallback label's index; one past the classes when it is not a trained class."""
        assert self.fallback is not None
        if self.fallback.label in self._labels:
            return self._labels.index(self.fallback.label)
        return len(self._labels)

    def _label_name(self, index: int) -> str:
        if index == len(self._labels) and self.fallback is not None:
            return self.fallback.label
        return self._labels[index]

    def logits(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return batched_logits(
            self.encoder, self._tokenizer, texts, self._max_length, len(self._labels)
        )

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def with_encoder(self, encoder: Encoder) -> TextClassifier:
        """The same classifier (labels, threshold, settings) running on another runtime."""
        return self._copy(encoder, self._training_metrics)

    def with_metrics(self, metrics: dict[str, Any]) -> TextClassifier:
        return self._copy(self.encoder, metrics)

    def _copy(self, encoder: Encoder, metrics: dict[str, Any]) -> TextClassifier:
        return TextClassifier(
            encoder,
            self._tokenizer,
            self.labels,
            self._max_length,
            self.fallback,
            dict(metrics),
            self._text_column,
            self.audit,
        )

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return softmax(self.logits(texts))

    def predicted_labels(self, logits: NDArray[np.float32]) -> list[str]:
        """The label of each row of ``logits``: the top class, or the fallback label when the
        fallback rule's confidence score is below its threshold."""
        if self.fallback is None:
            predicted = logits.argmax(axis=1)
        else:
            predicted = self.fallback.apply(logits, self._fallback_index())
        return [self._label_name(int(i)) for i in predicted]


__all__ = ["LABEL", "TEXT", "Fallback", "TextClassifier"]
