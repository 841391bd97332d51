"""Small synthetic credit tables for the tabular task's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forgeline.config import Project, load_project
from tests.conftest import write_project

TABULAR_YAML = """\
name: credit
task: tabular-classification
data:
  train: data/train.csv
  target: default
  sensitive: [sex, age_band]
  bands:
    age_band: {column: age, edges: [30, 50]}
"""

# An applicant of credit_frame's columns, risky on every count.
APPLICANT = {
    "limit_bal": 20000,
    "age": 24,
    "home": "rent",
    "income": 1800,
    "utilization": 1.1,
    "late_payments": 4,
    "previous_default": "yes",
}


def credit_frame(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    utilization = rng.uniform(0, 1.2, rows)
    late = rng.poisson(0.6, rows)
    income = rng.lognormal(8, 0.4, rows)
    logit = -1.5 + 2.5 * (utilization - 0.5) + 0.6 * late - 0.8 * np.log(income / 3000)
    default = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(rows)],
            "limit_bal": np.round(income * 4, -2),
            "age": rng.integers(20, 70, rows),
            "sex": rng.choice(["f", "m"], rows),
            "home": rng.choice(["rent", "own"], rows),
            "income": np.round(income, 0),
            "utilization": utilization.round(3),
            "late_payments": late,
            "previous_default": rng.choice(["yes", "no"], rows, p=[0.1, 0.9]),
            "default": np.where(default, "yes", "no"),
        }
    )


@pytest.fixture
def credit_project(tmp_path: Path) -> Project:
    config = write_project(tmp_path, TABULAR_YAML)
    (tmp_path / "data").mkdir()
    credit_frame().to_csv(tmp_path / "data/train.csv", index=False)
    return load_project(config)
