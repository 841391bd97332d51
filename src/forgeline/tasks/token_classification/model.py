"""The token classifier: a fine-tuned transformer encoder that returns the entities of a text
as typed character spans with scores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from transformers import AutoModelForTokenClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from forgeline.base_models import resolve_base_model
from forgeline.config.entities import TokenClassificationConfig
from forgeline.config.load import Project
from forgeline.encoders.runtime import Encoder, TorchEncoder, load_encoder
from forgeline.errors import NotSupportedError
from forgeline.tasks.base import Capability, DataSplits, Evaluation, Notify, Prediction
from forgeline.tasks.text_inputs import check_texts, text_input_schema, texts_from_table
from forgeline.tasks.token_classification.data import TEXT, prepare_entity_data
from forgeline.tasks.token_classification.decoding import best_tags
from forgeline.tasks.token_classification.inference import window_logits, word_probabilities
from forgeline.tasks.token_classification.tagging import (
    OUTSIDE,
    CharSpan,
    FoundEntity,
    entities_from_tags,
    tokenize,
)

hf_logging.disable_progress_bar()

TASK_FILE = "task.json"


class TokenClassifier:
    """Text in, entities out: ``fit``, ``predict``, ``evaluate``, ``compress``, ``save``,
    ``load``."""

    name: ClassVar[str] = "token-classification"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"predict"})

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Any,
        tags: list[str],
        max_length: int,
        stride: int,
        min_score: dict[str, float],
        training_metrics: dict[str, Any] | None = None,
    ) -> None:
        self._encoder = encoder
        self._tokenizer = tokenizer
        self._tags = tags
        self._max_length = max_length
        self._stride = stride
        self._min_score = dict(min_score)
        self._training_metrics = training_metrics or {}

    # -- the Task interface ------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """The entity types the model finds."""
        return sorted({tag[2:] for tag in self._tags if tag != OUTSIDE})

    @property
    def training_metrics(self) -> dict[str, Any]:
        return dict(self._training_metrics)

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @classmethod
    def prepare_data(cls, project: Project) -> DataSplits:
        config = project.config_for(TokenClassificationConfig)
        resolve_base_model(config.base_model, project.root)  # fail before any data work
        return prepare_entity_data(project)

    @classmethod
    def fit(cls, project: Project, data: DataSplits, notify: Notify) -> Self:
        from forgeline.tasks.token_classification.training import train_token_classifier

        config = project.config_for(TokenClassificationConfig)
        trained = train_token_classifier(project, data, notify)
        model = cls(
            TorchEncoder(trained.model),
            trained.tokenizer,
            trained.tags,
            config.training.max_length,
            config.training.stride,
            config.min_score,
            trained.metrics,
        )
        unknown = sorted(set(config.min_score) - set(model.labels))
        if unknown:
            notify(
                f"min_score names type(s) the model does not find: {', '.join(unknown)}; "
                f"it finds {', '.join(model.labels)}"
            )
        return model

    def save(self, directory: Path) -> None:
        self._encoder.save(directory)
        self._tokenizer.save_pretrained(directory)
        settings = {
            "tags": self._tags,
            "max_length": self._max_length,
            "stride": self._stride,
            "min_score": self._min_score,
        }
        (directory / TASK_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = json.loads((directory / TASK_FILE).read_text(encoding="utf-8"))
        metrics_file = directory / "metrics.json"
        return cls(
            load_encoder(directory, AutoModelForTokenClassification),
            AutoTokenizer.from_pretrained(directory),
            settings["tags"],
            settings["max_length"],
            settings["stride"],
            settings["min_score"],
            json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        )

    def input_schema(self) -> dict[str, Any]:
        return text_input_schema("The text to find entities in.")

    def prediction_schema(self) -> dict[str, Any]:
        offset = {"type": "integer", "minimum": 0}
        entity = {
            "type": "object",
            "properties": {
                "type": {"enum": self.labels},
                "text": {"type": "string", "description": "The input's text from start to end."},
                "start": {**offset, "description": "Offset of the first character (code points)."},
                "end": {**offset, "description": "Offset one past the last character."},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["type", "text", "start", "end", "score"],
            "additionalProperties": False,
        }
        return {
            "type": "object",
            "properties": {
                "entities": {
                    "type": "array",
                    "items": entity,
                    "description": "In order of start, not overlapping.",
                }
            },
            "required": ["entities"],
            "additionalProperties": False,
        }

    def explanation_schema(self) -> dict[str, Any]:
        raise NotSupportedError("token classifiers have no explanations yet")

    def check_inputs(self, inputs: Sequence[Any], max_input_chars: int | None = None) -> None:
        check_texts(inputs, max_input_chars)

    def inputs_from_table(self, frame: pd.DataFrame, source: str) -> list[Any]:
        """Texts from a column named ``text``."""
        return texts_from_table(frame, [TEXT], source)

    def parse_cli_input(self, text: str) -> Any:
        return text

    def predict(self, inputs: Sequence[Any]) -> list[Prediction]:
        """Per input, ``entities``: each with its ``type``, ``text``, character ``start`` and
        ``end`` in the input as sent, and ``score`` (the mean probability of its words' tags)."""
        texts = cast(Sequence[str], inputs)
        return [
            {
                "entities": [
                    {
                        "type": found.type,
                        "text": text[found.start : found.end],
                        "start": found.start,
                        "end": found.end,
                        "score": round(found.score, 6),
                    }
                    for found in entities
                ]
            }
            for text, entities in zip(texts, self.find_entities(texts), strict=True)
        ]

    def compress(
        self, project: Project, data: DataSplits, notify: Notify
    ) -> tuple[Self, dict[str, Any]]:
        from forgeline.compress.gate import compress_encoder_model
        from forgeline.tasks.token_classification.evaluation import entity_f1

        settings = project.config_for(TokenClassificationConfig).compress
        texts = list(data.validation[TEXT])

        def validation_f1(candidate: TokenClassifier) -> float:
            return entity_f1(candidate, data.validation)

        compressed, report = compress_encoder_model(
            self, texts, validation_f1, "entity_f1", "entity F1", settings, notify
        )
        return compressed, report

    def explain(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotSupportedError("explanations of token classifiers are not available yet")

    def evaluate(self, data: pd.DataFrame) -> Evaluation:
        from forgeline.tasks.token_classification.evaluation import evaluate_token_classifier

        return evaluate_token_classifier(self, data)

    # -- helpers -----------------------------------------------------------------------------

    def find_entities(self, texts: Sequence[str]) -> list[list[FoundEntity]]:
        """Per text, its entities above the per-type ``min_score``."""
        return self.words_and_entities(texts)[1]

    def words_and_entities(
        self, texts: Sequence[str]
    ) -> tuple[list[list[CharSpan]], list[list[FoundEntity]]]:
        """Per text, the words the model tags (character spans) and the entities it finds
        above the per-type ``min_score``."""
        if not texts:
            return [], []
        tokenized, probabilities = word_probabilities(
            self._encoder, self._tokenizer, texts, self._max_length, self._stride
        )
        found = []
        for words, rows in zip(tokenized.words, probabilities, strict=True):
            best = best_tags(rows, self._tags)
            tags = [self._tags[i] for i in best]
            scores = [float(rows[i, j]) for i, j in enumerate(best)]
            entities = entities_from_tags(words, tags, scores)
            found.append([e for e in entities if e.score >= self._min_score.get(e.type, 0.0)])
        return tokenized.words, found

    def logits(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The logits of every token of every window, one row each (for parity checks)."""
        windows = tokenize(self._tokenizer, texts, self._max_length, self._stride).windows
        return np.concatenate(window_logits(self._encoder, self._tokenizer, windows))

    def with_encoder(self, encoder: Encoder) -> Self:
        return self._copy(encoder, self._training_metrics)

    def with_metrics(self, metrics: dict[str, Any]) -> Self:
        return self._copy(self._encoder, metrics)

    def _copy(self, encoder: Encoder, metrics: dict[str, Any]) -> Self:
        return type(self)(
            encoder,
            self._tokenizer,
            self._tags,
            self._max_length,
            self._stride,
            self._min_score,
            dict(metrics),
        )
