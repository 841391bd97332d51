"""Texts as prediction inputs, validated the same way by every text task: what the server
accepts must be exactly what the published schema says."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from forgeline.errors import InputError

# A text needs one character outside this set. Spelled out (not `\s` or str.strip) so that the
# server and the published schema's `pattern` agree: Python and JavaScript differ on `\s`.
_BLANK = "\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
VISIBLE = f"[^{_BLANK}]"


def text_input_schema(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": VISIBLE, "description": description}


def check_texts(inputs: Sequence[Any], max_input_chars: int | None) -> None:
    """Raise :class:`InputError` naming the first input that is not a text with a visible
    character, or is longer than ``max_input_chars``."""
    for index, text in enumerate(inputs):
        if not isinstance(text, str):
            raise InputError(f"inputs[{index}]: expected a string, got {type(text).__name__}")
        if not re.search(VISIBLE, text):
            raise InputError(f"inputs[{index}]: empty text")
        if max_input_chars is not None and len(text) > max_input_chars:
            raise InputError(
                f"inputs[{index}]: {len(text)} characters is over the limit "
                f"max_input_chars={max_input_chars}"
            )


def texts_from_table(frame: pd.DataFrame, columns: Sequence[str], source: str) -> list[str]:
    """The texts of the first of ``columns`` the table has; an empty one is an error naming
    its row."""
    found = [c for c in columns if c in frame.columns]
    if not found:
        raise InputError(
            f"{source}: no '{columns[0]}' column to predict on; columns are "
            f"{', '.join(map(repr, frame.columns))}"
        )
    column = found[0]
    texts = ["" if pd.isna(t) else str(t) for t in frame[column]]
    for position, text in enumerate(texts):
        if not re.search(VISIBLE, text):
            raise InputError(f"{source}, row {position + 1}, column '{column}': empty text")
    return texts
