"""Compressing a knowledge-qa model: the shared gate (:mod:`forgeline.compress.gate`) on its
sentence encoder, with the validation questions' MRR as the metric int8 may not cost more than
allowed. The index is embedded again by each encoder it is checked on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from forgeline.compress.gate import compress_encoder_model
from forgeline.config import Project
from forgeline.config.knowledge import NO_ANSWER, KnowledgeQAConfig
from forgeline.tasks.base import DataSplits, Notify
from forgeline.tasks.knowledge_qa.data import ENTRY, QUESTION
from forgeline.tasks.knowledge_qa.retrieval import ranks

if TYPE_CHECKING:
    from forgeline.tasks.knowledge_qa.model import KnowledgeQA


def compress_knowledge_model(
    model: KnowledgeQA, data: DataSplits, project: Project, notify: Notify
) -> tuple[KnowledgeQA, dict[str, Any]]:
    settings = project.config_for(KnowledgeQAConfig).compress
    answerable = data.validation[data.validation[ENTRY] != NO_ANSWER]
    questions = list(answerable[QUESTION])

    def mrr(candidate: KnowledgeQA) -> float:
        position = candidate.knowledge.position()
        gold = np.array([position[e] for e in answerable[ENTRY]], dtype=np.int64)
        return float(np.mean(1 / (ranks(candidate.scores(questions), gold) + 1)))

    return compress_encoder_model(
        model, list(data.validation[QUESTION]), mrr, "mrr", "MRR", settings, notify
    )
