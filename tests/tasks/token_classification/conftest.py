"""The bundled MiniLM tokenizer, and a stand-in network for tests of what surrounds it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from transformers import AutoTokenizer

from forgeline.base_models import resolve_base_model


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(resolve_base_model("minilm-l6"))


class PositionEncoder:
    """Logits that tell which token, and how far from its window's edge, each row came from:
    column 0 is the token id, column 1 the distance to the nearer edge of the window (the
    network itself is not under test here, only how windows are cut and merged)."""

    runtime = "test"

    def logits(self, encoded: Mapping[str, NDArray[np.int64]]) -> NDArray[np.float32]:
        ids = encoded["input_ids"]
        lengths = encoded["attention_mask"].sum(axis=1)
        positions = np.arange(ids.shape[1])[None, :]
        centrality = np.minimum(positions, lengths[:, None] - 1 - positions)
        return np.stack([ids, centrality], axis=-1).astype(np.float32)

    def save(self, directory: Path) -> None:
        raise NotImplementedError
