"""Decoding word tag probabilities into a well-formed IOB2 sequence."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from forgeline.tasks.token_classification.decoding import allowed_transitions, best_tags

TAGS = ["O", "B-title", "I-title", "B-org", "I-org"]


def _probabilities(*rows: list[float]) -> NDArray[np.float32]:
    return np.array(rows, dtype=np.float32)


def test_i_follows_only_b_or_i_of_its_type() -> None:
    allowed = allowed_transitions(TAGS)
    assert allowed[TAGS.index("B-title"), TAGS.index("I-title")]
    assert allowed[TAGS.index("I-title"), TAGS.index("I-title")]
    assert not allowed[TAGS.index("O"), TAGS.index("I-title")]
    assert not allowed[TAGS.index("B-title"), TAGS.index("I-org")]
    assert allowed[TAGS.index("I-org"), TAGS.index("B-title")]


def test_one_type_per_entity_where_words_disagree() -> None:
    # "Staff development specialist": alone, the middle word leans to org.
    rows = _probabilities(
        [0.05, 0.80, 0.05, 0.05, 0.05],
        [0.05, 0.02, 0.40, 0.03, 0.50],
        [0.05, 0.02, 0.85, 0.03, 0.05],
    )
    assert [TAGS[i] for i in rows.argmax(axis=1)] == ["B-title", "I-org", "I-title"]
    assert [TAGS[i] for i in best_tags(rows, TAGS)] == ["B-title", "I-title", "I-title"]


def test_an_entity_never_starts_with_i_and_empty_input() -> None:
    rows = _probabilities([0.3, 0.1, 0.6, 0.0, 0.0], [0.9, 0.0, 0.1, 0.0, 0.0])
    assert [TAGS[i] for i in best_tags(rows, TAGS)] == ["O", "O"]
    assert best_tags(np.zeros((0, 5), dtype=np.float32), TAGS) == []
