"""`forgeline federated simulate` as a user runs it, then `evaluate` and `predict` on the
federated version unchanged; a project without a federation is told so (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MINIMAL_YAML, write_project
from tests.e2e.conftest import run_cli
from tests.federated.conftest import federation_project


def test_simulate_then_evaluate_and_predict(tmp_path: Path) -> None:
    federation_project(tmp_path, rows=600)
    simulated = run_cli("federated", "simulate", "--rounds", "6", cwd=tmp_path)
    assert "ROC-AUC federated" in simulated.stdout and "alone: east" in simulated.stdout
    assert "Registered loans v1" in simulated.stdout
    assert (tmp_path / "models" / "loans" / "v1" / "federation" / "report.html").is_file()
    evaluated = run_cli("evaluate", cwd=tmp_path)
    assert "ROC-AUC" in evaluated.stdout
    row = {"income": 2500, "utilization": 0.9, "late_payments": 3, "home": "rent"}
    predicted = run_cli("predict", json.dumps(row), cwd=tmp_path)
    assert "decision: decline" in predicted.stdout


def test_a_project_without_a_federation_is_told_so(tmp_path: Path, labelled_csv: str) -> None:
    write_project(tmp_path, MINIMAL_YAML, {"data/train.csv": labelled_csv})
    result = run_cli("federated", "simulate", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no federated: section" in result.stderr
    assert "Traceback" not in result.stderr
