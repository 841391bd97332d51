"""The tables behind keys, quotas, billing and the audit log. Times are naive UTC; money is
never stored here (prices live in the plans of forgeline.yaml, so an invoice is computed from
units)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    """A customer: the unit that is billed. Its plan sets prices, quota and rate limits."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    plan: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """A key is ``fl_<id>_<secret>``; only the SHA-256 of the whole key is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    models: Mapped[list[str]] = mapped_column(JSON)
    actions: Mapped[list[str]] = mapped_column(JSON)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    replaces: Mapped[str | None] = mapped_column(String(16))


class UsageRecord(Base):
    """One row per successful billable response; ``request_id`` is unique, so never two."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_tenant_period", "tenant_id", "period"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_id: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    model: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    units: Mapped[int]
    created_at: Mapped[datetime]
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM, the billing month
    day: Mapped[date]
    # Generation calls: their units are these tokens (prompt, and generated), priced apart
    # by plans with token prices. Zero for other calls.
    input_tokens: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), default=0, server_default="0"
    )
    output_tokens: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), default=0, server_default="0"
    )


class UsageReservation(Base):
    """Tokens a generation call holds while it runs: committed before its first byte is sent,
    raised before more tokens are sent, and turned into its usage record when it ends. One
    whose process died (its lease ran out) is billed for everything it held, since the client
    may have received all of it (see :mod:`forgeline.billing.ledger`)."""

    __tablename__ = "usage_reservations"
    __table_args__ = (Index("ix_usage_reservations_lease_until", "lease_until"),)

    request_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    model: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    period: Mapped[str] = mapped_column(String(7))
    input_tokens: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    output_tokens: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    """Generated tokens held: the most the client may have received."""
    other_units: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), server_default="0"
    )
    """Units billed besides the tokens (a knowledge base's search)."""
    counted: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    """Units added to a hard-capped tenant's counter (0 without a cap)."""
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime]


class UsageCounter(Base):
    """Units used per tenant and month, kept in step with the ledger in the same transaction;
    a conditional update of this row is what stops a hard-capped plan from overshooting."""

    __tablename__ = "usage_counters"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)


class IdempotentResponse(Base):
    """The first response to a request sent with an ``Idempotency-Key``, replayed to retries.
    Keys are scoped to the tenant (not the API key), so a retry sent with a rotated key during
    the overlap is replayed rather than billed again. ``status`` 0 marks a generation call
    still running (its response is not known yet)."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (Index("ix_idempotent_responses_created_at", "created_at"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))  # the key that sent the first request
    request_hash: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class AuditEntry(Base):
    """One security event, hash-chained to the one before (see :mod:`forgeline.audit`). Rows
    are only ever inserted: triggers refuse UPDATE and DELETE (migration 0005). ``id`` is the
    previous row's id + 1, assigned under the append lock, so a gap means a deleted row."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON; no secrets, no personal data
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
