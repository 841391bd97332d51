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
    frames: dict[str, pd.DataFrame], stratify_by: str | None, split: SplitConfig
) -> dict[str, pd.DataFrame]:
    """Train, validation and test frames: those given, and what is missing of validation and
    test carved from train (seeded; stratified by the ``stratify_by`` column when named).

    A train and a test file without a validation file (the way most public data sets come)
    gives a validation split of ``split.validation`` of the train rows.
    """
    missing = [role for role in ("validation", "test") if role not in frames]
    if not missing:
        return frames
    whole = frames["train"]
    labels = whole[stratify_by].tolist() if stratify_by is not None else [0] * len(whole)
    train, validation, test = stratified_split(
        labels,
        split.validation if "validation" in missing else 0.0,
        split.test if "test" in missing else 0.0,
        split.seed,
    )
    carved = {"train": train, "validation": validation, "test": test}
    result = dict(frames)
    for role in ("train", *missing):
        result[role] = whole.iloc[carved[role]].reset_index(drop=True)
    return result
