"""The outputs of an encoder network for many texts, in length-sorted batches, on either
runtime (class logits of a classifier, embeddings of a sentence encoder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from forgeline.encoders.runtime import PREDICT_BATCH_SIZE, Encoder


def batched_logits(
    encoder: Encoder, tokenizer: Any, texts: Sequence[str], max_length: int, width: int
) -> NDArray[np.float32]:
    """One row of ``width`` outputs per text, in input order, computed in length-sorted
    batches to cut padding."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    result = np.zeros((len(texts), width), dtype=np.float32)
    for start in range(0, len(order), PREDICT_BATCH_SIZE):
        batch = order[start : start + PREDICT_BATCH_SIZE]
        encoded = tokenizer(
            [texts[i] for i in batch],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        result[batch] = encoder.logits(dict(encoded))
    return result
