"""The database of API keys, tenants and the usage ledger: one engine, sessions, migrations."""

from forgeline.db.session import Database, database_url

__all__ = ["Database", "database_url"]
