"""The sections of ``forgeline.yaml`` about running the API: serving, billing, the database of
keys and usage, and Redis."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from forgeline.config.sections import Section, is_name


class LimitsConfig(Section):
    max_inputs_per_request: int = Field(64, ge=1)
    max_input_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)


class BatchingConfig(Section):
    """Adaptive batching of concurrent predict requests to one model."""

    max_batch_size: int = Field(32, ge=1, description="Inputs per forward pass, at most.")
    max_wait_ms: float = Field(
        5, ge=0, description="How long the first request waits for others to join its batch."
    )
    max_queue: int = Field(
        1024, ge=1, description="Inputs waiting at most; beyond it requests get 503."
    )


class FailedAuthLimit(Section):
    """How many requests with a missing or invalid key one client address may send before it
    gets 429: guessing keys (each well-formed guess costs a lookup) is cut to a trickle. Raise
    it when many clients reach the server through one address (a proxy that hides theirs)."""

    requests_per_second: float = Field(1, gt=0, le=1_000_000)
    burst: int = Field(20, ge=1, le=1_000_000)


class ServeConfig(Section):
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
    failed_auth: FailedAuthLimit = FailedAuthLimit()
    redact: bool = Field(
        False,
        description=(
            "Offer POST /v1/redact: personal data found and replaced with this project's "
            "privacy settings, one unit per text (keys need the 'redact' action)."
        ),
    )
    metrics: Literal["admin", "public"] = Field(
        "admin",
        description=(
            "Who may read GET /metrics (per-model traffic): 'admin', with an admin key as a "
            "bearer token (Prometheus: authorization.credentials), or 'public', anyone who can "
            "reach the port. With auth off it is public."
        ),
    )


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


class PlanConfig(Section):
    """A plan a tenant subscribes to: what it costs, what it includes and how fast it may call."""

    monthly_fee: Price = Field(0, description='Subscription fee per month, e.g. 49 or "49.00".')
    included_units: int = Field(
        0, ge=0, description="Units per month covered by the fee (a unit is one input predicted)."
    )
    overage_price: Price = Field(
        0, description='Price of overage_per units beyond the included ones, e.g. "0.50".'
    )
    overage_per: int = Field(1000, ge=1, description="How many units overage_price buys.")
    input_token_price: Price | None = Field(
        None,
        description=(
            'Price of a million prompt tokens of generation calls, e.g. "0.20". With token '
            "prices set, generated calls are billed by their tokens at these prices instead of "
            "as units (they still count toward a hard cap)."
        ),
    )
    output_token_price: Price | None = Field(
        None, description='Price of a million generated tokens, e.g. "0.60".'
    )
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

    @field_validator("input_token_price", "output_token_price", mode="before")
    @classmethod
    def _token_price(cls, value: Any) -> int | None:
        return None if value is None else _to_minor_units(value)

    @model_validator(mode="after")
    def _both_token_prices(self) -> Self:
        if (self.input_token_price is None) != (self.output_token_price is None):
            raise ValueError("give both input_token_price and output_token_price, or neither")
        return self

    @property
    def prices_tokens(self) -> bool:
        return self.input_token_price is not None

    @property
    def bucket_size(self) -> int:
        return self.burst if self.burst is not None else max(1, round(2 * self.requests_per_second))


class LedgerConfig(Section):
    """How long a metered call may wait for its usage record, and how many may wait."""

    timeout_seconds: float = Field(
        10,
        gt=0,
        le=300,
        description=(
            "A call whose record is not committed in this time gets 503 instead of waiting on "
            "a stalled database. Retry with an Idempotency-Key: if the record did commit late, "
            "the retry gets the stored answer and is not billed again."
        ),
    )
    max_pending: int = Field(
        10_000, ge=1, description="Calls waiting to be recorded at most; beyond it, 503."
    )
    lease_seconds: float = Field(
        60,
        ge=1,
        le=3600,
        description=(
            "A streamed generation call renews the hold on its tokens this often (a third "
            "of it); one whose server died is billed for what it held once this has passed."
        ),
    )


class BillingConfig(Section):
    currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code printed on invoices."
    )
    plans: dict[str, PlanConfig] = Field(
        default_factory=dict,
        description="Plans by name; `forgeline keys create --plan NAME` puts a tenant on one.",
    )
    ledger: LedgerConfig = LedgerConfig()

    @field_validator("plans")
    @classmethod
    def _plan_names(cls, plans: dict[str, PlanConfig]) -> dict[str, PlanConfig]:
        for name in plans:
            if not is_name(name):
                raise ValueError(f"plan name '{name}' must be lowercase letters, digits, . _ -")
        return plans


class DatabaseConfig(Section):
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
    keys_env: str = Field(
        "FORGELINE_DATA_KEYS",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "The environment variable holding the keys that encrypt stored replies (one "
            "'ID SECRET' per line or comma; the first encrypts, all decrypt)."
        ),
    )
    keys_file: Path = Field(
        Path("forgeline.keys"),
        description=(
            "The key file read when keys_env is not set (relative to this file); made with a "
            "fresh key when missing. Keep it out of version control and apart from backups."
        ),
    )


class RedisConfig(Section):
    url: str | None = Field(
        None,
        description=(
            "redis://host:port/db shared by several server processes so rate limits hold "
            "across them. FORGELINE_REDIS_URL overrides it. Unset: limits per process."
        ),
    )


SERVICE_SECTIONS = ("serve", "billing", "database", "redis")
"""Sections about running the API, not about the model: kept out of model versions (they hold
database and Redis URLs with passwords, and a version must not freeze an operator's setup)."""


def without_service_sections(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in SERVICE_SECTIONS}
