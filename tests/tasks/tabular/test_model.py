"""Fitting, saving, predicting and explaining on a synthetic credit table (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shap

from forgeline.config import Project
from forgeline.tasks.tabular import TabularClassifier
from forgeline.tasks.tabular.columns import features_matrix
from tests.tasks.tabular.conftest import APPLICANT


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[TabularClassifier, Project]:
    from forgeline.config import load_project
    from tests.conftest import write_project
    from tests.tasks.tabular.conftest import TABULAR_YAML, credit_frame

    root = tmp_path_factory.mktemp("credit")
    write_project(root, TABULAR_YAML, {"data/train.csv": credit_frame().to_csv(index=False)})
    project = load_project(root / "forgeline.yaml")
    model = TabularClassifier.fit(project, TabularClassifier.prepare_data(project), lambda _: None)
    return model, project


def test_fit_excludes_ids_and_sensitive_columns(fitted: tuple[TabularClassifier, Project]) -> None:
    model, _ = fitted
    names = [c.name for c in model.settings.columns]
    assert "customer_id" not in names and "sex" not in names
    assert "age" in names  # the column behind age_band stays an input
    assert model.training_metrics["lightgbm_validation_roc_auc"] > 0.7
    assert model.baseline is not None and model.baseline.estimator.kind == "logistic"


def test_prediction_has_probability_score_decision_and_reasons(
    fitted: tuple[TabularClassifier, Project],
) -> None:
    model, _ = fitted
    [risky] = model.predict([APPLICANT])
    safe_applicant = {
        **APPLICANT,
        "utilization": 0.05,
        "late_payments": 0,
        "previous_default": "no",
        "income": 9000,
    }
    [safe] = model.predict([safe_applicant])
    assert risky["probability"] > safe["probability"]
    assert risky["score"] < safe["score"]  # more points means less risk
    assert risky["decision"] == "decline" and safe["decision"] == "approve"
    reasons = risky["reason_codes"]
    assert 1 <= len(reasons) <= 4
    assert {r["feature"] for r in reasons} <= set(APPLICANT)
    assert all(r["value"] == APPLICANT[r["feature"]] for r in reasons)
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True) and contributions[-1] > 0


def test_reason_code_values_are_numbers_even_when_sent_as_text(
    fitted: tuple[TabularClassifier, Project],
) -> None:
    model, _ = fitted
    as_text = {k: str(v) if isinstance(v, int | float) else v for k, v in APPLICANT.items()}
    [prediction] = model.predict([as_text])  # as a CSV file's cells arrive
    numeric = {c.name for c in model.settings.columns if c.kind == "numeric"}
    reasons = [r for r in prediction["reason_codes"] if r["feature"] in numeric]
    assert reasons
    assert all(r["value"] == float(str(APPLICANT[r["feature"]])) for r in reasons)


def test_reason_codes_agree_with_shap(fitted: tuple[TabularClassifier, Project]) -> None:
    model, project = fitted
    data = TabularClassifier.prepare_data(project)
    features = features_matrix(data.test, model.settings.columns)
    ours, base = model.main.estimator.contributions(features)
    booster = model.main.estimator.booster  # type: ignore[attr-defined]
    explainer = shap.TreeExplainer(booster)
    theirs = explainer.shap_values(features)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(
        ours.sum(axis=1) + base, model.main.estimator.margin(features), atol=1e-6
    )


def test_logistic_contributions_add_up_to_the_margin(
    fitted: tuple[TabularClassifier, Project],
) -> None:
    model, project = fitted
    assert model.baseline is not None
    data = TabularClassifier.prepare_data(project)
    features = features_matrix(data.test, model.settings.columns)
    contributions, base = model.baseline.estimator.contributions(features)
    np.testing.assert_allclose(
        contributions.sum(axis=1) + base, model.baseline.estimator.margin(features), atol=1e-9
    )


def test_save_and_load_predict_the_same(
    fitted: tuple[TabularClassifier, Project], tmp_path: Path
) -> None:
    model, _ = fitted
    model.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "model.lightgbm.txt",
        "baseline.logistic.json",
        "tabular.json",
    }
    again = TabularClassifier.load(tmp_path)
    assert again.predict([APPLICANT]) == model.predict([APPLICANT])
    assert again.explain([APPLICANT]) == model.explain([APPLICANT])


def test_explain_contributions_sum_to_margin(fitted: tuple[TabularClassifier, Project]) -> None:
    model, _ = fitted
    [explanation] = model.explain([APPLICANT])
    total = explanation["base_value"] + sum(explanation["contributions"].values())
    assert total == pytest.approx(explanation["margin"], abs=1e-4)


def test_evaluation_has_the_credit_metrics(fitted: tuple[TabularClassifier, Project]) -> None:
    model, project = fitted
    evaluation = model.evaluate(TabularClassifier.prepare_data(project).test)
    metrics = evaluation.metrics
    for key in ("roc_auc", "pr_auc", "ks", "brier", "expected_calibration_error", "fairness"):
        assert key in metrics
    assert 0.6 < metrics["roc_auc"] <= 1
    assert {row["model"] for row in metrics["comparison"]} == {
        "lightgbm (served)",
        "logistic (baseline)",
    }
    titles = {s.title for s in evaluation.sections}
    assert {"Model comparison", "Calibration", "Score distribution", "Fairness"} <= titles


def test_file_inputs_name_file_row_and_column(fitted: tuple[TabularClassifier, Project]) -> None:
    import pandas as pd

    from forgeline.errors import InputError

    model, _ = fitted
    frame = pd.DataFrame([APPLICANT, {**APPLICANT, "late_payments": "many"}])
    with pytest.raises(
        InputError, match=r"^in\.csv, row 2, column 'late_payments': expected a number, got 'many'$"
    ):
        model.inputs_from_table(frame, "in.csv")
