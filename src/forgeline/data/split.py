"""Seeded stratified train/validation/test split.

Written here rather than taken from scikit-learn because ``train_test_split(stratify=...)``
refuses classes with a single member, while a user's long tail of rare labels should still be
trained on (they simply get no validation or test rows).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from forgeline.config.project import SplitConfig


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


def split_frames(
    frames: dict[str, pd.DataFrame], stratify_by: str, split: SplitConfig
) -> dict[str, pd.DataFrame]:
    """The given train/validation/test frames, or train split three ways when only it is given."""
    if "validation" in frames:
        return frames
    whole = frames["train"]
    train, validation, test = stratified_split(
        whole[stratify_by].tolist(), split.validation, split.test, split.seed
    )
    return {
        "train": whole.iloc[train].reset_index(drop=True),
        "validation": whole.iloc[validation].reset_index(drop=True),
        "test": whole.iloc[test].reset_index(drop=True),
    }
