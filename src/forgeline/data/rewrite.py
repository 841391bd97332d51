"""Rewrite some text columns of a CSV, JSONL or Parquet file, a chunk of rows at a time.

For files too large to hold in memory (``forgeline redact --file``): rows are read, changed
and written a chunk at a time, with a progress bar on a terminal. The result is written to a
temporary file beside the output and renamed into place only when every row is done, so an
error never leaves half a file (nor replaces a good one). Every other column is written back
as it was read: CSV cells as text, JSONL records as parsed (key order and types kept), Parquet
batches with their schema.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from forgeline.data.io import (
    SUPPORTED_SUFFIXES,
    detect_delimiter,
    display_path,
    jsonl_record,
    reading_codec,
)
from forgeline.errors import DataError

ColumnTransform = Callable[[list[str]], list[str]]
"""Changes a chunk's texts of one column, returning as many; may raise :class:`CellError`."""

_SAMPLE_BYTES = 1 << 16


class CellError(Exception):
    """Raised by a transform for ``values[index]``: the rewriter names its row and column."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def _apply(transform: ColumnTransform, values: list[Any], where: Callable[[int], str]) -> list[Any]:
    """``values`` with the transform applied to its texts; empty and missing cells stay."""
    for index, value in enumerate(values):
        if value is not None and not isinstance(value, str):
            raise DataError(
                # The type only: the cell may itself hold personal data.
                f"{where(index)}: expected text, found {type(value).__name__}"
            )
    positions = [index for index, value in enumerate(values) if value]
    try:
        changed = transform([values[index] for index in positions])
    except CellError as exc:
        raise DataError(f"{where(positions[exc.index])}: {exc.message}") from None
    result = list(values)
    for index, value in zip(positions, changed, strict=True):
        result[index] = value
    return result


def _place(template: str, first_row: int) -> Callable[[int], str]:
    """Where the ``i``-th value of a chunk starting at row ``first_row`` (0-based) is: the
    template's fields take the row number (from 1), then the line number with a header."""
    return lambda i: template.format(first_row + i + 1, first_row + i + 2)


def _lines(template: str, lines: list[int]) -> Callable[[int], str]:
    return lambda i: template.format(lines[i])


def _line_count(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def _csv_chunks(
    source: Path,
    target: Path,
    columns: Sequence[str],
    transform: ColumnTransform,
    chunk_rows: int,
    encoding: str,
) -> Iterator[int]:
    name = display_path(source)
    with source.open("rb") as head:
        sample = head.read(_SAMPLE_BYTES).decode(reading_codec(encoding), errors="replace")
    delimiter = detect_delimiter(sample)
    row = 0
    with (
        source.open(encoding=reading_codec(encoding), newline="") as handle,
        target.open("w", encoding="utf-8", newline="") as out,
    ):
        reader = pd.read_csv(
            handle, sep=delimiter, dtype=str, keep_default_na=False, chunksize=chunk_rows
        )
        for chunk in reader:
            if row == 0:
                _check_columns(name, columns, list(chunk.columns))
            for column in columns:
                chunk[column] = _apply(
                    transform,
                    chunk[column].tolist(),
                    _place(f"{name}, row {{}} (line {{}}), column '{column}'", row),
                )
            chunk.to_csv(out, sep=delimiter, index=False, header=row == 0, lineterminator="\n")
            row += len(chunk)
            yield len(chunk)


def _check_columns(name: str, wanted: Sequence[str], present: Sequence[str]) -> None:
    missing = [column for column in wanted if column not in present]
    if missing:
        raise DataError(
            f"{name}: no column {', '.join(repr(c) for c in missing)} (columns: "
            f"{', '.join(present)})"
        )


def _jsonl_chunks(
    source: Path,
    target: Path,
    columns: Sequence[str],
    transform: ColumnTransform,
    chunk_rows: int,
    encoding: str,
) -> Iterator[int]:
    name = display_path(source)
    seen: set[str] = set()

    def flush(batch: list[tuple[int, dict[str, Any]]], out: Any) -> None:
        for column in columns:
            holding = [(line, record) for line, record in batch if column in record]
            seen.update([column] if holding else [])
            values = _apply(
                transform,
                [record[column] for _, record in holding],
                _lines(f"{name}, line {{}}, column '{column}'", [line for line, _ in holding]),
            )
            for (_, record), value in zip(holding, values, strict=True):
                record[column] = value
        out.writelines(json.dumps(record, ensure_ascii=False) + "\n" for _, record in batch)

    with (
        source.open(encoding=reading_codec(encoding)) as handle,
        target.open("w", encoding="utf-8") as out,
    ):
        batch: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            batch.append((number, jsonl_record(name, number, line)))
            if len(batch) == chunk_rows:
                flush(batch, out)
                yield len(batch)
                batch = []
        flush(batch, out)
        yield len(batch)
    if len(seen) < len(columns):
        missing = [column for column in columns if column not in seen]
        raise DataError(f"{name}: no record has column {', '.join(repr(c) for c in missing)}")


def _parquet_chunks(
    source: Path,
    target: Path,
    columns: Sequence[str],
    transform: ColumnTransform,
    chunk_rows: int,
    encoding: str,
) -> Iterator[int]:
    name = display_path(source)
    parquet = pq.ParquetFile(source)
    schema = parquet.schema_arrow
    _check_columns(name, columns, schema.names)
    for column in columns:
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(f"{name}: column '{column}' holds {kind} values, not text")
    row = 0
    with pq.ParquetWriter(target, schema) as writer:
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            arrays = []
            for column, array in zip(batch.schema.names, batch.columns, strict=True):
                if column in columns:
                    values = _apply(
                        transform,
                        array.to_pylist(),
                        _place(f"{name}, row {{}}, column '{column}'", row),
                    )
                    array = pa.array(values, type=array.type)
                arrays.append(array)
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=batch.schema))
            row += batch.num_rows
            yield batch.num_rows


_REWRITERS = {".csv": _csv_chunks, ".jsonl": _jsonl_chunks, ".parquet": _parquet_chunks}


def rewrite_columns(
    source: Path,
    output: Path,
    columns: Sequence[str],
    transform: ColumnTransform,
    *,
    chunk_rows: int = 1000,
    encoding: str = "utf-8",
    description: str = "rows",
) -> int:
    """Write ``source`` to ``output`` (same format) with ``columns`` transformed; return the
    number of rows. Errors name the file, row (or line) and column."""
    suffix = source.suffix.lower()
    if not source.is_file():
        raise DataError(f"no such file '{source}'")
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{source}: unsupported file type '{suffix or '(none)'}'; use one of "
            f"{', '.join(SUPPORTED_SUFFIXES)}"
        )
    if output.suffix.lower() != suffix:
        raise DataError(f"--output: write '{output}' as {suffix}, the format of '{source}'")
    if not output.parent.is_dir():
        raise DataError(f"--output: no such directory '{output.parent}'")
    if output.exists() and output.resolve() == source.resolve():
        raise DataError(f"--output: '{output}' is the input file; write the result elsewhere")
    show = sys.stderr.isatty()
    total = (
        (
            pq.ParquetFile(source).metadata.num_rows
            if suffix == ".parquet"
            else max(_line_count(source) - (suffix == ".csv"), 0)
        )
        if show
        else None
    )
    # Beside the output (so the rename is atomic), created as any new file is (umask).
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")
    rows = 0
    try:
        with tqdm(
            total=total, desc=description, unit="rows", disable=not show, dynamic_ncols=True
        ) as bar:
            for done in _REWRITERS[suffix](
                source, partial, columns, transform, chunk_rows, encoding
            ):
                rows += done
                bar.update(done)
        os.replace(partial, output)
    except UnicodeDecodeError:
        raise DataError(
            f"{display_path(source)}: not {encoding} text; save it as UTF-8 or pass "
            "--encoding with the encoding it was written in (e.g. latin-1)"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowException) as exc:
        raise DataError(
            f"{display_path(source)}: cannot read as {suffix[1:].upper()}: {exc}"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return rows
