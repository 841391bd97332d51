"""Batches cut by length: the cuts, and outputs equal to one text at a time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from transformers import AutoTokenizer

from forgeline.base_models import resolve_base_model
from forgeline.encoders.batching import RUN_OVERHEAD_TOKENS, batched_logits, length_groups


def test_runs_of_similar_length_are_kept_together() -> None:
    assert length_groups([6, 8, 9, 10, 11, 12, 14, 20]) == [range(0, 6), range(6, 8)]
    assert length_groups([10] * 8) == [range(0, 8)]
    assert length_groups([]) == []


def test_a_cut_is_made_only_when_it_saves_more_than_a_run_costs() -> None:
    short, long = 4, 4 + RUN_OVERHEAD_TOKENS
    # Padding one short text to the long one wastes exactly a run's overhead: not worth a cut.
    assert length_groups([short, long]) == [range(0, 2)]
    assert length_groups([short, short, long]) == [range(0, 2), range(2, 3)]


class _RecordingEncoder:
    """Each text's output is its real token count; every run's shape is recorded."""

    runtime = "test"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def logits(self, encoded: Mapping[str, NDArray[np.int64]]) -> NDArray[np.float32]:
        self.shapes.append(encoded["input_ids"].shape)
        assert (encoded["input_ids"][encoded["attention_mask"] == 0] == 0).all()  # [PAD] is 0
        return np.asarray(encoded["attention_mask"].sum(axis=1, keepdims=True), np.float32)

    def save(self, directory: Path) -> None:
        raise NotImplementedError


def test_outputs_come_back_in_input_order_with_less_padding() -> None:
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("minilm-l6"))
    texts = ["a b c d e f g h i j k l m n o p q r", "hi", "a b c", "yes", "a b c d e f g h i j k l"]
    encoder = _RecordingEncoder()
    found = batched_logits(encoder, tokenizer, texts, 64, 1)[:, 0]
    expected = [len(tokenizer(text)["input_ids"]) for text in texts]
    assert found.tolist() == expected
    padded = sum(rows * width for rows, width in encoder.shapes)
    assert len(encoder.shapes) > 1 and padded < len(texts) * max(expected)
