"""Derived features: numeric columns computed from input columns by expressions in config.

``data.derived: {utilization: bill_amt1 / limit_bal}`` adds a feature that the model trains on
and that reason codes can name, while requests still send only the input columns.

numexpr computes the values, but it compiles an expression with Python's ``eval`` and its own
sanitizer lets some constructs through, so every expression is first checked here against an
allow-list of syntax: numbers, column names, arithmetic, comparisons, ``& | ~`` and calls of
element-wise functions. Reductions (``sum``, ``max``, ...) are refused as well: over a batch
they would make one row's value depend on the other rows. The check runs when a model is
trained and again when a saved model is loaded, since ``tabular.json`` may come from elsewhere.

A result is missing (NaN) where any input it reads is missing, or where it is not a finite
number (e.g. a division by zero).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from functools import lru_cache

import numexpr
import numpy as np
from numpy.typing import NDArray

from forgeline.errors import ConfigError

FUNCTIONS = frozenset(
    {
        "where", "abs", "sign", "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10",
        "floor", "ceil", "round", "trunc", "minimum", "maximum", "isnan", "isfinite",
    }
)  # fmt: skip
_OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.USub, ast.UAdd, ast.Invert,
    ast.BitAnd, ast.BitOr, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)  # fmt: skip
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Load)


def _refuse(name: str, expression: str, why: str) -> ConfigError:
    return ConfigError(f"data.derived.{name}: {expression!r} {why}")


@lru_cache(maxsize=256)
def referenced_columns(name: str, expression: str) -> tuple[str, ...]:
    """The column names an expression reads, in order of first use, once its syntax is known
    to be on the allow-list; ``name`` is the config key, for error messages."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise _refuse(name, expression, f"is not an expression: {exc.msg}") from None
    functions: set[int] = set()
    columns: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise _refuse(name, expression, f"may hold numbers only, not {node.value!r}")
        elif isinstance(node, ast.Call):
            called = node.func.id if isinstance(node.func, ast.Name) else None
            if called not in FUNCTIONS or node.keywords:
                shown = called or ast.unparse(node.func)
                raise _refuse(
                    name,
                    expression,
                    f"calls {shown}(...); allowed are {', '.join(sorted(FUNCTIONS))}, with "
                    "positional arguments",
                )
            functions.add(id(node.func))
        elif isinstance(node, ast.Name):
            if id(node) not in functions:
                columns.append(node.id)
        elif not isinstance(node, _NODES + _OPERATORS):
            raise _refuse(
                name, expression, f"uses {type(node).__name__}, which derived features do not allow"
            )
    if not columns:
        raise _refuse(name, expression, "reads no column")
    return tuple(dict.fromkeys(columns))


def check_expression(name: str, expression: str, numeric_columns: list[str]) -> None:
    """Refuse an expression outside the allow-list, or that reads an unknown or non-numeric
    column, or that numexpr cannot evaluate, naming the config field."""
    for column in referenced_columns(name, expression):
        if column not in numeric_columns:
            raise _refuse(
                name,
                expression,
                f"reads {column!r}, which is not a numeric feature column; expressions can use "
                f"{', '.join(numeric_columns) or 'none'}",
            )
    sample = {column: np.ones(1) for column in numeric_columns}
    problem = numexpr.validate(expression, local_dict=sample, global_dict={}, sanitize=True)
    if problem is not None:
        hint = (
            " (a condition is a comparison, e.g. where(flag == 1, a, b))"
            if "where" in str(problem)
            else ""
        )
        raise _refuse(name, expression, f"cannot be evaluated: {problem}{hint}")


def missing_inputs(
    name: str, expression: str, columns: Mapping[str, NDArray[np.float64]]
) -> NDArray[np.bool_]:
    """Per row, whether any input the expression reads is missing."""
    read = referenced_columns(name, expression)
    return np.asarray(np.logical_or.reduce([np.isnan(columns[column]) for column in read]))


def evaluate(
    name: str, expression: str, columns: Mapping[str, NDArray[np.float64]]
) -> NDArray[np.float64]:
    """The derived values of every row: NaN where an input it reads is missing or the result
    is not finite."""
    inputs = {column: columns[column] for column in referenced_columns(name, expression)}
    values = np.asarray(
        numexpr.evaluate(expression, local_dict=inputs, global_dict={}, sanitize=True),
        dtype=np.float64,
    ).copy()
    values[missing_inputs(name, expression, inputs) | ~np.isfinite(values)] = np.nan
    return values
