"""Alembic environment: run by :meth:`forgeline.db.Database.migrate` on the connection it opens."""

from alembic import context
from sqlalchemy import text

from forgeline.db.tables import Base

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    # Several servers may start at once against one database; migrate one at a time.
    connection.execute(text("SELECT pg_advisory_xact_lock(7305712)"))
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
