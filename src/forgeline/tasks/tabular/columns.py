"""Column kinds, inferred from the data and overridable in config, and the input schema.

Values are read as text and parsed here, so spreadsheet-style numbers (``5.00E+05``), blanks and
``NA`` are handled the same way for CSV, JSONL and Parquet. The schema inferred at training time
is stored with the model and enforced on every prediction input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forgeline.data.values import (
    FALSE_TOKENS,
    TRUE_TOKENS,
    category_key,
    is_missing,
    parse_boolean,
    parse_number,
)
from forgeline.errors import InputError
from forgeline.tasks.tabular.derived import evaluate

Kind = Literal["numeric", "categorical", "boolean"]
_ID_NAME = re.compile(r"(^|_)(id|uuid|key)$|^id_", re.IGNORECASE)
MIN_ROWS_FOR_ID_CHECK = 20


def infer_kind(values: pd.Series) -> Kind:
    present = [v for v in values if not is_missing(v)]
    if present and all(parse_boolean(v) is not None for v in present):
        return "boolean"
    if present and all(parse_number(v) is not None for v in present):
        return "numeric"
    return "categorical"


def looks_like_id(name: str, values: pd.Series) -> bool:
    """An identifier: named like one, or unique per row and not a measurement."""
    if _ID_NAME.search(name):
        return True
    present = [v for v in values if not is_missing(v)]
    if len(present) < MIN_ROWS_FOR_ID_CHECK or len(set(map(str, present))) < len(present):
        return False
    numbers = [parse_number(v) for v in present]
    if all(n is not None for n in numbers):
        # Unique integers are identifiers; unique real numbers may be amounts.
        return all(float(n).is_integer() for n in numbers if n is not None)
    return True  # unique free text per row, e.g. a customer reference


@dataclass
class Column:
    name: str
    kind: Kind
    categories: list[str] = field(default_factory=list)
    """Categorical levels seen in training, in a fixed order (the model's codes)."""
    median: float = 0.0
    """Numeric fill value for models that cannot take missing values (logistic)."""
    expression: str | None = None
    """For a derived feature (``data.derived``), how it is computed from the input columns."""

    def to_json(self) -> dict[str, Any]:
        saved = asdict(self)
        if self.expression is None:
            del saved["expression"]  # input columns stay readable by earlier versions
        return saved


def convert(column: Column, values: pd.Series) -> pd.Series:
    """Training-time conversion of a column to floats (numeric, boolean) or category codes."""
    if column.kind == "numeric":
        return pd.Series(
            [math.nan if is_missing(v) else parse_number(v) for v in values], dtype=float
        )
    if column.kind == "boolean":
        parsed = [None if is_missing(v) else parse_boolean(v) for v in values]
        return pd.Series([math.nan if p is None else float(p) for p in parsed], dtype=float)
    codes = {category: i for i, category in enumerate(column.categories)}
    return pd.Series(
        [math.nan if is_missing(v) else codes.get(category_key(v), math.nan) for v in values],
        dtype=float,
    )


def input_values(frame: pd.DataFrame, columns: list[Column]) -> dict[str, NDArray[np.float64]]:
    """Each input column (not derived) of ``columns``, converted for the model, by name."""
    return {
        c.name: convert(c, frame[c.name].reset_index(drop=True)).to_numpy()
        for c in columns
        if c.expression is None
    }


def features_matrix(frame: pd.DataFrame, columns: list[Column]) -> NDArray[np.float64]:
    """The model's input matrix: floats, NaN for missing, category codes for categories, and
    derived features computed from the input columns."""
    if len(frame) == 0:
        return np.zeros((0, len(columns)))
    inputs = input_values(frame, columns)
    return np.column_stack(
        [
            inputs[c.name] if c.expression is None else evaluate(c.name, c.expression, inputs)
            for c in columns
        ]
    )


Locate = Callable[[str | None], str]
"""Where an input (field None) or one of its fields is, for error messages."""


def request_location(index: int) -> Locate:
    return lambda field: f"inputs[{index}]" + (f".{field}" if field else "")


def file_location(source: str, position: int) -> Locate:
    return lambda field: f"{source}, row {position + 1}" + (f", column '{field}'" if field else "")


def check_input_row(
    index: int, row: Any, columns: list[Column], locate: Locate | None = None, strict: bool = False
) -> None:
    """Reject a prediction input that does not match the training schema, naming the field.

    ``strict`` is for JSON requests, which must match the published input schema exactly:
    numbers as JSON numbers, yes/no as JSON booleans or as one of :func:`json_booleans`' words,
    a category as one of its levels (or the integer an integer-like level reads as), null for
    missing. Rows of a data file are read the
    lenient way, as spreadsheets write them ("5.00E+05", "yes", "NA")."""
    where = locate or request_location(index)
    if not isinstance(row, dict):
        raise InputError(
            f"{where(None)}: expected an object of feature values, got {type(row).__name__}"
        )
    expected = {c.name: c for c in columns}
    missing = [name for name in expected if name not in row]
    if len(missing) == 1:
        raise InputError(f"{where(missing[0])}: required field is missing")
    if missing:
        raise InputError(f"{where(None)}: required fields are missing: {', '.join(missing)}")
    extra = [name for name in row if name not in expected]
    if extra:
        raise InputError(
            f"{where(extra[0])}: unknown field; expected fields are {', '.join(expected)}"
        )
    for name, value in row.items():
        column = expected[name]
        if strict:
            _check_json_value(column, value, where(name))
            continue
        if is_missing(value):
            continue  # null, blank and NA are missing values, which the models handle
        if column.kind == "numeric" and (isinstance(value, bool) or parse_number(value) is None):
            raise InputError(f"{where(name)}: expected a number, got {value!r}")
        if column.kind == "boolean" and parse_boolean(value) is None:
            raise InputError(f"{where(name)}: expected true or false, got {value!r}")
        if column.kind == "categorical" and (
            isinstance(value, bool | list | dict) or category_key(value) not in column.categories
        ):
            raise InputError(
                f"{where(name)}: unknown category {value!r}; expected one of "
                f"{', '.join(column.categories)}"
            )


def json_booleans() -> list[str]:
    """The words a JSON request may send for a yes/no column besides true and false, as they
    appear in data files ("yes", "No", "TRUE", ...)."""
    words = sorted(TRUE_TOKENS | FALSE_TOKENS)
    forms = (form for word in words for form in (word, word.capitalize(), word.upper()))
    return list(dict.fromkeys(forms))


def json_levels(column: Column) -> list[Any]:
    """What a JSON request may send for a categorical column: each level, and for a level that
    reads as an integer ("3"), that integer too."""
    numbers = [int(level) for level in column.categories if re.fullmatch(r"-?[0-9]{1,15}", level)]
    return [*column.categories, *numbers]


def _check_json_value(column: Column, value: Any, where: str) -> None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return  # missing, which the models handle
    if column.kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isinf(value):
            raise InputError(f"{where}: expected a number or null, got {value!r}")
    elif column.kind == "boolean":
        if not isinstance(value, bool) and value not in json_booleans():
            raise InputError(f"{where}: expected true, false, yes, no or null, got {value!r}")
    elif isinstance(value, bool) or value not in json_levels(column):
        raise InputError(
            f"{where}: unknown category {value!r}; expected one of {', '.join(column.categories)}"
        )
