"""Derived features: numeric columns computed from input columns by expressions in config.

``data.derived: {utilization: bill_amt1 / limit_bal}`` adds a feature that the model trains on
and that reason codes can name, while requests still send only the input columns. Expressions
are evaluated by numexpr, which parses its own small language (arithmetic, comparisons,
``where(condition, a, b)``, ``abs``, ``log``, ``sqrt`` and the like) and refuses attribute access
and calls to anything else, so a config cannot run code. A division by zero, or any other
result that is not a finite number, is a missing value.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numexpr
import numpy as np
from numpy.typing import NDArray

from forgeline.errors import ConfigError


def referenced_columns(name: str, expression: str) -> list[str]:
    """The column names an expression reads, in order of first use (not function names)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(
            f"data.derived.{name}: {expression!r} is not an expression: {exc.msg}"
        ) from None
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    names = [
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called
    ]
    return list(dict.fromkeys(names))


def check_expression(name: str, expression: str, numeric_columns: list[str]) -> None:
    """Refuse an expression that reads an unknown or non-numeric column, or that numexpr cannot
    evaluate, naming the config field."""
    where = f"data.derived.{name}"
    for column in referenced_columns(name, expression):
        if column not in numeric_columns:
            raise ConfigError(
                f"{where}: {column!r} is not a numeric feature column; expressions can use "
                f"{', '.join(numeric_columns) or 'none'}"
            )
    sample = {column: np.ones(1) for column in numeric_columns}
    problem = numexpr.validate(expression, local_dict=sample)
    if problem is not None:
        raise ConfigError(f"{where}: cannot evaluate {expression!r}: {problem}")


def evaluate(expression: str, columns: Mapping[str, NDArray[np.float64]]) -> NDArray[np.float64]:
    """The derived values of every row; NaN where an input is missing or the result is not
    finite (e.g. a division by zero)."""
    values = np.asarray(numexpr.evaluate(expression, local_dict=dict(columns)), dtype=np.float64)
    rows = len(next(iter(columns.values()))) if columns else 1
    values = np.broadcast_to(values, (rows,)).copy()  # a constant expression gives one value
    values[~np.isfinite(values)] = np.nan
    return values
