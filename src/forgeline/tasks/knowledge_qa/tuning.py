"""Fine-tuning the sentence encoder on the knowledge base's own phrasings and the training
questions: contrastive, with in-batch negatives (sentence-transformers'
MultipleNegativesRankingLoss), so a question moves towards its entry and away from the other
entries of its batch."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import (
    PreTrainedModel,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from forgeline.config.knowledge import NO_ANSWER, EncoderTuningConfig
from forgeline.errors import DataError
from forgeline.tasks.base import Notify
from forgeline.tasks.knowledge_qa.embedder import SentenceEmbedder
from forgeline.tasks.knowledge_qa.index import Embed
from forgeline.tasks.knowledge_qa.knowledge_base import KnowledgeBase
from forgeline.training import TrainingProgress, use_cpu


@dataclass(frozen=True)
class TuningPairs:
    anchors: list[str]
    positives: list[str]

    def __len__(self) -> int:
        return len(self.anchors)


def tuning_pairs(
    knowledge: KnowledgeBase, questions: Sequence[str], entries: Sequence[str]
) -> TuningPairs:
    """(text, what it should be close to): each other phrasing to its entry's question, each
    question to its answer, and each training question to its entry's question and answer."""
    by_id = {entry.id: entry for entry in knowledge}
    anchors: list[str] = []
    positives: list[str] = []
    for entry in knowledge:
        for alternative in entry.alternatives:
            anchors.append(alternative)
            positives.append(entry.question)
        anchors.append(entry.question)
        positives.append(entry.answer)
    for question, entry_id in zip(questions, entries, strict=True):
        if entry_id == NO_ANSWER:
            continue  # in-batch negatives need a positive; nothing to pull it towards
        anchors += [question, question]
        positives += [by_id[entry_id].question, by_id[entry_id].answer]
    return TuningPairs(anchors, positives)


ValidationScore = Callable[[Embed], float]
"""The validation questions' MRR with a given embedding function (higher is better)."""


class BestEpoch(TrainerCallback):
    """Scores the encoder on the validation questions before training and after each epoch,
    keeps the weights of the best score (the untrained encoder included: tuning that does not
    help is undone) and stops after ``patience`` epochs without a better one."""

    def __init__(self, score: ValidationScore, patience: int, notify: Notify) -> None:
        self._score = score
        self._patience = patience
        self._notify = notify
        self._best_weights: dict[str, torch.Tensor] | None = None
        self.best_score = -1.0
        self.best_epoch = 0.0
        self.first_score = 0.0
        self._waited = 0

    def _measure(self, model: Any, epoch: float) -> None:
        def embed(texts: Sequence[str]) -> NDArray[np.float32]:
            vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True)
            return np.asarray(vectors, dtype=np.float32)

        was_training = model.training
        model.eval()
        score = self._score(embed)
        model.train(was_training)
        if epoch == 0:
            self.first_score = score
        self._notify(f"epoch {epoch:.0f}: validation MRR {score:.4f}")
        if score > self.best_score + 1e-9:
            self.best_score, self.best_epoch, self._waited = score, epoch, 0
            self._best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self._waited += 1

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._measure(kwargs["model"], 0.0)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._measure(kwargs["model"], float(state.epoch or 0))
        if self._waited >= self._patience:
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._best_weights is not None:
            kwargs["model"].load_state_dict(self._best_weights)


@dataclass(frozen=True)
class TunedEncoder:
    model: SentenceEmbedder
    seconds: float
    pairs: int
    best_epoch: float
    """0 when no epoch beat the encoder as it was."""
    validation_mrr_before: float
    validation_mrr_after: float


def tune_encoder(
    base: Path,
    pairs: TuningPairs,
    validation: ValidationScore,
    settings: EncoderTuningConfig,
    notify: Notify,
) -> TunedEncoder:
    """The encoder at ``base`` (a sentence-transformers or Hugging Face directory) fine-tuned
    on ``pairs``, at the epoch ``validation`` scores best, as a :class:`SentenceEmbedder`."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import ProgressCallback

    if len(pairs) < 2:
        raise DataError("encoder fine-tuning needs at least two pairs of texts")
    hf_logging.set_verbosity_error()
    model = SentenceTransformer(str(base), device="cpu" if use_cpu(settings.device) else None)
    hf_logging.set_verbosity_warning()
    model.max_seq_length = settings.max_length
    # No hub model card is written, so skip computing its widget examples (and their bar).
    model.model_card_data.widget = [{"text": "unused"}]
    work = tempfile.mkdtemp(prefix="forgeline-encoder-")
    best = BestEpoch(validation, settings.early_stopping_patience, notify)
    try:
        args = SentenceTransformerTrainingArguments(
            output_dir=work,
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=min(settings.batch_size, len(pairs)),
            learning_rate=settings.learning_rate,
            warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of all steps
            weight_decay=settings.weight_decay,
            # No two pairs in a batch share a text: a shared answer would be a false negative.
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            seed=settings.seed,
            data_seed=settings.seed,
            use_cpu=use_cpu(settings.device),
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict({"anchor": pairs.anchors, "positive": pairs.positives}),
            loss=losses.MultipleNegativesRankingLoss(model),
            callbacks=[best, TrainingProgress({})],
        )
        trainer.remove_callback(ProgressCallback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        # The trained transformer under the same pooling and normalization, as one model.
        saved = Path(work) / "encoder"
        transformer = cast(PreTrainedModel, model[0].auto_model)
        transformer.save_pretrained(saved, safe_serialization=True)
        hf_logging.set_verbosity_error()  # the trained pooler layer is not used: no note
        embedder = SentenceEmbedder.from_pretrained(saved, use_safetensors=True)
        hf_logging.set_verbosity_warning()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notify(
        f"encoder fine-tuned on {len(pairs)} pairs in {seconds:.0f} s; keeping epoch "
        f"{best.best_epoch:.0f} (validation MRR {best.first_score:.4f} -> {best.best_score:.4f})"
    )
    return TunedEncoder(
        embedder, seconds, len(pairs), best.best_epoch, best.first_score, best.best_score
    )
