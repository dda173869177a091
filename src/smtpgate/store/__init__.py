"""Persistence: SQLAlchemy models, the engine, and Alembic migrations.

SQLite (WAL) in the data dir is the default; PostgreSQL through `database.url`. Nothing
here knows about SMTP, the CLI or the web.
"""

from smtpgate.store.db import Store, open_store

__all__ = ["Store", "open_store"]
