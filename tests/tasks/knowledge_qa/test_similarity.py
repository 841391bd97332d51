"""The index's similarities through ONNX Runtime equal the plain matrix product."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from forgeline.tasks.knowledge_qa.similarity import Similarities


def _unit_rows(rows: int, width: int, seed: int) -> NDArray[np.float32]:
    matrix = np.random.default_rng(seed).normal(size=(rows, width)).astype(np.float32)
    return np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True), np.float32)


@pytest.mark.parametrize("questions", [1, 3, 17])
def test_similarities_are_the_matrix_product(questions: int) -> None:
    matrix, vectors = _unit_rows(500, 384, 0), _unit_rows(questions, 384, 1)
    found = Similarities(matrix)(vectors)
    assert found.shape == (questions, 500) and found.dtype == np.float32
    np.testing.assert_allclose(found, vectors @ matrix.T, atol=1e-5)


def test_no_questions_give_no_rows() -> None:
    assert Similarities(_unit_rows(7, 8, 0))(np.zeros((0, 8), np.float32)).shape == (0, 7)
