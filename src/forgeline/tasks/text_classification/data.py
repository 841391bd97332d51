"""Reading and validating labelled text: every problem is reported with its file, row and column."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from forgeline.config import Project, TextClassificationConfig
from forgeline.config.schema import TextDataConfig
from forgeline.data import Table, fingerprint_files, read_table, split_frames
from forgeline.errors import DataError
from forgeline.evaluate.fairness import check_bands
from forgeline.tasks.base import DataSplits

TEXT = "text"
LABEL = "label"
_MAX_LISTED = 10


def _cell_to_text(value: object) -> str | None:
    """A cell as text; None when missing (NaN/None) so it is reported, not trained on."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)


def _read_labelled(
    table: Table, text_column: str, label_column: str, kept: list[str]
) -> pd.DataFrame:
    """Texts and labels, plus the ``kept`` columns (sensitive attributes for the audit)."""
    frame = table.frame
    missing_columns = [c for c in (text_column, label_column, *kept) if c not in frame.columns]
    if missing_columns:
        raise DataError(
            f"{table.source}: column {', '.join(repr(c) for c in missing_columns)} not found; "
            f"the file has columns {', '.join(map(repr, frame.columns))} "
            "(set data.text_column / data.label_column)"
        )
    problems: list[str] = []
    texts: list[str] = []
    labels: list[str] = []
    for position, (raw_text, raw_label) in enumerate(
        zip(frame[text_column], frame[label_column], strict=True)
    ):
        text = _cell_to_text(raw_text)
        label = _cell_to_text(raw_label)
        if text is None:
            problems.append(f"{table.where(position, text_column)}: missing text")
        elif not text.strip():
            problems.append(f"{table.where(position, text_column)}: empty text")
        if label is None or not label.strip():
            problems.append(f"{table.where(position, label_column)}: missing label")
        texts.append(text or "")
        labels.append((label or "").strip())
    if problems:
        shown = problems[:_MAX_LISTED]
        more = (
            f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        )
        raise DataError(f"{len(problems)} invalid row(s):\n  " + "\n  ".join(shown) + more)
    labelled = pd.DataFrame({TEXT: texts, LABEL: labels})
    for column in kept:
        labelled[column] = frame[column].to_numpy()
    return labelled


def _check_label_counts(train: pd.DataFrame, source: str, label_column: str) -> None:
    rare = sorted((label, n) for label, n in Counter(train[LABEL]).items() if n < 2)
    if rare:
        listed = ", ".join(f"'{label}' ({n})" for label, n in rare[:_MAX_LISTED])
        raise DataError(
            f"{source}: column '{label_column}': every label needs at least 2 training examples; "
            f"too few for {listed}"
        )
    if train[LABEL].nunique() < 2:
        raise DataError(f"{source}: need at least 2 different labels to train a classifier")


def _leakage_warnings(splits: dict[str, pd.DataFrame]) -> list[str]:
    warnings = []
    train_texts = set(splits["train"][TEXT])
    for name in ("validation", "test"):
        duplicated = sorted(set(splits[name][TEXT]) & train_texts)
        if duplicated:
            examples = "; ".join(repr(t[:60]) for t in duplicated[:3])
            warnings.append(
                f"leakage: {len(duplicated)} text(s) in the {name} set also appear in the "
                f"training set, which inflates {name} scores (e.g. {examples})"
            )
    return warnings


def audited_columns(data: TextDataConfig) -> list[str]:
    """The columns the fairness audit needs: sensitive ones and those behind bands."""
    named = [data.bands[s].column if s in data.bands else s for s in data.sensitive]
    return list(dict.fromkeys(named))


def prepare_text_data(project: Project) -> DataSplits:
    config = project.config_for(TextClassificationConfig)
    data = config.data
    files = project.data_files()
    tables = {role: read_table(path, data.text_format()) for role, path in files.items()}
    for table in tables.values():
        check_bands(table, data.bands)
    frames = {
        role: _read_labelled(table, data.text_column, data.label_column, audited_columns(data))
        for role, table in tables.items()
    }
    splits = split_frames(frames, LABEL, data.split)
    _check_label_counts(splits["train"], str(data.train), data.label_column)
    warnings = [n for n in (table.delimiter_notice() for table in tables.values()) if n]
    warnings += _leakage_warnings(splits)
    known = set(splits["train"][LABEL])
    fallback = config.fallback.label if config.fallback else None
    for name in ("validation", "test"):
        unseen = sorted(set(splits[name][LABEL]) - known - {fallback})
        if unseen:
            warnings.append(
                f"{name} set has label(s) never seen in training, always mispredicted: "
                + ", ".join(unseen[:_MAX_LISTED])
            )
    settings = (
        f"{data.text_column}|{data.label_column}|{data.split.model_dump_json()}"
        f"|{data.delimiter}|{data.encoding}"
    )
    prepared = DataSplits(
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        fingerprint=fingerprint_files(files, settings),
        warnings=warnings,
    )
    if not data.redact:
        return prepared
    from forgeline.privacy.training import column_rewrite, redacted  # Presidio: when asked

    return redacted(prepared, project, column_rewrite(TEXT))
