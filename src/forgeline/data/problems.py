"""Reporting every problem found in a data file at once, so a user fixes them in one pass."""

from __future__ import annotations

from collections.abc import Sequence

from forgeline.errors import DataError

MAX_LISTED = 10
"""Problems shown in full; the rest are counted."""


def raise_problems(problems: Sequence[str], heading: str) -> None:
    """Raise :class:`DataError` listing ``problems`` (each naming its file and line) under
    ``heading`` (e.g. "problem(s) in the conversations"), if there are any."""
    if not problems:
        return
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(f"{len(problems)} {heading}:\n  {shown}{more}")
