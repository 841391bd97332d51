"""Fine-tuning a token classifier with Hugging Face ``Trainer``: one label per word on its first
sub-token (the others are left out of the loss), dynamic padding, length-grouped batches, early
stopping on validation entity F1."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    EvalPrediction,
    PreTrainedModel,
    ProgressCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

from forgeline.base_models import resolve_base_model
from forgeline.config.entities import TokenClassificationConfig
from forgeline.config.load import Project
from forgeline.encoders.runtime import softmax
from forgeline.encoders.training import (
    EarlyStopping,
    KeepBestWeights,
    TrainingProgress,
    use_cpu,
)
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.token_classification.data import ENTITIES, TEXT, entity_types
from forgeline.tasks.token_classification.decoding import best_tags
from forgeline.tasks.token_classification.tagging import OUTSIDE, Window, tags_for_spans, tokenize

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
    def __init__(self, windows: list[Window], labels: list[list[int]]) -> None:
        self._windows = windows
        self._labels = labels

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
    return _LabelledWindows(tokenized.windows, labels)


def _entity_f1(tags: list[str]) -> Any:
    """Validation entity F1 per window, decoded as predictions are (:func:`best_tags`)."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = np.asarray(prediction.predictions)
        truth = np.asarray(prediction.label_ids)
        gold_rows, predicted_rows = [], []
        for gold, window in zip(truth, logits, strict=True):
            kept = gold != IGNORED
            gold_rows.append([tags[i] for i in gold[kept]])
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
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is expected here
    model = AutoModelForTokenClassification.from_pretrained(
        base_dir,
        num_labels=len(tags),
        id2label=dict(enumerate(tags)),
        label2id=tag_ids,
        use_safetensors=True,
    )
    hf_logging.set_verbosity_warning()
    train_set, validation_set = (
        labelled_windows(tokenizer, frame, tag_ids, settings.max_length, settings.stride)
        for frame in (data.train, data.validation)
    )
    checkpoints = tempfile.mkdtemp(prefix="forgeline-train-")
    try:
        args = TrainingArguments(
            output_dir=checkpoints,
            num_train_epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=max(64, settings.batch_size),
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of all steps
            weight_decay=settings.weight_decay,
            lr_scheduler_type="linear",
            train_sampling_strategy="group_by_length",  # similar lengths: far less padding
            eval_strategy="epoch",
            save_strategy="no",  # the best weights are kept in memory (KeepBestWeights)
            metric_for_best_model="entity_f1",
            greater_is_better=True,
            logging_strategy="no",
            report_to=[],
            seed=settings.seed,
            data_seed=settings.seed,
            use_cpu=use_cpu(settings.device),
            dataloader_num_workers=0,
        )
        best = KeepBestWeights("eval_entity_f1")
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=validation_set,
            data_collator=DataCollatorForTokenClassification(tokenizer),
            compute_metrics=_entity_f1(tags),
            callbacks=[
                EarlyStopping(early_stopping_patience=settings.early_stopping_patience),
                best,
                TrainingProgress({"eval_entity_f1": "entity F1", "eval_loss": "loss"}),
            ],
        )
        trainer.remove_callback(ProgressCallback)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        state = trainer.state
        if state.epoch is not None and state.epoch < settings.epochs - 1e-6:
            notify(
                f"stopped early after epoch {state.epoch:.0f} of {settings.epochs:g}: validation "
                f"entity F1 did not improve for {settings.early_stopping_patience} epoch(s); "
                f"keeping epoch {best.best_epoch or 0:.0f} (entity F1 {best.best_score or 0:.4f})"
            )
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    best_model = cast(PreTrainedModel, trainer.model)
    best_model.eval()
    metrics: dict[str, Any] = {
        "train_seconds": round(train_seconds, 1),
        "train_examples": len(data.train),
        "train_windows": len(train_set),
        "epochs_run": float(trainer.state.epoch or 0),
        "train_tokens_per_second": round(
            train_set.token_count * float(state.epoch or 0) / train_seconds, 1
        ),
        "validation_entity_f1": float(best.best_score or 0.0),
    }
    return TrainedTagger(best_model, tokenizer, tags, metrics)
