from pathlib import Path

import pytest

from forgeline.config import load_project
from forgeline.errors import DataError
from forgeline.tasks.base import DataSplits
from forgeline.tasks.text_classification.data import prepare_text_data
from tests.conftest import MINIMAL_YAML, write_project


def _prepare(tmp_path: Path, csv: str, extra_yaml: str = "") -> DataSplits:
    config = write_project(tmp_path, MINIMAL_YAML + extra_yaml, {"data/train.csv": csv})
    return prepare_text_data(load_project(config))


def test_single_file_is_split_three_ways(tmp_path: Path, labelled_csv: str) -> None:
    splits = _prepare(tmp_path, labelled_csv)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (72, 9, 9)
    assert set(splits.test["label"]) == {"shipping", "refund", "account"}
    assert len(splits.fingerprint["sha256"]) == 64
    assert splits.warnings == []


def test_train_and_test_files_get_validation_from_train_and_semicolons_work(
    tmp_path: Path, labelled_csv: str
) -> None:
    semicolons = labelled_csv.replace(",", ";")
    test_rows = "text;label\nwhere did my parcel go;shipping\nrefund please;refund\n"
    config = write_project(
        tmp_path,
        MINIMAL_YAML + "  test: data/test.csv\n",
        {"data/train.csv": semicolons, "data/test.csv": test_rows},
    )
    splits = prepare_text_data(load_project(config))
    assert len(splits.test) == 2  # the test file as given
    assert (len(splits.train), len(splits.validation)) == (81, 9)  # 10% of train, stratified
    assert set(splits.validation["label"]) == {"shipping", "refund", "account"}
    assert any("train.csv: read as semicolon-separated" in w for w in splits.warnings)


def test_empty_text_names_row_and_column(tmp_path: Path, labelled_csv: str) -> None:
    csv = labelled_csv.replace("refund my order 0 please,refund", '" ",refund')
    with pytest.raises(DataError, match=r"train\.csv, row 2 \(line 3\), column 'text': empty text"):
        _prepare(tmp_path, csv)


def test_missing_text_in_jsonl(tmp_path: Path) -> None:
    lines = [f'{{"text": "hello {i}", "label": "{"ab"[i % 2]}"}}' for i in range(10)]
    lines[4] = '{"text": null, "label": "a"}'
    config = write_project(
        tmp_path,
        MINIMAL_YAML.replace("train.csv", "train.jsonl"),
        {"data/train.jsonl": "\n".join(lines) + "\n"},
    )
    with pytest.raises(DataError, match=r"train\.jsonl, line 5, column 'text': missing text"):
        prepare_text_data(load_project(config))


def test_missing_label(tmp_path: Path, labelled_csv: str) -> None:
    csv = labelled_csv.replace("refund my order 3 please,refund", "refund my order 3 please,")
    with pytest.raises(DataError, match=r"row 11 \(line 12\), column 'label': missing label"):
        _prepare(tmp_path, csv)


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"column 'label' not found; the file has columns 'text', 'intent'"
    ):
        _prepare(tmp_path, "text,intent\na,b\n")


def test_label_with_one_example(tmp_path: Path, labelled_csv: str) -> None:
    csv = labelled_csv + "a lonely message,singleton\n"
    with pytest.raises(
        DataError, match=r"at least 2 training examples; too few for 'singleton' \(1\)"
    ):
        _prepare(tmp_path, csv)


def test_duplicates_across_train_and_test_are_leakage_warnings(tmp_path: Path) -> None:
    train = "\n".join(
        ["text,label"] + [f"train {i},{'ab'[i % 2]}" for i in range(40)] + ["shared text,a"]
    )
    test = "text,label\nshared text,a\nfresh,b\n"
    config = write_project(
        tmp_path,
        MINIMAL_YAML + "  validation: data/test.csv\n  test: data/test.csv\n",
        {"data/train.csv": train + "\n", "data/test.csv": test},
    )
    splits = prepare_text_data(load_project(config))
    assert any(
        "leakage: 1 text(s) in the test set" in w and "shared text" in w for w in splits.warnings
    )


def test_custom_columns(tmp_path: Path) -> None:
    csv = "utterance,intent\n" + "".join(f"text {i},{'xy'[i % 2]}\n" for i in range(20))
    splits = _prepare(
        tmp_path, csv.replace("text ", "msg "), "  text_column: utterance\n  label_column: intent\n"
    )
    assert set(splits.train.columns) == {"text", "label"}
    assert set(splits.train["label"]) == {"x", "y"}


def test_sensitive_columns_are_kept_for_the_audit(tmp_path: Path) -> None:
    csv = "text,label,region\n" + "".join(
        f"msg {i},{'ab'[i % 2]},{'ns'[i % 3 == 0]}\n" for i in range(40)
    )
    splits = _prepare(tmp_path, csv, "  sensitive: [region]\n")
    assert list(splits.test.columns) == ["text", "label", "region"]
    with pytest.raises(DataError, match=r"column 'gender' not found"):
        _prepare(tmp_path, csv, "  sensitive: [gender]\n")
