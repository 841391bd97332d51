"""The CLINC150 example's data preparation and validation (needs ../shared/data)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forgeline.config import load_project
from forgeline.tasks.text_classification import TextClassifier
from tests.conftest import SHARED_DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clinc150"
CLINC = SHARED_DATA / "clinc150_data_full.json"

pytestmark = pytest.mark.skipif(not CLINC.is_file(), reason=f"{CLINC} is absent")


def test_prepared_clinc150_validates_with_the_example_config(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE / "prepare.py", tmp_path)
    shutil.copy(EXAMPLE / "forgeline.yaml", tmp_path)
    subprocess.run([sys.executable, "prepare.py", str(CLINC)], cwd=tmp_path, check=True)
    splits = TextClassifier.prepare_data(load_project(tmp_path / "forgeline.yaml"))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (15100, 3100, 5500)
    assert splits.train["label"].nunique() == 151
    assert (splits.test["label"] == "oos").sum() == 1000
