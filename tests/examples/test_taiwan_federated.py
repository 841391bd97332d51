"""The federated Taiwan example's data preparation and silos (needs ../shared/data)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forgeline.config import load_project
from forgeline.federated.silos import simulated_silos
from tests.conftest import SHARED_DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "taiwan-federated"
TAIWAN = SHARED_DATA / "taiwan_credit_default.csv"

pytestmark = pytest.mark.skipif(not TAIWAN.is_file(), reason=f"{TAIWAN} is absent")


def test_four_education_silos_with_undocumented_codes_folded(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE / "forgeline.yaml", tmp_path)
    script = EXAMPLE / "prepare_credit.py"
    subprocess.run([sys.executable, str(script), str(TAIWAN), str(tmp_path / "data")], check=True)
    silos, _ = simulated_silos(load_project(tmp_path / "forgeline.yaml"))
    assert [s.name for s in silos] == ["x3-1", "x3-2", "x3-3", "x3-4"]
    rows = {s.name: len(s.train) + len(s.validation) + len(s.test) for s in silos}
    assert sum(rows.values()) == 30_000
    assert rows["x3-4"] == 468  # 123 others + 345 undocumented (0, 5, 6)
