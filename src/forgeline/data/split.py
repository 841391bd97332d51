"""Seeded stratified train/validation/test split.

Written here rather than taken from scikit-learn because ``train_test_split(stratify=...)``
refuses classes with a single member, while a user's long tail of rare labels should still be
trained on (they simply get no validation or test rows).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def stratified_split(
    labels: Sequence[Hashable], validation: float, test: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Return sorted row positions of (train, validation, test), stratified by label."""
    rng = np.random.default_rng(seed)
    by_label: dict[Hashable, list[int]] = {}
    for position, label in enumerate(labels):
        by_label.setdefault(label, []).append(position)
    train: list[int] = []
    val: list[int] = []
    held_out: list[int] = []
    for label in sorted(by_label, key=str):
        positions = rng.permutation(by_label[label]).tolist()
        n = len(positions)
        n_test = min(round(n * test), n - 1)
        n_val = min(round(n * validation), n - 1 - n_test)
        held_out.extend(positions[:n_test])
        val.extend(positions[n_test : n_test + n_val])
        train.extend(positions[n_test + n_val :])
    return sorted(train), sorted(val), sorted(held_out)
