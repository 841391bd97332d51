"""Rewriting text columns of CSV, JSONL and Parquet files a chunk at a time: the other columns
as they were, errors that name file, row and column, and no half-written output."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from forgeline.data.rewrite import CellError, rewrite_columns
from forgeline.errors import DataError


def shout(values: list[str]) -> list[str]:
    return [value.upper() for value in values]


def refuse_x(values: list[str]) -> list[str]:
    for index, value in enumerate(values):
        if "x" in value:
            raise CellError(index, f"no x allowed in {value!r}")
    return values


def test_csv_column_rewritten_in_chunks_others_kept(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        'id;body;note\n007;hello;"a;b"\n2;"two\nlines";NA\n3;;\n4;world;1.0\n5;ünï;x\n',
        encoding="utf-8",
    )
    output = tmp_path / "out.csv"
    assert rewrite_columns(source, output, ["body"], shout, chunk_rows=2) == 5
    written = pd.read_csv(output, sep=";", dtype=str, keep_default_na=False)
    original = pd.read_csv(source, sep=";", dtype=str, keep_default_na=False)
    assert written["body"].tolist() == ["HELLO", "TWO\nLINES", "", "WORLD", "ÜNÏ"]
    pd.testing.assert_frame_equal(written.drop(columns="body"), original.drop(columns="body"))
    assert set(tmp_path.iterdir()) == {source, output}  # no temporary file left


def test_jsonl_records_keep_their_other_fields_and_types(tmp_path: Path) -> None:
    records = [
        {"id": 1, "body": "hi", "meta": {"tags": ["a"]}},
        {"id": 2},
        {"body": None, "id": 3},
        {"id": 4, "body": "there"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert rewrite_columns(source, output, ["body"], shout, chunk_rows=3) == 4
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"id": 1, "body": "HI", "meta": {"tags": ["a"]}},
        {"id": 2},
        {"body": None, "id": 3},
        {"id": 4, "body": "THERE"},
    ]


def test_parquet_keeps_its_schema(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "body": ["a", None, "c"], "score": [0.5, 1.5, 2.5]})
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    output = tmp_path / "out.parquet"
    assert rewrite_columns(source, output, ["body"], shout, chunk_rows=2) == 3
    written = pq.read_table(output)
    assert written.schema == pq.read_schema(source)
    assert written.column("body").to_pylist() == ["A", None, "C"]
    assert written.column("id").to_pylist() == [1, 2, 3]
    with pytest.raises(DataError, match=r"in\.parquet: column 'id' holds int64 values, not text"):
        rewrite_columns(source, tmp_path / "again.parquet", ["id"], shout)


def test_errors_name_file_row_and_column_and_leave_no_output(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,body\n1,ok\n2,fine\n3,has x\n", encoding="utf-8")
    output = tmp_path / "out.csv"
    output.write_text("an older result\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"in\.csv, row 3 \(line 4\), column 'body': no x allowed"):
        rewrite_columns(source, output, ["body"], refuse_x, chunk_rows=2)
    assert output.read_text(encoding="utf-8") == "an older result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    with pytest.raises(DataError, match=r"in\.csv: no column 'text' \(columns: id, body\)"):
        rewrite_columns(source, output, ["text"], shout)
    with pytest.raises(DataError, match="is the input file"):
        rewrite_columns(source, source, ["body"], shout)
    with pytest.raises(DataError, match=r"write '.*out\.jsonl' as \.csv"):
        rewrite_columns(source, tmp_path / "out.jsonl", ["body"], shout)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"body": "a"}\n\n{"body": 4111111111111111}\n', encoding="utf-8")
    with pytest.raises(
        DataError, match=r"in\.jsonl, line 3, column 'body': expected text, found int$"
    ):  # the type only: the value itself may be personal data
        rewrite_columns(source, tmp_path / "out.jsonl", ["body"], shout)
    with pytest.raises(DataError, match=r"in\.jsonl: no record has column 'text'"):
        rewrite_columns(source, tmp_path / "out.jsonl", ["text"], shout)
    assert not (tmp_path / "out.jsonl").exists()
