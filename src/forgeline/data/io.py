"""Read and write CSV, JSONL and Parquet, remembering where each row came from.

Validation errors must name the file and row, so every :class:`Table` keeps its source path and
a way to describe a row position in terms the user can find in their file (a CSV line number, a
JSONL line number, a Parquet row number).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forgeline.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".jsonl", ".parquet")
CSV_DELIMITERS = (",", ";", "\t", "|")
"""What a CSV file may be separated by, in order of preference when several fit."""
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SNIFFED_ROWS = 50
_SNIFFED_CHARS = 1 << 16


@dataclass(frozen=True)
class TextFormat:
    """How to read a text data file: its encoding, and a CSV file's delimiter (None: detect)."""

    encoding: str = "utf-8"
    delimiter: str | None = None


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    source: Path
    delimiter: str | None = None
    """The delimiter a CSV file was read with."""

    def delimiter_notice(self) -> str | None:
        """A line for the user when a CSV file was read with another delimiter than a comma."""
        if self.delimiter is None or self.delimiter == ",":
            return None
        name = DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))
        return (
            f"{display_path(self.source)}: read as {name}-separated values; set data.delimiter "
            "to choose another"
        )

    def where(self, position: int, column: str | None = None) -> str:
        """Describe row ``position`` (0-based, in file order) so the user can find it."""
        suffix = self.source.suffix.lower()
        if suffix == ".csv":
            place = f"row {position + 1} (line {position + 2})"
        elif suffix == ".jsonl":
            place = f"line {position + 1}"
        else:
            place = f"row {position + 1}"
        column_part = f", column '{column}'" if column is not None else ""
        return f"{display_path(self.source)}, {place}{column_part}"


def display_path(path: Path) -> str:
    """The path relative to the working directory when it is below it, as a user would type it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


def reading_codec(encoding: str) -> str:
    """The codec to read a file said to be in ``encoding`` with: utf-8-sig for UTF-8, which
    reads it with or without the byte-order mark some editors write first."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def jsonl_record(name: str, number: int, line: str) -> dict[str, Any]:
    """Line ``number`` of the JSON Lines file ``name``: one JSON object, or an error naming it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{name}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(record, dict):
        raise DataError(f"{name}, line {number}: expected a JSON object")
    return record


def decoded_text(path: Path, encoding: str) -> str:
    """The file's text; an error names the line of the first byte that is not ``encoding``."""
    data = path.read_bytes()
    try:
        return data.decode(reading_codec(encoding))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{display_path(path)}, line {line}: not {encoding} text (byte 0x{data[exc.start]:02x})"
            "; save the file as UTF-8, or set data.encoding to the encoding it was written in "
            "(e.g. latin-1 or cp1252)"
        ) from None


def detect_delimiter(text: str) -> str:
    """The delimiter of CSV ``text``: the candidate that splits the header into the most
    columns and every one of the first lines into as many.

    Not ``csv.Sniffer``: it guesses from character frequencies over any character and, on
    short files or quoted text with punctuation, picks letters or the wrong mark; a header that
    must split the same way as the rows below it decides among a few candidates for certain.
    """
    sample = text[:_SNIFFED_CHARS]
    truncated = len(text) > len(sample)
    best, best_columns = ",", 1
    for candidate in CSV_DELIMITERS:
        reader = csv.reader(io.StringIO(sample), delimiter=candidate)
        rows = [row for row in itertools.islice(reader, _SNIFFED_ROWS) if row]
        if truncated and len(rows) > 1:
            rows.pop()  # may be cut short by the sample's end
        if not rows:
            continue
        columns = len(rows[0])
        if columns > best_columns and all(len(row) == columns for row in rows):
            best, best_columns = candidate, columns
    return best


def _read_csv(path: Path, text_format: TextFormat) -> tuple[pd.DataFrame, str]:
    text = decoded_text(path, text_format.encoding)
    delimiter = text_format.delimiter or detect_delimiter(text)
    # dtype=str + keep_default_na=False: labels such as "NA" or "1.0" stay as written;
    # an empty cell becomes "" and is reported by validation rather than guessed at.
    frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    return frame, delimiter


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    """JSON Lines, parsed line by line so an error names its line (pandas' does not)."""
    records = []
    # Split on newlines only: str.splitlines() would also split inside JSON strings at
    # characters such as U+2028, which JSON allows unescaped.
    for number, line in enumerate(decoded_text(path, encoding).split("\n"), start=1):
        if line.strip():
            records.append(jsonl_record(display_path(path), number, line))
    return pd.DataFrame.from_records(records)


def read_table(path: Path, text_format: TextFormat = TextFormat()) -> Table:
    """Read a data file, keeping every value as written (strings stay strings)."""
    if not path.is_file():
        raise DataError(f"no such file '{path}'")
    suffix = _check_suffix(path)
    delimiter = None
    try:
        if suffix == ".csv":
            frame, delimiter = _read_csv(path, text_format)
        elif suffix == ".jsonl":
            frame = _read_jsonl(path, text_format.encoding)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as {suffix[1:].upper()}: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    return Table(frame=frame.reset_index(drop=True), source=path, delimiter=delimiter)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    suffix = _check_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
