from pathlib import Path

import pandas as pd
import pytest

from forgeline.data import read_table, write_table
from forgeline.data.io import TextFormat, detect_delimiter
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


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_the_delimiter_is_detected_and_named(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "d.csv"
    rows = [["text", "label", "amount"], ["card lost, help", "lost_card", "1,5"], ["hi", "x", "2"]]
    quoted = [[f'"{cell}"' if "," in cell else cell for cell in row] for row in rows]
    path.write_text("\n".join(delimiter.join(row) for row in quoted) + "\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["text", "label", "amount"]
    assert table.frame["text"].tolist() == ["card lost, help", "hi"]
    assert table.delimiter == delimiter
    notice = table.delimiter_notice()
    assert (notice is None) == (delimiter == ",")
    if notice is not None:
        assert "d.csv" in notice and "data.delimiter" in notice


def test_a_single_column_and_a_ragged_candidate_fall_back_to_comma() -> None:
    assert detect_delimiter("text\nhello; world\nbye\n") == ","
    # ';' splits the header but not every row the same way: not the delimiter
    assert detect_delimiter("a;b,c\n1;2,3\n4,5\n") == ","


def test_a_set_delimiter_wins_over_detection(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a;b|c\n1;2|3\n")
    assert list(read_table(path, TextFormat(delimiter="|")).frame.columns) == ["a;b", "c"]


def test_bom_and_windows_line_endings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext;label\r\ncafé;x\r\nthé;y\r\n".encode())
    frame = read_table(path).frame
    assert list(frame.columns) == ["text", "label"]
    assert frame["label"].tolist() == ["x", "y"]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes('\ufeff{"text": "a\u2028b", "label": "x"}\r\n'.encode())
    assert read_table(jsonl).frame["text"].tolist() == ["a\u2028b"]


def test_latin1_is_an_error_that_says_what_to_do_or_read_when_set(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\nok,x\ncaf\xe9,y\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert "line 3" in message and "not utf-8" in message and "data.encoding" in message
    frame = read_table(path, TextFormat(encoding="latin-1")).frame
    assert frame["text"].tolist() == ["ok", "café"]
