"""The search index of a knowledge base: an embedding per phrasing of each entry's question
and per answer (in safetensors, part of the model version), and BM25 over each entry's words.

An index is rebuilt from the entries it holds plus the embeddings; the BM25 part is cheap to
rebuild on load (milliseconds for thousands of entries), so nothing but arrays and JSON is
stored. Building a new index reuses the embeddings of every text an earlier index of the same
encoder already embedded, so editing a few entries re-embeds only those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import bm25s
import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file, save_file

from forgeline.tasks.knowledge_qa.knowledge_base import KnowledgeBase, text_key
from forgeline.tasks.knowledge_qa.similarity import Similarities

INDEX_FILE = "index.safetensors"
ENTRIES_FILE = "entries.jsonl"

Embed = Callable[[Sequence[str]], NDArray[np.float32]]
"""Unit-length embeddings of texts, one row each."""


@dataclass(frozen=True)
class Index:
    knowledge: KnowledgeBase
    phrasing_vectors: NDArray[np.float32]
    """One row per phrasing, entries in order, each entry's question first."""
    phrasing_entries: NDArray[np.int64]
    """The entry (position) of each phrasing row."""
    answer_vectors: NDArray[np.float32]
    """One row per entry."""

    # Made on first use (a search), not when an index is built and saved by `forgeline train`.
    @cached_property
    def phrasing_similarities(self) -> Similarities:
        return Similarities(self.phrasing_vectors)

    @cached_property
    def answer_similarities(self) -> Similarities:
        return Similarities(self.answer_vectors)

    def save(self, directory: Path) -> None:
        save_file(
            {
                "phrasing_vectors": self.phrasing_vectors,
                "phrasing_entries": self.phrasing_entries,
                "answer_vectors": self.answer_vectors,
            },
            str(directory / INDEX_FILE),
        )
        (directory / ENTRIES_FILE).write_text(self.knowledge.to_jsonl(), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Index:
        arrays = load_file(str(directory / INDEX_FILE))
        knowledge = KnowledgeBase.from_jsonl((directory / ENTRIES_FILE).read_text("utf-8"))
        return cls(
            knowledge,
            arrays["phrasing_vectors"],
            arrays["phrasing_entries"],
            arrays["answer_vectors"],
        )

    def cached_vectors(self) -> dict[str, NDArray[np.float32]]:
        """Each embedded text's vector, by :func:`text_key`."""
        cache: dict[str, NDArray[np.float32]] = {}
        phrasings = [p for entry in self.knowledge for p in entry.phrasings]
        for text, vector in zip(phrasings, self.phrasing_vectors, strict=True):
            cache[text_key(text)] = vector
        for entry, vector in zip(self.knowledge, self.answer_vectors, strict=True):
            cache[text_key(entry.answer)] = vector
        return cache


@dataclass(frozen=True)
class BuiltIndex:
    index: Index
    embedded: int
    """Texts embedded for this index."""
    reused: int
    """Texts whose embedding came from the earlier index."""


def build_index(knowledge: KnowledgeBase, embed: Embed, earlier: Index | None = None) -> BuiltIndex:
    """Embed every phrasing and answer of ``knowledge``, reusing ``earlier``'s vectors of the
    same texts (it must come from the same encoder)."""
    cache = earlier.cached_vectors() if earlier is not None else {}
    phrasings = [p for entry in knowledge for p in entry.phrasings]
    owners = [i for i, entry in enumerate(knowledge) for _ in entry.phrasings]
    answers = [entry.answer for entry in knowledge]
    texts = list(dict.fromkeys(phrasings + answers))  # each distinct text once
    missing = [text for text in texts if text_key(text) not in cache]
    if missing:
        for text, vector in zip(missing, embed(missing), strict=True):
            cache[text_key(text)] = vector
    index = Index(
        knowledge,
        np.stack([cache[text_key(t)] for t in phrasings]).astype(np.float32),
        np.asarray(owners, dtype=np.int64),
        np.stack([cache[text_key(t)] for t in answers]).astype(np.float32),
    )
    return BuiltIndex(index, embedded=len(missing), reused=len(texts) - len(missing))


class Lexical:
    """BM25 (bm25s) over each entry's phrasings and answer, English stop words removed."""

    def __init__(self, knowledge: KnowledgeBase) -> None:
        corpus = [" ".join((*entry.phrasings, entry.answer)) for entry in knowledge]
        self._size = len(corpus)
        self._bm25 = bm25s.BM25()
        self._bm25.index(
            bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False
        )

    def scores(self, questions: Sequence[str]) -> NDArray[np.float32]:
        """BM25 of every entry for each question, divided by the question's best (so the
        best lexical match scores 1, and a question sharing no word with any entry 0)."""
        result = np.zeros((len(questions), self._size), dtype=np.float32)
        tokenized = bm25s.tokenize(
            list(questions), stopwords="en", show_progress=False, return_ids=False
        )
        for row, tokens in enumerate(tokenized):
            if tokens:
                result[row] = self._bm25.get_scores(tokens)
        best = result.max(axis=1, keepdims=True)
        return np.asarray(result / np.maximum(best, 1e-9), dtype=np.float32)
