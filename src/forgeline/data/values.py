"""Reading single cell values the way spreadsheets and exports write them."""

from __future__ import annotations

import math
from typing import Any

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
TRUE_TOKENS = frozenset({"true", "yes", "y", "t"})
FALSE_TOKENS = frozenset({"false", "no", "n", "f"})


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def parse_number(value: Any) -> float | None:
    """A float from a number or numeric text (``"5.00E+05"``, ``" 42 "``); None if it is not."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except (ValueError, OverflowError):
        return None
    return None if math.isinf(number) or math.isnan(number) else number


def parse_boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    token = str(value).strip().lower()
    if token in TRUE_TOKENS:
        return True
    if token in FALSE_TOKENS:
        return False
    return None


def category_key(value: Any) -> str:
    """A category as text; a whole float (1.0 from JSON) matches the level written as "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
