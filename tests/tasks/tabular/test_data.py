from pathlib import Path

import pytest

from forgeline.config import Project, load_project
from forgeline.errors import DataError
from forgeline.evaluate.fairness import sensitive_groups
from forgeline.tasks.tabular import TabularClassifier
from forgeline.tasks.tabular.data import EVENT
from tests.conftest import write_project
from tests.tasks.tabular.conftest import TABULAR_YAML, credit_frame


def _project(tmp_path: Path, csv: str, yaml_text: str = TABULAR_YAML) -> Project:
    return load_project(write_project(tmp_path, yaml_text, {"data/train.csv": csv}))


def test_prepare_splits_maps_target_and_reports(credit_project: Project) -> None:
    splits = TabularClassifier.prepare_data(credit_project)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 3000
    assert set(splits.train[EVENT]) == {0, 1}
    assert any("'customer_id' looks like an identifier" in w for w in splits.warnings)
    assert any("event 'yes' in" in w for w in splits.warnings)


def test_target_needs_two_values(tmp_path: Path) -> None:
    csv = "x,sex,age,default\n" + "".join(f"{i},f,30,{['a', 'b', 'c'][i % 3]}\n" for i in range(30))
    with pytest.raises(DataError, match=r"a binary target needs exactly 2 values, found 3"):
        TabularClassifier.prepare_data(_project(tmp_path, csv))


def test_ambiguous_target_asks_for_positive(tmp_path: Path) -> None:
    csv = "x,sex,age,default\n" + "".join(
        f"{i},f,30,{['paid', 'late'][i % 2]}\n" for i in range(30)
    )
    with pytest.raises(
        DataError, match=r"cannot tell which of 'late' and 'paid' is the event; set data\.positive"
    ):
        TabularClassifier.prepare_data(_project(tmp_path, csv))
    splits = TabularClassifier.prepare_data(
        _project(tmp_path, csv, TABULAR_YAML + "  positive: late\n")
    )
    assert splits.train[EVENT].mean() == pytest.approx(0.5, abs=0.1)


def test_missing_target_names_the_row(tmp_path: Path) -> None:
    frame = credit_frame(40)
    frame.loc[5, "default"] = ""
    with pytest.raises(
        DataError, match=r"missing target value at .*train\.csv, row 6 \(line 7\), column 'default'"
    ):
        TabularClassifier.prepare_data(_project(tmp_path, frame.to_csv(index=False)))


def test_override_to_numeric_names_the_bad_cell(tmp_path: Path) -> None:
    frame = credit_frame(40)
    yaml_text = TABULAR_YAML + "  columns: {home: numeric}\n"
    with pytest.raises(
        DataError, match=r"row 1 \(line 2\), column 'home': '(rent|own)' is not a number"
    ):
        TabularClassifier.prepare_data(_project(tmp_path, frame.to_csv(index=False), yaml_text))


def test_unknown_configured_column(tmp_path: Path) -> None:
    yaml_text = TABULAR_YAML + "  drop: [salary]\n"
    with pytest.raises(DataError, match=r"data\.drop: no column 'salary'"):
        TabularClassifier.prepare_data(
            _project(tmp_path, credit_frame(40).to_csv(index=False), yaml_text)
        )


def test_missing_target_column(tmp_path: Path) -> None:
    frame = credit_frame(40).drop(columns=["default"])
    with pytest.raises(DataError, match=r"target column 'default' not found"):
        TabularClassifier.prepare_data(_project(tmp_path, frame.to_csv(index=False)))


def test_age_bands(credit_project: Project) -> None:
    import pandas as pd

    from forgeline.config import TabularClassificationConfig

    data = credit_project.config_for(TabularClassificationConfig).data
    frame = pd.DataFrame({"sex": ["f", "m", "f", ""], "age": ["29", "30", "70", ""]})
    groups = sensitive_groups(frame, data.sensitive, data.bands)
    assert groups["age_band"].tolist() == ["<30", "30-<50", ">=50", "missing"]
    assert groups["sex"].tolist() == ["f", "m", "f", "missing"]


def test_band_on_a_text_column_is_an_error(tmp_path: Path) -> None:
    yaml_text = TABULAR_YAML.replace("column: age", "column: home")
    with pytest.raises(
        DataError,
        match=r"data\.bands\.age_band: column 'home' must hold numbers, but .*row 1 \(line 2\)",
    ):
        TabularClassifier.prepare_data(
            _project(tmp_path, credit_frame(40).to_csv(index=False), yaml_text)
        )


def test_mostly_numeric_column_with_a_typo_is_an_error_naming_the_cell(tmp_path: Path) -> None:
    frame = credit_frame(100)
    frame["income"] = frame["income"].astype(object)
    frame.loc[7, "income"] = "forty"
    with pytest.raises(DataError) as error:
        TabularClassifier.prepare_data(_project(tmp_path, frame.to_csv(index=False)))
    message = str(error.value)
    assert "row 8 (line 9), column 'income': 'forty' is not a number" in message
    assert "99 of the column's 100 values are" in message
    assert "data.columns.income: categorical" in message


def test_test_set_target_value_unseen_in_training(tmp_path: Path) -> None:
    yaml_text = TABULAR_YAML + "  validation: data/test.csv\n  test: data/test.csv\n"
    test = credit_frame(40)
    test.loc[3, "default"] = "maybe"
    config = write_project(
        tmp_path,
        yaml_text,
        {
            "data/train.csv": credit_frame(100).to_csv(index=False),
            "data/test.csv": test.to_csv(index=False),
        },
    )
    with pytest.raises(
        DataError,
        match=r"test\.csv, column 'default': unexpected value 'maybe'; the training data has 'yes' and 'no'",
    ):
        TabularClassifier.prepare_data(load_project(config))
