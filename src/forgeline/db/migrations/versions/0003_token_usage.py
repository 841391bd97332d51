"""token counts on usage records, and reservations of generation calls

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as table:
        table.add_column(sa.Column("input_tokens", _BIG, nullable=False, server_default="0"))
        table.add_column(sa.Column("output_tokens", _BIG, nullable=False, server_default="0"))
    op.create_table(
        "usage_reservations",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("input_tokens", _BIG, nullable=False),
        sa.Column("output_tokens", _BIG, nullable=False),
        sa.Column("counted", _BIG, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_usage_reservations_lease_until", "usage_reservations", ["lease_until"])


def downgrade() -> None:
    op.drop_index("ix_usage_reservations_lease_until", "usage_reservations")
    op.drop_table("usage_reservations")
    with op.batch_alter_table("usage_records") as table:
        table.drop_column("output_tokens")
        table.drop_column("input_tokens")
