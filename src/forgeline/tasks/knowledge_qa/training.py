"""``forgeline train`` for a knowledge base: tune the encoder (or reuse the one an earlier
version tuned on the same questions), embed what is new, choose the score weights and the
threshold on the validation questions."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from forgeline.base_models import resolve_base_model
from forgeline.config import Project
from forgeline.config.knowledge import NO_ANSWER, KnowledgeQAConfig
from forgeline.data.fingerprint import file_sha256
from forgeline.encoders.runtime import TorchEncoder
from forgeline.errors import RegistryError
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.knowledge_qa.data import ENTRY, QUESTION
from forgeline.tasks.knowledge_qa.embedder import SentenceEmbedder, embed, embedding_size
from forgeline.tasks.knowledge_qa.evaluation import retrieval_metrics
from forgeline.tasks.knowledge_qa.index import Embed, Index, Lexical, build_index
from forgeline.tasks.knowledge_qa.knowledge_base import KnowledgeBase, load_knowledge_base
from forgeline.tasks.knowledge_qa.retrieval import (
    DENSE_ONLY,
    Weights,
    choose_threshold,
    choose_weights,
    gold_positions,
    ranks,
    signals,
    top_entries,
)
from forgeline.tasks.knowledge_qa.settings import SETTINGS_FILE, Grounding, Settings
from forgeline.tasks.knowledge_qa.tuning import ValidationScore, tune_encoder, tuning_pairs

SCORED_DISTRACTORS = 2000
"""Entries besides the validation questions' own that tuning is judged among."""
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


def validation_scorer(
    knowledge: KnowledgeBase, questions: list[str], entries: list[str]
) -> ValidationScore:
    """The MRR of the answerable validation questions' entries by dense score alone (what
    tuning changes), among their entries and up to ``SCORED_DISTRACTORS`` others (a sample, so
    a large base is not embedded again after every epoch)."""
    answerable = [(q, e) for q, e in zip(questions, entries, strict=True) if e != NO_ANSWER]
    wanted = {e for _, e in answerable}
    others = [e for e in knowledge if e.id not in wanted]
    rng = np.random.default_rng(0)
    chosen = sorted(rng.permutation(len(others))[:SCORED_DISTRACTORS].tolist())
    scored = KnowledgeBase([e for e in knowledge if e.id in wanted] + [others[i] for i in chosen])
    position = scored.position()
    gold = np.array([position[e] for _, e in answerable], dtype=np.int64)
    texts = [q for q, _ in answerable]

    def score(embed: Embed) -> float:
        if not texts:
            return 0.0
        index = build_index(scored, embed).index
        dense = signals(index, None, texts, embed(texts)).scores(DENSE_ONLY)
        return float(np.mean(1 / (ranks(dense, gold) + 1)))

    return score


def _earlier(project: Project, fingerprint: str) -> tuple[Path, Index] | None:
    """The newest version whose encoder has ``fingerprint`` and runs on PyTorch (a compressed
    one embeds differently), with its index. Each version's small settings file (JSON) is
    read first, so that only a matching version has all its files hashed by the registry's
    checks, not every version of the model."""
    from forgeline.registry.store import ModelRegistry  # the registry imports every task

    registry = ModelRegistry(project.registry_dir)
    name = project.config.name
    for number in reversed(registry.versions(name)):
        settings_file = registry.root / name / number / SETTINGS_FILE
        try:
            earlier = Settings.from_json(json.loads(settings_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # another task's version, or not one this code wrote
        if earlier.encoder_fingerprint != fingerprint or earlier.runtime != "torch":
            continue
        try:
            version = registry.resolve(name, number)
        except RegistryError:
            continue  # a version that fails its checks is never read
        if version.manifest.get("task") == "knowledge-qa":
            return version.path, Index.load(version.path)
    return None


def train_knowledge_model(project: Project, data: DataSplits, notify: Notify) -> Trained:
    config = project.config_for(KnowledgeQAConfig)
    base = resolve_base_model(config.base_model, project.root)
    knowledge = load_knowledge_base(config.data, project.root)
    if config.retrieval.match_training_questions:
        knowledge = knowledge.with_asked(list(data.train[QUESTION]), list(data.train[ENTRY]))
    fingerprint = encoder_fingerprint(project, data)
    earlier = _earlier(project, fingerprint)
    embedder, metrics = _encoder(config, base, knowledge, data, earlier, notify)
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoder = TorchEncoder(embedder)
    size = embedding_size(base)

    def embed_texts(texts: Sequence[str]) -> NDArray[np.float32]:
        return embed(encoder, tokenizer, texts, MAX_LENGTH, size)

    started = time.perf_counter()
    built = build_index(knowledge, embed_texts, earlier[1] if earlier is not None else None)
    seconds = time.perf_counter() - started
    notify(f"embedded {built.embedded} text(s) in {seconds:.1f} s, reused {built.reused}")
    metrics |= {"entries": len(knowledge), "texts_embedded": built.embedded}
    metrics["texts_reused"] = built.reused
    weights, threshold, chosen = _decisions(config, built.index, data, embed_texts)
    metrics |= chosen
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
        grounding=None
        if config.answer.generate is None
        else Grounding(
            config.answer.generate, config.answer.context_entries, config.answer.instructions
        ),
    )
    return Trained(embedder, tokenizer, built.index, settings, metrics)


def _encoder(
    config: KnowledgeQAConfig,
    base: Path,
    knowledge: KnowledgeBase,
    data: DataSplits,
    earlier: tuple[Path, Index] | None,
    notify: Notify,
) -> tuple[SentenceEmbedder, dict[str, Any]]:
    """The earlier version's encoder when it was made the same way, else the base encoder,
    fine-tuned when asked; and what tuning measured."""
    metrics: dict[str, Any] = {}
    hf_logging.set_verbosity_error()  # the base checkpoint's unused pooler: no note
    try:
        if earlier is not None:
            notify(
                f"the encoder is unchanged since {earlier[0].name}: reusing it and its embeddings"
            )
            return SentenceEmbedder.from_pretrained(earlier[0], use_safetensors=True), metrics
        if not config.encoder.fine_tune:
            return SentenceEmbedder.from_pretrained(base, use_safetensors=True), metrics
    finally:
        hf_logging.set_verbosity_warning()
    pairs = tuning_pairs(knowledge, list(data.train[QUESTION]), list(data.train[ENTRY]))
    scorer = validation_scorer(
        knowledge, list(data.validation[QUESTION]), list(data.validation[ENTRY])
    )
    tuned = tune_encoder(base, pairs, scorer, config.encoder, notify)
    metrics |= {
        "tuning_pairs": tuned.pairs,
        "tuning_seconds": round(tuned.seconds, 1),
        "tuning_best_epoch": tuned.best_epoch,
        "tuning_validation_mrr_before": tuned.validation_mrr_before,
        "tuning_validation_mrr_after": tuned.validation_mrr_after,
    }
    return tuned.model, metrics


def _decisions(
    config: KnowledgeQAConfig, index: Index, data: DataSplits, embed_texts: Embed
) -> tuple[Weights, float, dict[str, Any]]:
    """The score weights and the threshold, chosen on the validation questions (unless set in
    the config), and the validation metrics with them."""
    questions = list(data.validation[QUESTION])
    found = signals(index, Lexical(index.knowledge), questions, embed_texts(questions))
    gold = gold_positions(list(data.validation[ENTRY]), index.knowledge.position())
    answerable = np.array([g is not None for g in gold], dtype=bool)
    retrieval = config.retrieval
    weights = choose_weights(
        found.rows(answerable),
        np.array([g for g in gold if g is not None], dtype=np.int64),
        retrieval.answer_weight if isinstance(retrieval.answer_weight, float) else None,
        retrieval.lexical_weight if isinstance(retrieval.lexical_weight, float) else None,
    )
    scores = found.scores(weights)
    top, top_scores = top_entries(scores)
    threshold = (
        config.answer.threshold
        if isinstance(config.answer.threshold, float)
        else choose_threshold(top, top_scores, gold, config.answer.max_accuracy_drop)
    )
    metrics = _validation_metrics(scores, gold, threshold)
    metrics |= {"answer_weight": weights.answer, "lexical_weight": weights.lexical}
    return weights, threshold, metrics


def _validation_metrics(
    scores: NDArray[np.float32], gold: list[int | None], threshold: float
) -> dict[str, float]:
    return {
        f"validation_{key}": value
        for key, value in retrieval_metrics(scores, gold, threshold).items()
    }
