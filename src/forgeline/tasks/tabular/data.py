"""Reading and validating a table for binary classification: target, column kinds, bands."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forgeline.config import Project, TabularClassificationConfig
from forgeline.config.schema import TabularDataConfig
from forgeline.data import Table, fingerprint_files, read_table, split_frames
from forgeline.data.values import category_key, is_missing, parse_boolean, parse_number
from forgeline.errors import DataError
from forgeline.evaluate.fairness import check_bands
from forgeline.tasks.base import DataSplits
from forgeline.tasks.tabular.columns import Column, infer_kind, input_values, looks_like_id
from forgeline.tasks.tabular.derived import check_expression, evaluate, missing_inputs

EVENT = "__event__"
"""The target as 1 (the event, e.g. default) or 0, in every prepared split."""
KNOWN_EVENTS = {"1": "0", "1.0": "0.0", "yes": "no", "true": "false", "bad": "good", "y": "n"}
RARE_EVENT_SHARE = 0.05
MOSTLY = 0.9
"""A column whose values are at least this share numbers is probably numeric with typos."""
_MAX_LISTED = 10


@dataclass(frozen=True)
class Features:
    columns: list[Column]
    notices: list[str]


def _target_classes(values: list[str], data: TabularDataConfig, where: str) -> tuple[str, str]:
    """(event, non-event): the target value to predict and the other one."""
    distinct = sorted(set(values))
    if data.positive is not None:
        if data.positive not in distinct:
            raise DataError(
                f"{where}: data.positive is '{data.positive}' but the target has "
                f"{', '.join(map(repr, distinct))}"
            )
        if len(distinct) > 2:
            raise DataError(f"{where}: binary target needed, found {len(distinct)} values")
        others = [v for v in distinct if v != data.positive]
        return data.positive, others[0] if others else f"not {data.positive}"
    if len(distinct) != 2:
        raise DataError(
            f"{where}: a binary target needs exactly 2 values, found {len(distinct)}: "
            f"{', '.join(map(repr, distinct[:_MAX_LISTED]))}"
        )
    lowered = {v.lower(): v for v in distinct}
    for event, other in KNOWN_EVENTS.items():
        if set(lowered) == {event, other}:
            return lowered[event], lowered[other]
    raise DataError(
        f"{where}: cannot tell which of {distinct[0]!r} and {distinct[1]!r} is the event; "
        "set data.positive"
    )


def _target_values(table: Table, data: TabularDataConfig) -> list[str]:
    frame = table.frame
    if data.target not in frame.columns:
        raise DataError(
            f"{table.source}: target column '{data.target}' not found; the file has columns "
            f"{', '.join(map(repr, frame.columns))}"
        )
    raw = [None if is_missing(v) else str(v).strip() for v in frame[data.target]]
    missing = [table.where(i, data.target) for i, v in enumerate(raw) if v is None]
    if missing:
        more = f" (and {len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
        raise DataError("missing target value at " + "; ".join(missing[:_MAX_LISTED]) + more)
    return [v for v in raw if v is not None]


def with_event(
    table: Table, data: TabularDataConfig, classes: tuple[str, str] | None
) -> tuple[pd.DataFrame, tuple[str, str]]:
    """The table with the target replaced by EVENT; ``classes`` come from the training data,
    or are determined here when this is the training data."""
    values = _target_values(table, data)
    where = f"{table.source}, column '{data.target}'"
    classes = classes or _target_classes(values, data, where)
    unknown = sorted(set(values) - set(classes))
    if unknown:
        raise DataError(
            f"{where}: unexpected value {unknown[0]!r}; the training data has "
            f"{classes[0]!r} and {classes[1]!r}"
        )
    prepared = table.frame.drop(columns=[data.target]).copy()
    prepared[EVENT] = [int(v == classes[0]) for v in values]
    return prepared, classes


def _check_named_columns(columns: list[str], data: TabularDataConfig, source: str) -> None:
    named = {
        **{c: "data.columns" for c in data.columns},
        **{c: "data.drop" for c in data.drop},
        **{c: "data.sensitive" for c in data.sensitive if c not in data.bands},
        **{b.column: f"data.bands.{n}.column" for n, b in data.bands.items()},
    }
    for column, field in named.items():
        if column not in columns:
            raise DataError(
                f"{field}: no column '{column}' in {source}; columns are {', '.join(map(repr, columns))}"
            )


def select_features(table: Table, data: TabularDataConfig) -> Features:
    """Infer (or take from config) each feature column's kind; drop ids and excluded columns."""
    frame = table.frame
    excluded = set(data.drop) | {EVENT, data.target}
    if not data.sensitive_as_features:
        # A banded column (age -> age_band) stays a feature: the band exists for the audit.
        excluded |= {c for c in data.sensitive if c not in data.bands}
    notices: list[str] = []
    columns: list[Column] = []
    for name in frame.columns:
        if name in excluded:
            continue
        values = frame[name]
        if name not in data.columns and looks_like_id(name, values):
            notices.append(f"column '{name}' looks like an identifier and is not used as a feature")
            continue
        kind = data.columns.get(name) or infer_kind(values)
        column = Column(name=name, kind=kind)
        for position, value in enumerate(values):
            if is_missing(value):
                continue
            if kind == "numeric" and parse_number(value) is None:
                raise DataError(f"{table.where(position, name)}: {value!r} is not a number")
            if kind == "boolean" and parse_boolean(value) is None:
                raise DataError(f"{table.where(position, name)}: {value!r} is not true/false")
        if kind == "categorical":
            column.categories = sorted({category_key(v) for v in values if not is_missing(v)})
            numeric = [parse_number(v) is not None for v in values if not is_missing(v)]
            if name not in data.columns and numeric and sum(numeric) >= MOSTLY * len(numeric):
                # Almost surely a typo in a numeric column: as categories, every distinct number
                # would become a level and requests would have to send them as text.
                position = next(
                    i for i, v in enumerate(values) if not is_missing(v) and parse_number(v) is None
                )
                raise DataError(
                    f"{table.where(position, name)}: {values.iloc[position]!r} is not a number, "
                    f"but {sum(numeric)} of the column's {len(numeric)} values are; fix the cell, "
                    f"or set data.columns.{name}: categorical if it holds categories"
                )
        elif kind == "numeric":
            numbers = [parse_number(v) for v in values if not is_missing(v)]
            present = [n for n in numbers if n is not None]
            column.median = float(pd.Series(present).median()) if present else 0.0
            if math.isnan(column.median):
                column.median = 0.0
        columns.append(column)
    if not columns:
        raise DataError(
            f"{table.source}: no feature columns left after dropping ids and excluded columns"
        )
    return Features(columns + _derived_columns(frame, columns, data, notices), notices)


def _derived_columns(
    frame: pd.DataFrame, columns: list[Column], data: TabularDataConfig, notices: list[str]
) -> list[Column]:
    """The ``data.derived`` features, checked against the input columns and the training data;
    what is worth knowing about their values goes to ``notices``."""
    inputs = input_values(frame, [c for c in columns if c.kind in ("numeric", "boolean")])
    derived = []
    taken = {*frame.columns, data.target, *data.sensitive, *data.bands}
    for name, expression in data.derived.items():
        if name in taken:
            raise DataError(
                f"data.derived.{name}: '{name}' already names a column, the target, a sensitive "
                "attribute or a band; choose another name"
            )
        check_expression(name, expression, list(inputs))
        values = evaluate(name, expression, inputs)
        if not np.isfinite(values).any():
            raise DataError(
                f"data.derived.{name}: {expression!r} has no finite value in any training row"
            )
        lost = int((np.isnan(values) & ~missing_inputs(name, expression, inputs)).sum())
        if lost:
            notices.append(
                f"data.derived.{name}: {expression!r} is not a finite number in {lost} training "
                "row(s) whose inputs are present (e.g. a division by zero); those count as missing"
            )
        median = float(np.nanmedian(values))
        derived.append(Column(name=name, kind="numeric", median=median, expression=expression))
    return derived


def prepare_tabular_data(project: Project) -> DataSplits:
    config = project.config_for(TabularClassificationConfig)
    data = config.data
    files = project.data_files()
    tables = {role: read_table(path, data.text_format()) for role, path in files.items()}
    for table in tables.values():
        _check_named_columns(list(table.frame.columns), data, str(table.source))
    train_frame, classes = with_event(tables["train"], data, None)
    frames = {"train": train_frame}
    for role in ("validation", "test"):
        if role in tables:
            frames[role], _ = with_event(tables[role], data, classes)
    for table in tables.values():
        check_bands(table, data.bands)
    features = select_features(Table(train_frame, tables["train"].source), data)
    frames = split_frames(frames, EVENT, data.split)
    warnings = [n for n in (table.delimiter_notice() for table in tables.values()) if n]
    warnings += features.notices
    share = float(frames["train"][EVENT].mean())
    warnings.append(
        f"target '{data.target}': event '{classes[0]}' in {share:.1%} of training rows"
        + (
            " (rare: class weights and PR-AUC matter more than accuracy)"
            if share < RARE_EVENT_SHARE
            else ""
        )
    )
    settings = f"{data.model_dump_json()}"
    return DataSplits(
        train=frames["train"],
        validation=frames["validation"],
        test=frames["test"],
        fingerprint=fingerprint_files(files, settings),
        warnings=warnings,
    )


def target_classes(project: Project) -> tuple[str, str]:
    """(event, non-event) target values, for predictions and the model card."""
    config = project.config_for(TabularClassificationConfig)
    table = read_table(project.data_files()["train"], config.data.text_format())
    return _target_classes(_target_values(table, config.data), config.data, str(table.source))
