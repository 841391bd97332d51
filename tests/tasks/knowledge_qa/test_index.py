from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from forgeline.tasks.knowledge_qa.index import Index, Lexical, build_index
from forgeline.tasks.knowledge_qa.knowledge_base import Entry, KnowledgeBase
from forgeline.tasks.knowledge_qa.retrieval import Weights, signals

KNOWLEDGE = KnowledgeBase(
    [
        Entry("lost", "I lost my card", "Block it in the app.", ("card missing",)),
        Entry("pin", "Change my PIN", "At any ATM."),
    ]
)


class CountingEmbedder:
    """Unit vectors made from text hashes, counting the texts embedded."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.seen.extend(texts)
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts]
        vectors = np.array(rows, dtype=np.float32)
        return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32)


def test_only_new_and_changed_texts_are_embedded_again(tmp_path: Path) -> None:
    embed = CountingEmbedder()
    first = build_index(KNOWLEDGE, embed)
    assert first.embedded == 5 and first.reused == 0
    first.index.save(tmp_path)
    reloaded = Index.load(tmp_path)
    edited = KnowledgeBase([KNOWLEDGE.entries[0], Entry("pin", "Change my PIN", "At an ATM.")])
    embed.seen.clear()
    second = build_index(edited, embed, reloaded)
    assert embed.seen == ["At an ATM."]
    assert (second.embedded, second.reused) == (1, 4)
    np.testing.assert_array_equal(second.index.phrasing_vectors, first.index.phrasing_vectors)


def test_an_entry_scores_its_best_phrasing() -> None:
    embed = CountingEmbedder()
    index = build_index(KNOWLEDGE, embed).index
    question = embed(["card missing"])  # the same vector as the alternative phrasing
    found = signals(index, Lexical(KNOWLEDGE), ["card missing"], question)
    assert found.phrasing[0, 0] == np.float32(1.0) or abs(found.phrasing[0, 0] - 1) < 1e-6
    assert found.lexical[0, 0] == 1.0 and found.lexical[0, 1] == 0.0
    scores = found.scores(Weights(answer=0.0, lexical=0.0))
    assert scores[0].argmax() == 0


def test_signals_weighed_zero_are_skipped_and_the_rest_unchanged() -> None:
    embed = CountingEmbedder()
    index = build_index(KNOWLEDGE, embed).index
    questions = ["card missing", "new pin", "where is my card"]
    vectors = embed(questions)
    every = signals(index, Lexical(KNOWLEDGE), questions, vectors)
    dense = signals(index, None, questions, vectors, answers=False)
    assert dense.phrasing.shape == (3, 2)
    np.testing.assert_allclose(dense.phrasing, every.phrasing, rtol=1e-6)
    assert not dense.answer.any() and not dense.lexical.any()
    assert every.answer.any() and every.lexical.any()
    expected = np.max(vectors @ index.phrasing_vectors[:2].T, axis=1)  # entry 0's phrasings
    np.testing.assert_allclose(every.phrasing[:, 0], expected, rtol=1e-6)
