"""Tag probabilities of every word of a batch of texts, from either runtime.

Windows are run in length-sorted batches (little padding); a word seen by two overlapping
windows takes its probabilities from the window where it sits furthest from an edge, the one
that saw the most context on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from forgeline.encoders.runtime import PREDICT_BATCH_SIZE, Encoder, softmax
from forgeline.tasks.token_classification.tagging import Tokenized, Window, tokenize


def window_logits(
    encoder: Encoder, tokenizer: Any, windows: Sequence[Window]
) -> list[NDArray[np.float32]]:
    """Per window, the logits of its tokens (``[tokens, tags]``), in window order."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    result: list[NDArray[np.float32]] = [np.zeros((0, 0), dtype=np.float32)] * len(windows)
    for start in range(0, len(order), PREDICT_BATCH_SIZE):
        batch = order[start : start + PREDICT_BATCH_SIZE]
        padded = tokenizer.pad([windows[i].features for i in batch], return_tensors="np")
        logits = encoder.logits({name: np.asarray(v, dtype=np.int64) for name, v in padded.items()})
        for row, index in enumerate(batch):
            result[index] = logits[row, : len(windows[index])]
    return result


def word_logits(
    tokenized: Tokenized, logits: Sequence[NDArray[np.float32]]
) -> list[NDArray[np.float32]]:
    """Per text, each word's logits (``[words, tags]``): those of its first sub-token in the
    window where that token sits furthest from an edge."""
    tags = logits[0].shape[1] if logits else 0
    chosen: list[dict[int, tuple[int, NDArray[np.float32]]]] = [{} for _ in tokenized.words]
    for window, window_rows in zip(tokenized.windows, logits, strict=True):
        best = chosen[window.text_index]
        for word, position in window.first_tokens.items():
            centrality = window.centrality(position)
            if word not in best or centrality > best[word][0]:
                best[word] = (centrality, window_rows[position])
    merged = []
    for words, best in zip(tokenized.words, chosen, strict=True):
        rows = np.zeros((len(words), tags), dtype=np.float32)
        for word, (_, row) in best.items():
            rows[word] = row
        merged.append(rows)
    return merged


def word_probabilities(
    encoder: Encoder, tokenizer: Any, texts: Sequence[str], max_length: int, stride: int
) -> tuple[Tokenized, list[NDArray[np.float32]]]:
    """The texts' words and, per text, the tag probabilities of each word (``[words, tags]``)."""
    tokenized = tokenize(tokenizer, texts, max_length, stride)
    merged = word_logits(tokenized, window_logits(encoder, tokenizer, tokenized.windows))
    return tokenized, [softmax(rows) if len(rows) else rows for rows in merged]
