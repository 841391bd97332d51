"""The tabular template end to end: init, train, evaluate, predict, serve over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import api_client, run_cli, running_server

pytestmark = pytest.mark.e2e

APPLICANT = {
    "limit_bal": 20000,
    "age": 24,
    "income": 2100,
    "employment_years": 1,
    "home_ownership": "rent",
    "purpose": "other",
    "utilization": 0.95,
    "late_payments_12m": 3,
    "previous_default": "no",
}


@pytest.fixture(scope="module")
def credit_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tabular")
    run_cli("init", "credit", "--template", "tabular-classification", cwd=root)
    project = root / "credit"
    result = run_cli("train", cwd=project)
    assert "Registered credit v1" in result.stdout
    assert "'applicant_id' looks like an identifier" in result.stderr
    return project


def test_saved_model_has_no_pickles(credit_project: Path) -> None:
    version = credit_project / "models/credit/v1"
    names = {p.name for p in version.iterdir()}
    assert {"model.lightgbm.txt", "baseline.logistic.json", "tabular.json"} <= names
    manifest = json.loads((version / "forgeline-manifest.json").read_text())
    assert manifest["task"] == "tabular-classification"
    assert manifest["labels"] == ["no", "yes"]


def test_evaluate_reports_credit_metrics_and_fairness(credit_project: Path) -> None:
    result = run_cli("evaluate", cwd=credit_project)
    assert "ROC-AUC" in result.stdout and "KS" in result.stdout
    metrics = json.loads((credit_project / "models/credit/v1/evaluation/metrics.json").read_text())
    assert metrics["roc_auc"] > 0.65
    assert set(metrics["fairness"]) == {"sex", "age_band"}
    report = (credit_project / "models/credit/v1/evaluation/report.html").read_text()
    assert "Fairness" in report and "What drives the predictions (SHAP)" in report


def test_cli_predict_json_input(credit_project: Path) -> None:
    result = run_cli("predict", "--json", json.dumps(APPLICANT), cwd=credit_project)
    prediction = json.loads(result.stdout)
    assert prediction["decision"] in {"approve", "decline"}
    assert 0 < prediction["probability"] < 1
    bad = run_cli("predict", '{"age": 30}', cwd=credit_project, check=False)
    assert bad.returncode == 2
    assert "inputs[0]: required fields are missing: limit_bal, income" in bad.stderr


def test_server_predicts_explains_and_rejects_bad_fields(credit_project: Path) -> None:
    with running_server(credit_project) as base, api_client(credit_project) as api:
        [info] = api.get(f"{base}/v1/models").json()["data"]
        schema = info["input_schema"]
        assert set(schema["required"]) == set(APPLICANT)
        assert schema["properties"]["home_ownership"]["enum"] == ["mortgage", "own", "rent", None]
        url = f"{base}/v1/models/credit"
        response = api.post(f"{url}/predict", json={"inputs": [APPLICANT]}, timeout=30)
        assert response.status_code == 200
        [prediction] = response.json()["predictions"]
        assert set(prediction) == {"label", "probability", "score", "decision", "reason_codes"}
        computed = {"limit_to_income": 20000 / 2100}  # limit_bal / income
        assert prediction["reason_codes"]
        for reason in prediction["reason_codes"]:  # each with the value sent or computed
            expected = APPLICANT.get(reason["feature"], computed.get(reason["feature"]))
            assert reason["value"] == pytest.approx(expected)

        explained = api.post(f"{url}/explain", json={"inputs": [APPLICANT]}, timeout=30).json()
        [explanation] = explained["explanations"]
        assert set(explanation["contributions"]) == set(APPLICANT) | {"limit_to_income"}

        wrong_type = api.post(f"{url}/predict", json={"inputs": [{**APPLICANT, "age": "old"}]})
        assert wrong_type.status_code == 422
        assert (
            wrong_type.json()["error"]["message"]
            == "inputs[0].age: expected a number or null, got 'old'"
        )
        # A request matches the published schema exactly: a number is a JSON number.
        text_number = api.post(f"{url}/predict", json={"inputs": [{**APPLICANT, "age": "24"}]})
        assert text_number.status_code == 422

        extra = api.post(f"{url}/predict", json={"inputs": [{**APPLICANT, "zip": "10115"}]})
        assert extra.status_code == 422
        assert extra.json()["error"]["message"].startswith("inputs[0].zip: unknown field")

        missing = {k: v for k, v in APPLICANT.items() if k != "income"}
        absent = api.post(f"{url}/predict", json={"inputs": [missing]})
        assert absent.status_code == 422
        assert absent.json()["error"]["message"] == "inputs[0].income: required field is missing"
