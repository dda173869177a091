"""Engine, sessions and schema upgrades for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from smtpgate.errors import Unavailable

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreUnavailable(Unavailable):
    """The database cannot be reached; callers answer 454 / exit 1 / 503, never crash."""

    code = "store-unavailable"


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


def head_revisions(versions: Path = MIGRATIONS / "versions") -> set[str]:
    """The heads of the migration graph, read from the revision files without Alembic.

    Every command checks the schema; importing Alembic for that costs more than the
    command itself. A head is a revision no other revision names as its down_revision.
    """
    return set(_heads(versions, tuple(sorted((p.name, p.stat().st_mtime_ns) for p in versions.glob("*.py")))))


@lru_cache(maxsize=4)
def _heads(versions: Path, _files: tuple[tuple[str, int], ...]) -> frozenset[str]:
    revisions: set[str] = set()
    parents: set[str] = set()
    for name, _ in _files:
        values = _assignments(versions / name, {"revision", "down_revision"})
        if isinstance(values.get("revision"), str):
            revisions.add(values["revision"])
            down = values.get("down_revision")
            parents.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions - parents)


def _assignments(path: Path, names: set[str]) -> dict[str, Any]:
    """Top-level `name = literal` (or `name: type = literal`) assignments of a module."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            found[target.id] = ast.literal_eval(value)
    return found


def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

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
        """The revisions the database is at (Alembic's own table, read without Alembic)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return set()
            return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}

    def head_revisions(self) -> set[str]:
        """Each concern's migrations form their own branch from the base; all heads apply."""
        return head_revisions()

    def upgrade(self) -> None:
        """Bring the schema to the newest revisions (a no-op, without Alembic, when it is there)."""
        try:
            if self.current_revisions() == self.head_revisions():
                return
            from alembic import command

            command.upgrade(_alembic_config(self.engine), "heads")
        except OperationalError as exc:
            raise StoreUnavailable(_safe_reason(exc)) from None

    def ping(self) -> None:
        """One round trip, for a health check; StoreUnavailable when the database does not answer."""
        with self.session() as session:
            session.execute(text("SELECT 1"))

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
