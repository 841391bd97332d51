"""The most likely well-formed tag sequence of a text's words (Viterbi over the words' tag
probabilities), instead of each word's likeliest tag on its own.

Per-word choices break entities apart: a three-word job title read as TITLE, ORG, TITLE is
three entities, none of them right. Allowing I-X only after B-X or I-X and taking the best
sequence under that rule makes the model settle on one type per entity. Written here (about
twenty lines of NumPy) rather than taken from a CRF library: no transition weights are learnt,
only forbidden moves, and none of those libraries decodes a probability matrix with fixed rules
without a trained CRF layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def allowed_transitions(tags: Sequence[str]) -> NDArray[np.bool_]:
    """``[from, to]``: whether tag ``to`` may follow tag ``from`` in IOB2."""
    allowed = np.ones((len(tags), len(tags)), dtype=bool)
    for to, tag in enumerate(tags):
        if tag.startswith("I-"):
            kind = tag[2:]
            allowed[:, to] = [t in (f"B-{kind}", f"I-{kind}") for t in tags]
    return allowed


def best_tags(probabilities: NDArray[np.float32], tags: Sequence[str]) -> list[int]:
    """Indexes into ``tags`` of the likeliest sequence with no I-X that does not continue an
    X entity (``probabilities``: ``[words, tags]``)."""
    words = probabilities.shape[0]
    if words == 0:
        return []
    scores = np.log(np.clip(probabilities, 1e-12, 1.0)).astype(np.float64)
    blocked = np.where(allowed_transitions(tags), 0.0, -np.inf)
    starts = np.array([0.0 if not t.startswith("I-") else -np.inf for t in tags])
    best = scores[0] + starts
    back = np.zeros((words, len(tags)), dtype=np.int64)
    for word in range(1, words):
        candidates = best[:, None] + blocked  # [from, to]
        back[word] = candidates.argmax(axis=0)
        best = candidates.max(axis=0) + scores[word]
    path = [int(best.argmax())]
    for word in range(words - 1, 0, -1):
        path.append(int(back[word, path[-1]]))
    return path[::-1]
