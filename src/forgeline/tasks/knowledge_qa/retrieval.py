"""Scoring questions against entries, and the choices made on validation questions: the
weights of the answer and lexical signals, and the threshold below which the fallback is said.

An entry's score for a question is

    (best cosine to its phrasings + w_answer * cosine to its answer) / (1 + w_answer)
    + w_lexical * BM25 / (the question's best BM25)

so its dense part keeps an absolute meaning (an unrelated question scores low everywhere),
which is what a threshold needs, while the lexical part lifts the entries that share the
question's rare words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from forgeline.config.knowledge import NO_ANSWER
from forgeline.tasks.knowledge_qa.index import Index, Lexical

ANSWER_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
LEXICAL_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3)
"""The grid ``weights: auto`` searches on the validation questions."""


@dataclass(frozen=True)
class Weights:
    answer: float
    lexical: float


DENSE_ONLY = Weights(answer=0.5, lexical=0.0)
"""What tuning the encoder is judged by: the signals it changes."""


@dataclass(frozen=True)
class Signals:
    """What each question's score is made of, computed once so that weights can be chosen
    without embedding again."""

    phrasing: NDArray[np.float32]
    """Best cosine to each entry's phrasings, [questions, entries]."""
    answer: NDArray[np.float32]
    lexical: NDArray[np.float32]

    def rows(self, keep: NDArray[np.bool_]) -> Signals:
        return Signals(self.phrasing[keep], self.answer[keep], self.lexical[keep])

    def scores(self, weights: Weights) -> NDArray[np.float32]:
        dense = (self.phrasing + weights.answer * self.answer) / (1 + weights.answer)
        return np.asarray(dense + weights.lexical * self.lexical, dtype=np.float32)


def signals(
    index: Index,
    lexical: Lexical | None,
    questions: Sequence[str],
    vectors: NDArray[np.float32],
    *,
    answers: bool = True,
) -> Signals:
    """The signals of ``questions`` (embedded as ``vectors``) against every entry; the lexical
    one zero without ``lexical``, the answer one zero unless ``answers`` (a model that weighs
    a signal 0 skips computing it)."""
    by_phrasing = index.phrasing_similarities(vectors)
    # Each entry's phrasings are consecutive columns, its question first: one max per segment.
    starts = np.flatnonzero(np.diff(index.phrasing_entries, prepend=-1))
    phrasing = np.maximum.reduceat(by_phrasing, starts, axis=1)
    return Signals(
        np.asarray(phrasing, dtype=np.float32),
        index.answer_similarities(vectors) if answers else np.zeros_like(phrasing),
        lexical.scores(questions)
        if lexical is not None and len(questions)
        else np.zeros_like(phrasing, dtype=np.float32),
    )


def top_entries(scores: NDArray[np.float32]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Each question's best entry and its score."""
    top = np.asarray(scores.argmax(axis=1), dtype=np.int64)
    return top, np.asarray(scores[np.arange(len(top)), top], dtype=np.float32)


def best_k(row: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """The positions of the ``k`` highest scores of one question, best first (ties in index
    order); linear in the entries, where sorting a 10,000-entry row per question is not."""
    k = min(k, len(row))
    best = np.argpartition(-row, k - 1)[:k]
    return best[np.argsort(-row[best], kind="stable")]


def ranks(scores: NDArray[np.float32], gold: NDArray[np.int64]) -> NDArray[np.int64]:
    """The 0-based rank of each question's right entry (ties count against it)."""
    right = scores[np.arange(len(gold)), gold][:, None]
    ahead = (scores > right).sum(axis=1) + (scores == right).sum(axis=1) - 1
    return np.asarray(ahead, dtype=np.int64)


def choose_weights(
    found: Signals, gold: NDArray[np.int64], answer: float | None, lexical: float | None
) -> Weights:
    """The weights with the best mean reciprocal rank of the right entries (rows of ``found``
    are the answerable validation questions, ``gold`` their entries), searched on the grid for
    each weight that is None, the given value for the other."""
    best, best_mrr = (
        Weights(0.5 if answer is None else answer, 0.1 if lexical is None else lexical),
        -1.0,
    )
    if not len(gold):
        return best
    for answer_weight in ANSWER_WEIGHTS if answer is None else (answer,):
        for lexical_weight in LEXICAL_WEIGHTS if lexical is None else (lexical,):
            weights = Weights(answer_weight, lexical_weight)
            mrr = float(np.mean(1 / (ranks(found.scores(weights), gold) + 1)))
            if mrr > best_mrr + 1e-9:
                best, best_mrr = weights, mrr
    return best


def decision_accuracy(
    top: NDArray[np.int64],
    top_scores: NDArray[np.float32],
    gold: Sequence[int | None],
    threshold: float,
) -> float:
    """Share of questions decided right at ``threshold``: an answerable one when its top entry
    is right and trusted, an unanswerable one (gold None) when it gets the fallback."""
    right = 0
    for entry, score, truth in zip(top, top_scores, gold, strict=True):
        trusted = score >= threshold
        right += (truth is None and not trusted) or (trusted and truth == entry)
    return right / max(len(gold), 1)


def choose_threshold(
    top: NDArray[np.int64],
    top_scores: NDArray[np.float32],
    gold: Sequence[int | None],
    max_accuracy_drop: float,
) -> float:
    """The highest threshold whose validation decision accuracy is within
    ``max_accuracy_drop`` of the best threshold's: wrong answers cost more than a fallback."""
    candidates = np.unique(np.concatenate([top_scores, [-np.inf]]))
    accuracy = np.array([decision_accuracy(top, top_scores, gold, t) for t in candidates])
    allowed = candidates[accuracy >= accuracy.max() - max_accuracy_drop - 1e-12]
    chosen = float(allowed.max())
    return chosen if np.isfinite(chosen) else -1.0


def gold_positions(entries: Sequence[str], position: dict[str, int]) -> list[int | None]:
    """Entry ids as positions in the index (None for ``none``)."""
    return [None if entry == NO_ANSWER else position[entry] for entry in entries]
