"""Engine, sessions and schema upgrades for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreUnavailable(Exception):
    """The database cannot be reached; callers answer 454 / exit 1, never crash."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


class Store:
    """The database: a session factory plus schema management."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(_safe_reason(exc)) from None

    def current_revisions(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())

    def head_revisions(self) -> set[str]:
        """Each concern's migrations form their own branch from the base; all heads apply."""
        return set(ScriptDirectory.from_config(_alembic_config(self.engine)).get_heads())

    def upgrade(self) -> None:
        """Bring the schema to the newest revisions (a no-op when it is there)."""
        try:
            if self.current_revisions() == self.head_revisions():
                return
            command.upgrade(_alembic_config(self.engine), "heads")
        except OperationalError as exc:
            raise StoreUnavailable(_safe_reason(exc)) from None

    def dispose(self) -> None:
        self.engine.dispose()


def _safe_reason(exc: OperationalError) -> str:
    """The driver's reason without the SQL statement or its parameters."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else "database error"


def open_store(url: str, *, upgrade: bool = True) -> Store:
    store = Store(url)
    if upgrade:
        store.upgrade()
    return store
