"""Small federations of made-up loan applications: silos that differ in who applies (non-IID)
but share one relation between the features and default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forgeline.config import Project, load_project

SILO_SHIFTS = {"north": -0.8, "south": 0.0, "east": 0.9}


def applications(rows: int, shift: float, seed: int) -> pd.DataFrame:
    """Applicants whose income and utilization depend on the silo (``shift``), with default
    drawn from one logistic relation for every silo."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(8.3 + 0.3 * shift, 0.4, rows).round(0)
    utilization = np.clip(rng.normal(0.45 + 0.15 * shift, 0.2, rows), 0, 1.5).round(3)
    late = rng.poisson(0.4 + 0.5 * max(shift, 0), rows)
    home = rng.choice(["rent", "own", "mortgage"], rows, p=[0.5, 0.2, 0.3])
    margin = -1.2 - 2.0 * (np.log(income) - 8.3) + 3.5 * (utilization - 0.45) + 0.8 * late
    margin += np.where(home == "rent", 0.7, 0.0)
    default = rng.random(rows) < 1 / (1 + np.exp(-margin))
    return pd.DataFrame(
        {
            "income": income,
            "utilization": utilization,
            "late_payments": late,
            "home": home,
            "default": np.where(default, "yes", "no"),
        }
    )


FEDERATION_YAML = """\
name: loans
task: tabular-classification
data:
  train: data/north.csv
  target: default
model:
  kind: logistic
federated:
  silos: {north: data/north.csv, south: data/south.csv, east: data/east.csv}
  rounds: 12
"""


def federation_project(
    root: Path, rows: int = 1500, extra: str = "", model: str = "logistic"
) -> Project:
    """A project whose three silos are one CSV file each; ``extra`` goes under federated:."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for seed, (silo, shift) in enumerate(SILO_SHIFTS.items()):
        applications(rows, shift, seed).to_csv(root / "data" / f"{silo}.csv", index=False)
    text = FEDERATION_YAML.replace("kind: logistic", f"kind: {model}") + extra
    (root / "forgeline.yaml").write_text(text, encoding="utf-8")
    return load_project(root / "forgeline.yaml")
