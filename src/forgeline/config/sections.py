"""What every section of ``forgeline.yaml`` shares."""

import re

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
"""Names of models, plans and tenants: they appear in URLs, file paths and invoices."""


def is_name(text: str) -> bool:
    """Whether ``text`` is a whole name. ``re.match`` with ``$`` would also accept a trailing
    newline ("acme\\n"), which would then be a different tenant from "acme"."""
    return re.fullmatch(NAME_PATTERN, text) is not None


class Section(BaseModel):
    """Unknown keys are errors (a typo must not be silently ignored); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
