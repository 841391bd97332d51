from __future__ import annotations

import numpy as np

from forgeline.tasks.knowledge_qa.evaluation import precision_coverage, retrieval_metrics
from forgeline.tasks.knowledge_qa.retrieval import (
    Signals,
    Weights,
    choose_threshold,
    choose_weights,
)


def test_threshold_turns_away_unanswerable_questions() -> None:
    top = np.array([0, 1, 2, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.35], dtype=np.float32)
    gold = [0, 1, None, None]  # two right answers, two questions the base cannot answer
    threshold = choose_threshold(top, scores, gold, max_accuracy_drop=0.0)
    assert np.float32(0.35) < threshold <= np.float32(0.8)


def test_threshold_gives_up_at_most_the_allowed_accuracy() -> None:
    top = np.array([0, 1, 2, 3])
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    gold = [0, 1, 2, 9]  # all answerable; the lowest-scored one is wrong
    assert choose_threshold(top, scores, gold, max_accuracy_drop=0.0) == np.float32(0.7)
    assert choose_threshold(top, scores, gold, max_accuracy_drop=0.25) == np.float32(0.8)


def test_weights_are_chosen_by_validation_rank_of_the_right_entry() -> None:
    # The phrasings point at the wrong entry; the lexical signal at the right one.
    found = Signals(
        phrasing=np.array([[0.6, 0.5]], dtype=np.float32),
        answer=np.array([[0.5, 0.5]], dtype=np.float32),
        lexical=np.array([[0.0, 1.0]], dtype=np.float32),
    )
    gold = np.array([1])
    assert choose_weights(found, gold, None, None).lexical > 0.1
    assert choose_weights(found, gold, None, 0.0).lexical == 0.0
    assert choose_weights(found, gold, 0.5, 0.1) == Weights(0.5, 0.1)


def test_metrics_separate_ranking_from_decisions() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.6], [0.7, 0.3], [0.2, 0.1]], dtype=np.float32)
    gold = [0, 0, 1, None]
    metrics = retrieval_metrics(scores, gold, threshold=0.5)
    assert metrics["recall_at_1"] == 1 / 3
    assert metrics["mrr"] == (1 + 0.5 + 0.5) / 3
    assert metrics["coverage"] == 0.75
    assert metrics["answered_precision"] == 1 / 3
    assert metrics["no_answer_recall"] == 1.0
    coverage, precision = precision_coverage(scores, gold)
    assert list(coverage) == [0.25, 0.5, 0.75, 1.0]
    assert list(precision) == [1.0, 0.5, 1 / 3, 0.25]
