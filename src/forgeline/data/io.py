"""Read and write CSV, JSONL and Parquet, remembering where each row came from.

Validation errors must name the file and row, so every :class:`Table` keeps its source path and
a way to describe a row position in terms the user can find in their file (a CSV line number, a
JSONL line number, a Parquet row number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forgeline.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    source: Path

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


def _read_jsonl(path: Path) -> pd.DataFrame:
    """JSON Lines, parsed line by line so an error names its line (pandas' does not)."""
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{display_path(path)}, line {number}: not valid JSON ({exc.msg} at column "
                    f"{exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise DataError(f"{display_path(path)}, line {number}: expected a JSON object")
            records.append(record)
    return pd.DataFrame.from_records(records)


def read_table(path: Path) -> Table:
    """Read a data file, keeping every value as written (strings stay strings)."""
    if not path.is_file():
        raise DataError(f"no such file '{path}'")
    suffix = _check_suffix(path)
    try:
        if suffix == ".csv":
            # dtype=str + keep_default_na=False: labels such as "NA" or "1.0" stay as written;
            # an empty cell becomes "" and is reported by validation rather than guessed at.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".jsonl":
            frame = _read_jsonl(path)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as {suffix[1:].upper()}: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    return Table(frame=frame.reset_index(drop=True), source=path)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    suffix = _check_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
