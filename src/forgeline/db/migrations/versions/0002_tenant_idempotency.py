"""idempotency keys scoped to the tenant, not the API key

A retry sent with a rotated key during the overlap must find the first response; keyed on the
API key it was run and billed again. Stored responses are copied to the new table under their
key's tenant (the earliest wins where two keys of one tenant used the same Idempotency-Key).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "idempotency_key, key_id, request_hash, request_id, status, body, created_at"


def _rename_table(old: str, new: str) -> None:
    op.rename_table(old, new)
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL keeps the primary key's index name, which the new table needs.
        op.execute(f"ALTER INDEX {old}_pkey RENAME TO {new}_pkey")


def upgrade() -> None:
    _rename_table("idempotent_responses", "idempotent_responses_0001")
    op.create_table(
        "idempotent_responses",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "idempotency_key"),
    )
    op.create_index("ix_idempotent_responses_created_at", "idempotent_responses", ["created_at"])
    # "WHERE true" lets SQLite parse ON CONFLICT after INSERT ... SELECT; PostgreSQL agrees.
    op.execute(
        f"INSERT INTO idempotent_responses (tenant_id, {_COLUMNS}) "
        f"SELECT k.tenant_id, r.idempotency_key, r.key_id, r.request_hash, r.request_id, "
        f"r.status, r.body, r.created_at "
        f"FROM idempotent_responses_0001 r JOIN api_keys k ON k.id = r.key_id "
        f"WHERE k.tenant_id IS NOT NULL ORDER BY r.created_at "
        f"ON CONFLICT DO NOTHING"
    )
    op.drop_table("idempotent_responses_0001")


def downgrade() -> None:
    _rename_table("idempotent_responses", "idempotent_responses_0002")
    op.drop_index("ix_idempotent_responses_created_at", "idempotent_responses_0002")
    op.create_table(
        "idempotent_responses",
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "idempotency_key"),
    )
    op.execute(
        f"INSERT INTO idempotent_responses ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM idempotent_responses_0002"
    )
    op.drop_table("idempotent_responses_0002")
