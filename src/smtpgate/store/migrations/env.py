"""Alembic environment: runs on the engine the Store hands in (online mode only)."""

from alembic import context

from smtpgate.store.schema import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
