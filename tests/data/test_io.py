from pathlib import Path

import pandas as pd
import pytest

from forgeline.data import read_table, write_table
from forgeline.errors import DataError


def test_csv_keeps_values_as_written(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhello,NA\n1.0,007\n")
    frame = read_table(path).frame
    assert frame["label"].tolist() == ["NA", "007"]
    assert frame["text"].tolist() == ["hello", "1.0"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_round_trip_every_format(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    path = tmp_path / f"d{suffix}"
    write_table(frame, path)
    assert read_table(path).frame.to_dict("records") == frame.to_dict("records")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        read_table(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(path)


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{not json\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 3: not valid JSON \(Expecting"):
        read_table(path)
    path.write_text('{"text": "a"}\n["a list"]\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: expected a JSON object"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d.csv", "d.csv, row 3 (line 4), column 'text'"),
        ("d.jsonl", "d.jsonl, line 3, column 'text'"),
    ],
)
def test_where_points_at_the_users_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    write_table(pd.DataFrame({"text": ["a", "b", "c"]}), path)
    assert read_table(path).where(2, "text") == expected
