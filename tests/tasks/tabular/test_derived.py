"""Derived features (``data.derived``): checked against the data, computed at fit and predict."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from forgeline.config import Project, load_project
from forgeline.errors import ConfigError, DataError, InputError
from forgeline.tasks.tabular import TabularClassifier
from forgeline.tasks.tabular.derived import check_expression, evaluate, referenced_columns
from tests.conftest import write_project
from tests.tasks.tabular.conftest import APPLICANT, TABULAR_YAML, credit_frame

DERIVED_YAML = (
    TABULAR_YAML
    + """\
  derived:
    risk_index: utilization * 10 + late_payments
    limit_to_income: limit_bal / income
"""
)


def _project(root: Path, yaml_text: str) -> Project:
    write_project(root, yaml_text, {"data/train.csv": credit_frame().to_csv(index=False)})
    return load_project(root / "forgeline.yaml")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> TabularClassifier:
    project = _project(tmp_path_factory.mktemp("derived"), DERIVED_YAML)
    return TabularClassifier.fit(project, TabularClassifier.prepare_data(project), lambda _: None)


def test_referenced_columns_are_names_not_functions() -> None:
    assert referenced_columns("x", "where(a > 0, a / b, log(c))") == ("a", "b", "c")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("income / salary", "reads 'salary', which is not a numeric feature column"),
        ("income +* 2", "is not an expression"),
        ("income.__class__", "uses Attribute, which derived features do not allow"),
        ("exec(income)", "calls exec(...); allowed are"),
        ("where(flag, income, 0)", "(a condition is a comparison, e.g. where(flag == 1, a, b))"),
        # Reductions would make a row's value depend on the rest of its batch.
        ("max(income, 0)", "calls max(...)"),
        ("income / sum(income)", "calls sum(...)"),
        ("2 * 3", "reads no column"),
        ("income * 'a'", "may hold numbers only"),
    ],
)
def test_bad_expressions_are_refused_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^data\.derived\.x: .*" + re.escape(message)):
        check_expression("x", expression, ["income", "limit_bal", "flag"])


def test_code_smuggled_past_numexpr_never_runs(tmp_path: Path) -> None:
    # numexpr compiles with eval() and its sanitizer lets generator expressions through.
    marker = tmp_path / "ran"
    payload = f"where(*(open({str(marker)!r}, 'w') for income in (1,)))"
    with pytest.raises(ConfigError, match="derived features do not allow"):
        check_expression("x", payload, ["income"])
    assert not marker.exists()


def test_missing_inputs_and_non_finite_results_are_missing() -> None:
    columns = {"a": np.array([1.0, 0.0, 2.0, np.nan]), "b": np.array([0.0, 0.0, 4.0, 1.0])}
    result = evaluate("x", "a / b", columns)
    assert np.array_equal(result, [np.nan, np.nan, 0.5, np.nan], equal_nan=True)
    # where() would turn a missing flag into the "else" value; it stays missing instead.
    assert np.array_equal(
        evaluate("x", "where(a > 0, 1, 0)", columns), [1, 0, 1, np.nan], equal_nan=True
    )


def test_a_row_gets_the_same_value_alone_or_in_a_batch() -> None:
    batch = {"a": np.array([-1.0, 2.0, 3.0])}
    alone = {"a": np.array([-1.0])}
    assert evaluate("x", "maximum(a, 0)", batch).tolist() == [0.0, 2.0, 3.0]
    assert evaluate("x", "maximum(a, 0)", alone).tolist() == [0.0]


def test_a_tampered_saved_expression_is_refused_at_load(
    fitted: TabularClassifier, tmp_path: Path
) -> None:
    fitted.save(tmp_path)
    settings = tmp_path / "tabular.json"
    settings.write_text(settings.read_text().replace("limit_bal / income", "limit_bal.real"))
    with pytest.raises(ConfigError, match="uses Attribute"):
        TabularClassifier.load(tmp_path)


def test_derived_features_are_trained_on_but_not_sent(fitted: TabularClassifier) -> None:
    names = [c.name for c in fitted.settings.columns]
    assert names[-2:] == ["risk_index", "limit_to_income"]
    assert "risk_index" not in fitted.input_schema()["properties"]
    with pytest.raises(InputError, match=r"inputs\[0\]\.risk_index: unknown field"):
        fitted.check_inputs([{**APPLICANT, "risk_index": 3}])
    [explanation] = fitted.explain([APPLICANT])
    assert explanation["contributions"]["risk_index"] > 0  # 15: far above the typical applicant


def test_reason_codes_give_a_derived_feature_its_computed_value(
    fitted: TabularClassifier, tmp_path: Path
) -> None:
    [prediction] = fitted.predict([APPLICANT])
    reasons = {r["feature"]: r["value"] for r in prediction["reason_codes"]}
    assert reasons["risk_index"] == pytest.approx(1.1 * 10 + 4)
    fitted.save(tmp_path)
    assert TabularClassifier.load(tmp_path).predict([APPLICANT]) == [prediction]


@pytest.mark.parametrize("taken", ["income", "default", "age_band", "sex"])
def test_derived_name_taken_by_a_column_target_or_band_is_refused(
    tmp_path: Path, taken: str
) -> None:
    project = _project(tmp_path, TABULAR_YAML + f"  derived:\n    {taken}: limit_bal / 4\n")
    with pytest.raises(DataError, match=rf"data\.derived\.{taken}: '{taken}' already names"):
        TabularClassifier.prepare_data(project)


def test_non_finite_derived_values_are_reported(tmp_path: Path) -> None:
    frame = credit_frame()
    frame.loc[[3, 9], "income"] = 0
    root = tmp_path / "some"
    write_project(
        root,
        TABULAR_YAML + "  derived:\n    limit_to_income: limit_bal / income\n",
        {"data/train.csv": frame.to_csv(index=False)},
    )
    splits = TabularClassifier.prepare_data(load_project(root / "forgeline.yaml"))
    assert any(
        "data.derived.limit_to_income: 'limit_bal / income' is not a finite number in 2 training"
        in warning
        for warning in splits.warnings
    )
    never = _project(tmp_path / "never", TABULAR_YAML + "  derived:\n    x: income / 0\n")
    with pytest.raises(DataError, match="has no finite value in any training row"):
        TabularClassifier.prepare_data(never)


def test_derived_from_a_categorical_column_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, TABULAR_YAML + "  derived:\n    renter: home * 2\n")
    with pytest.raises(ConfigError, match="reads 'home', which is not a numeric feature column"):
        TabularClassifier.prepare_data(project)
