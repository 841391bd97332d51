"""``forgeline train`` for a knowledge base: tune the encoder (or reuse the one an earlier
version tuned on the same questions), embed what is new, choose the score weights and the
threshold on the validation questions."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from forgeline.base_models import resolve_base_model
from forgeline.config import Project
from forgeline.config.knowledge import KnowledgeQAConfig
from forgeline.data.fingerprint import file_sha256
from forgeline.errors import RegistryError
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.knowledge_qa.data import ENTRY, QUESTION
from forgeline.tasks.knowledge_qa.embedder import SentenceEmbedder
from forgeline.tasks.knowledge_qa.index import Index, Lexical, build_index
from forgeline.tasks.knowledge_qa.knowledge_base import load_knowledge_base
from forgeline.tasks.knowledge_qa.retrieval import (
    choose_threshold,
    choose_weights,
    gold_positions,
    signals,
)
from forgeline.tasks.knowledge_qa.settings import SETTINGS_FILE, Settings
from forgeline.tasks.knowledge_qa.tuning import tune_encoder, tuning_pairs

MAX_LENGTH = 256
"""Tokens embedded per text (MiniLM-L6 was trained on up to 256): passages are cut there."""


@dataclass(frozen=True)
class Trained:
    embedder: SentenceEmbedder
    tokenizer: Any
    index: Index
    settings: Settings
    metrics: dict[str, Any]


def encoder_fingerprint(project: Project, data: DataSplits) -> str:
    """What the encoder depends on: the base weights, and when tuned, the training questions
    and the tuning settings. An earlier version with the same fingerprint has the same
    encoder, so its embeddings are reused."""
    config = project.config_for(KnowledgeQAConfig)
    base = resolve_base_model(config.base_model, project.root)
    digest = hashlib.sha256(file_sha256(base / "model.safetensors").encode())
    if config.encoder.fine_tune:
        digest.update(config.encoder.model_dump_json().encode())
        questions = data.train[[QUESTION, ENTRY]].to_dict("split")["data"]
        digest.update(json.dumps(questions).encode())
    return digest.hexdigest()


def _earlier(project: Project, fingerprint: str) -> tuple[Path, Index] | None:
    """The newest version whose encoder has ``fingerprint`` and runs on PyTorch (a compressed
    one embeds differently), with its index."""
    from forgeline.registry.store import ModelRegistry  # the registry imports every task

    registry = ModelRegistry(project.registry_dir)
    for name in reversed(registry.versions(project.config.name)):
        try:
            version = registry.resolve(project.config.name, name)
        except RegistryError:
            continue  # a version that fails its checks is never read
        settings_file = version.path / SETTINGS_FILE
        if version.manifest.get("task") != "knowledge-qa" or not settings_file.is_file():
            continue
        earlier = Settings.from_json(json.loads(settings_file.read_text(encoding="utf-8")))
        if earlier.encoder_fingerprint == fingerprint and earlier.runtime == "torch":
            return version.path, Index.load(version.path)
    return None


def train_knowledge_model(project: Project, data: DataSplits, notify: Notify) -> Trained:
    from forgeline.encoders.runtime import TorchEncoder
    from forgeline.tasks.knowledge_qa.embedder import embed, embedding_size

    config = project.config_for(KnowledgeQAConfig)
    base = resolve_base_model(config.base_model, project.root)
    knowledge = load_knowledge_base(config.data, project.root)
    fingerprint = encoder_fingerprint(project, data)
    earlier = _earlier(project, fingerprint)
    metrics: dict[str, Any] = {"entries": len(knowledge)}
    hf_logging.set_verbosity_error()  # the base checkpoint's unused pooler: no note
    if earlier is not None:
        notify(f"the encoder is unchanged since {earlier[0].name}: reusing it and its embeddings")
        embedder = SentenceEmbedder.from_pretrained(earlier[0], use_safetensors=True)
    elif config.encoder.fine_tune:
        pairs = tuning_pairs(knowledge, list(data.train[QUESTION]), list(data.train[ENTRY]))
        tuned = tune_encoder(base, pairs, config.encoder, notify)
        embedder = tuned.model
        metrics |= {"tuning_pairs": tuned.pairs, "tuning_seconds": round(tuned.seconds, 1)}
    else:
        embedder = SentenceEmbedder.from_pretrained(base, use_safetensors=True)
    hf_logging.set_verbosity_warning()
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoder = TorchEncoder(embedder)
    size = embedding_size(base)

    started = time.perf_counter()
    built = build_index(
        knowledge,
        lambda texts: embed(encoder, tokenizer, texts, MAX_LENGTH, size),
        earlier[1] if earlier is not None else None,
    )
    seconds = time.perf_counter() - started
    notify(f"embedded {built.embedded} text(s) in {seconds:.1f} s, reused {built.reused}")
    metrics |= {"texts_embedded": built.embedded, "texts_reused": built.reused}

    validation = data.validation
    vectors = embed(encoder, tokenizer, list(validation[QUESTION]), MAX_LENGTH, size)
    found = signals(built.index, Lexical(knowledge), list(validation[QUESTION]), vectors)
    gold = gold_positions(list(validation[ENTRY]), knowledge.position())
    answerable = np.array([g is not None for g in gold], dtype=bool)
    retrieval = config.retrieval
    weights = choose_weights(
        found.rows(answerable),
        np.array([g for g in gold if g is not None], dtype=np.int64),
        retrieval.answer_weight if isinstance(retrieval.answer_weight, float) else None,
        retrieval.lexical_weight if isinstance(retrieval.lexical_weight, float) else None,
    )
    scores = found.scores(weights)
    top = scores.argmax(axis=1)
    top_scores = scores[np.arange(len(top)), top]
    threshold = (
        config.answer.threshold
        if isinstance(config.answer.threshold, float)
        else choose_threshold(top, top_scores, gold, config.answer.max_accuracy_drop)
    )
    metrics |= _validation_metrics(scores, gold, threshold)
    metrics |= {"answer_weight": weights.answer, "lexical_weight": weights.lexical}
    notify(
        f"validation: recall@1 {metrics['validation_recall_at_1']:.4f}, MRR "
        f"{metrics['validation_mrr']:.4f}; threshold {threshold:.4f} answers "
        f"{metrics['validation_coverage']:.1%} of questions"
    )
    settings = Settings(
        weights=weights,
        threshold=threshold,
        fallback=config.answer.fallback,
        top_k=config.retrieval.top_k,
        max_length=MAX_LENGTH,
        embedding_size=size,
        encoder_fingerprint=fingerprint,
        runtime="torch",
        generate=config.answer.generate,
        context_entries=config.answer.context_entries,
    )
    return Trained(embedder, tokenizer, built.index, settings, metrics)


def _validation_metrics(
    scores: np.ndarray[Any, Any], gold: list[int | None], threshold: float
) -> dict[str, float]:
    from forgeline.tasks.knowledge_qa.evaluation import retrieval_metrics

    return {
        f"validation_{key}": value
        for key, value in retrieval_metrics(scores, gold, threshold).items()
    }
