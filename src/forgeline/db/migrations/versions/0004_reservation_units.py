"""units a generation call is billed besides its tokens, kept on its reservation

A knowledge base's generated answer is billed one unit for its search on top of its tokens; a
reservation whose server died is billed from its row alone, so the row must carry that unit.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("usage_reservations") as table:
        table.add_column(sa.Column("other_units", _BIG, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_reservations") as table:
        table.drop_column("other_units")
