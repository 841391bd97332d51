"""What every project config shares: its name, where its registry is, how to serve and bill it,
and how to split data files that come whole."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from forgeline.config.privacy import PrivacyConfig
from forgeline.config.sections import NAME_PATTERN, Section
from forgeline.config.service import BillingConfig, DatabaseConfig, RedisConfig, ServeConfig


class SplitConfig(Section):
    """How to carve validation and test sets out of ``data.train`` when they are not given."""

    validation: float = Field(0.1, gt=0, lt=0.5, description="Fraction held out for validation.")
    test: float = Field(0.1, gt=0, lt=0.5, description="Fraction held out for the final test.")
    seed: int = Field(42, description="Seed of the stratified split.")


class ProjectBase(Section):
    name: str = Field(
        pattern=NAME_PATTERN,
        description="Model name in the registry and in URLs (lowercase, digits, . _ -).",
    )
    serve: ServeConfig = ServeConfig()
    registry: Path = Field(Path("models"), description="Directory of the model registry.")
    billing: BillingConfig = BillingConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    fairness_max_difference: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Warn when a between-group difference (e.g. demographic parity) exceeds this.",
    )
