"""The outputs of an encoder network for many texts, in batches cut to waste little padding, on
either runtime (class logits of a classifier, embeddings of a sentence encoder).

Texts are sorted by token count and taken up to :data:`PREDICT_BATCH_SIZE` at a time; each such
batch is then cut into runs of similar length (:func:`length_groups`). An encoder's cost is
about proportional to the padded tokens it is given, so eight questions of 6 to 20 tokens
padded to 20 cost half again as much as their own tokens; cutting them into two or three runs
wins back most of that, as long as a run costs more than its fixed overhead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from forgeline.encoders.runtime import PREDICT_BATCH_SIZE, Encoder

RUN_OVERHEAD_TOKENS = 10
"""What one more run of the network costs, in padded tokens. MiniLM-L6 int8 on ONNX Runtime, 2
cores: about 1.1 ms a run plus 0.11 ms a token (so 10 tokens); PyTorch's overhead is larger and
its cost per token too, so the same ratio holds roughly. On the fused int8 graph (see
:func:`forgeline.compress.onnx.fuse_transformer`) a token costs about half as much and a run
0.8 to 1.7 ms; eight CLINC150 questions at a time then took the same time, within noise, with
10, with 40 and with no cutting at all (7.3 to 7.7 ms, interleaved runs)."""


def length_groups(lengths: Sequence[int]) -> list[range]:
    """Cut ascending ``lengths`` into consecutive runs with the least padded tokens plus
    :data:`RUN_OVERHEAD_TOKENS` a run (a run pads to its last, longest, text)."""
    count = len(lengths)
    cost = [0] * (count + 1)
    start_of = [0] * (count + 1)
    for end in range(1, count + 1):
        longest = lengths[end - 1]
        cost[end], start_of[end] = min(
            (cost[start] + RUN_OVERHEAD_TOKENS + (end - start) * longest, start)
            for start in range(end)
        )
    groups: list[range] = []
    end = count
    while end:
        groups.append(range(start_of[end], end))
        end = start_of[end]
    return groups[::-1]


def batched_logits(
    encoder: Encoder, tokenizer: Any, texts: Sequence[str], max_length: int, width: int
) -> NDArray[np.float32]:
    """One row of ``width`` outputs per text, in input order."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids: list[list[int]] = encoded["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    result = np.zeros((len(texts), width), dtype=np.float32)
    for start in range(0, len(order), PREDICT_BATCH_SIZE):
        batch = order[start : start + PREDICT_BATCH_SIZE]
        for group in length_groups([len(ids[i]) for i in batch]):
            rows = [batch[j] for j in group]
            result[rows] = encoder.logits(_padded(encoded, rows, tokenizer.pad_token_id))
    return result


def _padded(
    encoded: Mapping[str, list[list[int]]], rows: list[int], pad_id: int
) -> dict[str, NDArray[np.int64]]:
    """The tokenizer's outputs of ``rows`` padded on the right to the longest of them. Done here
    rather than by ``tokenizer.pad``, which warns on every call that tokenizing with padding is
    faster (true, but the lengths are needed before deciding how to pad)."""
    longest = max(len(encoded["input_ids"][i]) for i in rows)
    arrays = {}
    for name, values in encoded.items():
        array = np.full((len(rows), longest), pad_id if name == "input_ids" else 0, np.int64)
        for row, i in enumerate(rows):
            array[row, : len(values[i])] = values[i]
        arrays[name] = array
    return arrays
