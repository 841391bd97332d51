"""The schema of ``forgeline.yaml``: the one source of truth for project configuration.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Paths are kept as written; :func:`forgeline.config.load.load_project` resolves them against the
directory of the config file and checks that they exist before any work starts.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Section):
    """How to carve validation and test sets out of ``data.train`` when they are not given."""

    validation: float = Field(0.1, gt=0, lt=0.5, description="Fraction held out for validation.")
    test: float = Field(0.1, gt=0, lt=0.5, description="Fraction held out for the final test.")
    seed: int = Field(42, description="Seed of the stratified split.")


class BandConfig(_Section):
    """A numeric column cut into bands, e.g. ages 18-25, 25-35, ... for a fairness audit."""

    column: str = Field(min_length=1, description="The numeric column to band.")
    edges: list[float] = Field(min_length=1, description="Band edges, increasing.")

    @model_validator(mode="after")
    def _increasing(self) -> BandConfig:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        return self


class _DataFiles(_Section):
    train: Path = Field(description="Training data: a .csv, .jsonl or .parquet file.")
    validation: Path | None = Field(
        None, description="Validation data used for early stopping; split from train if absent."
    )
    test: Path | None = Field(
        None, description="Held-out test data for `forgeline evaluate`; split from train if absent."
    )
    split: SplitConfig = SplitConfig()
    sensitive: list[str] = Field(
        default_factory=list,
        description="Columns (or bands) to audit for fairness: per-group metrics in the report.",
    )
    bands: dict[str, BandConfig] = Field(
        default_factory=dict,
        description="Named bands of numeric columns, usable in `sensitive` (e.g. age_band).",
    )

    @model_validator(mode="after")
    def _validation_and_test_together(self) -> Self:
        if (self.validation is None) != (self.test is None):
            raise ValueError(
                "give both data.validation and data.test, or neither (then both are split "
                "from data.train)"
            )
        return self

    def files(self) -> dict[str, Path]:
        """The data files by config field, for existence checks and fingerprints."""
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {field: path for field, path in named.items() if path is not None}


class TextDataConfig(_DataFiles):
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)


ColumnKind = Literal["numeric", "categorical", "boolean"]


class TabularDataConfig(_DataFiles):
    target: str = Field(min_length=1, description="The column to predict.")
    positive: str | None = Field(
        None,
        description=(
            "The target value that counts as the event (e.g. 'bad', '1', 'yes'). Inferred for "
            "1/0, yes/no, true/false and bad/good targets."
        ),
    )
    columns: dict[str, ColumnKind] = Field(
        default_factory=dict, description="Override the inferred kind of a column."
    )
    drop: list[str] = Field(default_factory=list, description="Columns never used as features.")
    sensitive_as_features: bool = Field(
        False,
        description=(
            "Also use the sensitive columns as model inputs (off: audited, not used). The "
            "numeric column behind a band (age for age_band) is an input either way."
        ),
    )


class TrainingConfig(_Section):
    epochs: float = Field(3, gt=0, le=100)
    learning_rate: float = Field(1e-4, gt=0, lt=1)
    batch_size: int = Field(32, ge=1, le=4096)
    max_length: int = Field(64, ge=8, le=512, description="Longer inputs are truncated.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0, lt=1)
    early_stopping_patience: int = Field(
        2, ge=1, description="Epochs without a better validation macro-F1 before stopping."
    )
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto uses CUDA when available, else the CPU."
    )


class FallbackConfig(_Section):
    """Out-of-scope handling: low-confidence predictions come back as ``label``."""

    label: str = Field(min_length=1, description="Label returned when the model is not confident.")
    threshold: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Minimum top probability to trust the model. 'auto' picks the threshold on the "
            "validation split that maximises the mean of in-scope accuracy and fallback recall, "
            "giving up at most max_in_scope_accuracy_drop of in-scope accuracy."
        ),
    )
    max_in_scope_accuracy_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="With threshold 'auto': largest loss of validation in-scope accuracy allowed.",
    )

    @model_validator(mode="after")
    def _threshold_is_a_probability(self) -> FallbackConfig:
        if isinstance(self.threshold, float) and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be between 0 and 1, or 'auto' (got {self.threshold})")
        return self


class LimitsConfig(_Section):
    max_inputs_per_request: int = Field(64, ge=1)
    max_input_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)


class BatchingConfig(_Section):
    """Adaptive batching of concurrent predict requests to one model."""

    max_batch_size: int = Field(32, ge=1, description="Inputs per forward pass, at most.")
    max_wait_ms: float = Field(
        5, ge=0, description="How long the first request waits for others to join its batch."
    )
    max_queue: int = Field(
        1024, ge=1, description="Inputs waiting at most; beyond it requests get 503."
    )


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth: bool = Field(
        True,
        description=(
            "Require an API key (Authorization: Bearer) on every /v1 call, and meter and bill "
            "each call. Create keys with `forgeline keys create`. Off: open, unmetered API."
        ),
    )
    limits: LimitsConfig = LimitsConfig()
    batching: BatchingConfig = BatchingConfig()
    models: dict[str, BatchingConfig] = Field(
        default_factory=dict, description="Batching settings for particular models, by name."
    )


NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

_MINOR_UNITS = 100  # cents: every price is stored as an integer number of minor currency units


def _to_minor_units(value: Any) -> int:
    """A price written in major units (49, "0.50") as exact integer minor units (4900, 50)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError('a price is a number of currency units, e.g. 49 or "0.50"')
    try:
        amount = Decimal(str(value)) * _MINOR_UNITS
    except InvalidOperation:
        raise ValueError(f"not a price: {value!r}") from None
    if amount < 0 or amount != amount.to_integral_value():
        raise ValueError(f"price {value} must be non-negative with at most 2 decimal places")
    return int(amount)


Price = Annotated[int, Field(ge=0)]
"""Money in integer minor units (cents); written in forgeline.yaml in major units."""


class PlanConfig(_Section):
    """A plan a tenant subscribes to: what it costs, what it includes and how fast it may call."""

    monthly_fee: Price = Field(0, description='Subscription fee per month, e.g. 49 or "49.00".')
    included_units: int = Field(
        0, ge=0, description="Units per month covered by the fee (a unit is one input predicted)."
    )
    overage_price: Price = Field(
        0, description='Price of overage_per units beyond the included ones, e.g. "0.50".'
    )
    overage_per: int = Field(1000, ge=1, description="How many units overage_price buys.")
    hard_cap: bool = Field(
        False,
        description="Refuse calls beyond included_units for the month (402) instead of billing.",
    )
    requests_per_second: float = Field(10, gt=0, description="Sustained request rate per key.")
    burst: int | None = Field(
        None, ge=1, description="Requests a key may make at once (default: 2 x rate, at least 1)."
    )

    @field_validator("monthly_fee", "overage_price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> int:
        return _to_minor_units(value)

    @property
    def bucket_size(self) -> int:
        return self.burst if self.burst is not None else max(1, round(2 * self.requests_per_second))


class BillingConfig(_Section):
    currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code printed on invoices."
    )
    plans: dict[str, PlanConfig] = Field(
        default_factory=dict,
        description="Plans by name; `forgeline keys create --plan NAME` puts a tenant on one.",
    )

    @field_validator("plans")
    @classmethod
    def _plan_names(cls, plans: dict[str, PlanConfig]) -> dict[str, PlanConfig]:
        for name in plans:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"plan name '{name}' must be lowercase letters, digits, . _ -")
        return plans


class DatabaseConfig(_Section):
    url: str = Field(
        "sqlite:///forgeline.db",
        description=(
            "SQLAlchemy URL of the database of keys and usage: a SQLite file (relative to this "
            "file) or postgresql+psycopg://user@host/db. FORGELINE_DATABASE_URL overrides it."
        ),
    )
    sqlite_synchronous: Literal["normal", "full"] = Field(
        "normal",
        description=(
            "SQLite only. normal: a commit survives a crash or kill of the server process "
            "(SQLite's advice for WAL mode); full: also a power loss, at one fsync per commit."
        ),
    )


class RedisConfig(_Section):
    url: str | None = Field(
        None,
        description=(
            "redis://host:port/db shared by several server processes so rate limits hold "
            "across them. FORGELINE_REDIS_URL overrides it. Unset: limits per process."
        ),
    )


class _ProjectBase(_Section):
    name: str = Field(
        pattern=NAME_PATTERN,
        description="Model name in the registry and in URLs (lowercase, digits, . _ -).",
    )
    serve: ServeConfig = ServeConfig()
    registry: Path = Field(Path("models"), description="Directory of the model registry.")
    billing: BillingConfig = BillingConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    fairness_max_difference: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Warn when a between-group difference (e.g. demographic parity) exceeds this.",
    )


class CompressConfig(_Section):
    """`forgeline compress`: ONNX export and int8 quantization, each checked before use."""

    max_metric_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Refuse the int8 model if validation macro-F1 drops by more than this.",
    )
    max_logit_difference: float = Field(
        1e-3, gt=0, description="Refuse the ONNX export if a logit differs more than this."
    )
    per_channel: bool = Field(True, description="Quantize weights per output channel.")


class TextClassificationConfig(_ProjectBase):
    """Fine-tune a pretrained text encoder to put one label on each text."""

    task: Literal["text-classification"]
    base_model: str = Field(
        "minilm-l6", description="A catalogue name (minilm-l6) or a Hugging Face model directory."
    )
    data: TextDataConfig
    training: TrainingConfig = TrainingConfig()
    fallback: FallbackConfig | None = None
    compress: CompressConfig = CompressConfig()

    @property
    def base(self) -> str:
        return self.base_model


class GradientBoostingConfig(_Section):
    learning_rate: float = Field(0.03, gt=0, le=1)
    max_rounds: int = Field(2000, ge=1, description="Upper bound; early stopping picks fewer.")
    early_stopping_rounds: int = Field(100, ge=1)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)


class TabularModelConfig(_Section):
    kind: Literal["lightgbm", "logistic"] = Field(
        "lightgbm", description="lightgbm (gradient boosting) or logistic (interpretable baseline)."
    )
    compare_baseline: bool = Field(
        True, description="Also train the other kind and compare both in the report."
    )
    class_weight: Literal["balanced", "none"] = "balanced"
    calibration: Literal["auto", "isotonic", "platt", "none"] = Field(
        "auto", description="auto picks isotonic or Platt by Brier score on validation data."
    )
    lightgbm: GradientBoostingConfig = GradientBoostingConfig()
    seed: int = 42


class ScorecardConfig(_Section):
    """Points scaling: score = offset + factor * ln(odds of the non-event)."""

    base_score: float = Field(600, description="Score at which the good:bad odds are base_odds.")
    base_odds: float = Field(50, gt=0, description="Good:bad odds at base_score (50 means 50:1).")
    points_to_double_odds: float = Field(20, gt=0)


class DecisionConfig(_Section):
    threshold: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Event probability at or above which the decision is `above`. 'auto' maximises "
            "TPR - FPR (the KS point) on validation data."
        ),
    )
    above: str = Field("decline", min_length=1)
    below: str = Field("approve", min_length=1)
    reason_codes: int = Field(4, ge=0, le=20, description="How many reason codes to return.")

    @model_validator(mode="after")
    def _threshold_is_a_probability(self) -> DecisionConfig:
        if isinstance(self.threshold, float) and not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, or 'auto' (got {self.threshold})")
        return self


class TabularClassificationConfig(_ProjectBase):
    """Score rows of a table for the chance of an event (e.g. credit default)."""

    task: Literal["tabular-classification"]
    data: TabularDataConfig
    model: TabularModelConfig = TabularModelConfig()
    scorecard: ScorecardConfig = ScorecardConfig()
    decision: DecisionConfig = DecisionConfig()

    @property
    def base(self) -> str:
        return self.model.kind


AnyTaskConfig = TextClassificationConfig | TabularClassificationConfig
"""A Forgeline project: one model, its data, how to train it and how to serve it."""

PROJECT_CONFIG: TypeAdapter[AnyTaskConfig] = TypeAdapter(
    Annotated[AnyTaskConfig, Field(discriminator="task")]
)
"""Validates a whole forgeline.yaml; the ``task`` key selects the schema of the rest."""
