"""Fine-tuning a token classifier with Hugging Face ``Trainer``: one label per word on its first
sub-token (the others are left out of the loss), dynamic padding, length-grouped batches, early
stopping on validation entity F1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    EvalPrediction,
    PreTrainedModel,
    set_seed,
)

from forgeline.base_models import resolve_base_model
from forgeline.config.entities import TokenClassificationConfig
from forgeline.config.load import Project
from forgeline.encoders.heads import with_fresh_head
from forgeline.encoders.runtime import softmax
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.token_classification.data import ENTITIES, TEXT, entity_types
from forgeline.tasks.token_classification.decoding import best_tags
from forgeline.tasks.token_classification.tagging import (
    OUTSIDE,
    Window,
    misaligned_entities,
    tags_for_spans,
    tokenize,
)
from forgeline.training import Metric, fine_tune

IGNORED = -100
"""The label of sub-tokens the loss leaves out (PyTorch's cross-entropy ignore index)."""


@dataclass
class TrainedTagger:
    model: PreTrainedModel
    tokenizer: Any
    tags: list[str]
    metrics: dict[str, Any]


def tag_names(types: list[str]) -> list[str]:
    """O, then B- and I- of each entity type."""
    return [OUTSIDE, *(f"{prefix}-{kind}" for kind in types for prefix in ("B", "I"))]


class _LabelledWindows(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, windows: list[Window], labels: list[list[int]], misaligned: int) -> None:
        self._windows = windows
        self._labels = labels
        self.misaligned = misaligned
        """How many entities start or end inside a word (learnt as the whole word)."""

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def token_count(self) -> int:
        return sum(len(window) for window in self._windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self._windows[index].features, "labels": self._labels[index]}


def labelled_windows(
    tokenizer: Any, frame: Any, tag_ids: dict[str, int], max_length: int, stride: int
) -> _LabelledWindows:
    """Windows of the frame's texts, each word's tag on its first sub-token. Entity types the
    model does not know (seen only in validation) are labelled O."""
    tokenized = tokenize(tokenizer, list(frame[TEXT]), max_length, stride)
    word_tags = [
        [tag_ids.get(tag, 0) for tag in tags_for_spans(words, entities)]
        for words, entities in zip(tokenized.words, frame[ENTITIES], strict=True)
    ]
    labels = []
    for window in tokenized.windows:
        row = [IGNORED] * len(window)
        for word, position in window.first_tokens.items():
            row[position] = word_tags[window.text_index][word]
        labels.append(row)
    misaligned = sum(
        misaligned_entities(words, entities)
        for words, entities in zip(tokenized.words, frame[ENTITIES], strict=True)
    )
    return _LabelledWindows(tokenized.windows, labels, misaligned)


def _entity_f1(tags: list[str]) -> Any:
    """Validation entity F1 per window, decoded as predictions are (:func:`best_tags`)."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = np.asarray(prediction.predictions)
        truth = np.asarray(prediction.label_ids)
        gold_rows, predicted_rows = [], []
        for gold, window in zip(truth, logits, strict=True):
            kept = gold != IGNORED
            gold_tags = [tags[i] for i in gold[kept]]
            if gold_tags and gold_tags[0].startswith("I-"):  # an entity begun in the window before
                gold_tags[0] = "B-" + gold_tags[0][2:]
            gold_rows.append(gold_tags)
            predicted_rows.append([tags[i] for i in best_tags(softmax(window[kept]), tags)])
        score = f1_score(gold_rows, predicted_rows, mode="strict", scheme=IOB2, zero_division=0)
        return {"entity_f1": float(score)}

    return compute


def train_token_classifier(project: Project, data: DataSplits, notify: Notify) -> TrainedTagger:
    config = project.config_for(TokenClassificationConfig)
    settings = config.training
    set_seed(settings.seed)
    tags = tag_names(entity_types(data.train))
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    base_dir = resolve_base_model(config.base_model, project.root)
    model, tokenizer = with_fresh_head(AutoModelForTokenClassification, base_dir, tags)
    train_set, validation_set = (
        labelled_windows(tokenizer, frame, tag_ids, settings.max_length, settings.stride)
        for frame in (data.train, data.validation)
    )
    if train_set.misaligned:
        notify(
            f"{train_set.misaligned} training entities start or end inside a word; the model "
            "tags whole words, so it learns them as the words they touch"
        )
    tuned = fine_tune(
        model,
        settings,
        settings.epochs,
        (train_set, validation_set),
        DataCollatorForTokenClassification(tokenizer),
        _entity_f1(tags),
        Metric("entity_f1", "entity F1"),
        notify,
    )
    metrics: dict[str, Any] = {
        "train_seconds": round(tuned.seconds, 1),
        "train_examples": len(data.train),
        "train_windows": len(train_set),
        "epochs_run": tuned.epochs_run,
        "train_tokens_per_second": round(
            train_set.token_count * tuned.epochs_run / tuned.seconds, 1
        ),
        "validation_entity_f1": tuned.best_score,
    }
    return TrainedTagger(tuned.model, tokenizer, tags, metrics)
