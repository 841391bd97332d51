"""Fine-tuning the sentence encoder on the knowledge base's own phrasings and the training
questions: contrastive, with in-batch negatives (sentence-transformers'
MultipleNegativesRankingLoss), so a question moves towards its entry and away from the other
entries of its batch."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from forgeline.config.knowledge import NO_ANSWER, EncoderTuningConfig
from forgeline.errors import DataError
from forgeline.tasks.base import Notify
from forgeline.tasks.knowledge_qa.embedder import SentenceEmbedder
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


@dataclass(frozen=True)
class TunedEncoder:
    model: SentenceEmbedder
    seconds: float
    pairs: int


def tune_encoder(
    base: Path, pairs: TuningPairs, settings: EncoderTuningConfig, notify: Notify
) -> TunedEncoder:
    """The encoder at ``base`` (a sentence-transformers or Hugging Face directory) fine-tuned
    on ``pairs``, as a :class:`SentenceEmbedder`."""
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
            callbacks=[TrainingProgress({})],
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
    notify(f"encoder fine-tuned on {len(pairs)} pairs in {seconds:.0f} s")
    return TunedEncoder(embedder, seconds, len(pairs))
