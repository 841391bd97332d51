"""What every section of ``forgeline.yaml`` shares."""

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
"""Names of models, plans and tenants: they appear in URLs, file paths and invoices."""


class Section(BaseModel):
    """Unknown keys are errors (a typo must not be silently ignored); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
