"""Shared fixtures: databases (SQLite and PostgreSQL), a fake clock, a credential service.

In strict mode (SMTPGATE_STRICT=1, as CI runs) a missing service or client program fails
the run instead of skipping, so a green CI always means everything really ran.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from smtpgate.credentials import CredentialService
from smtpgate.credentials.passwords import HashParams, PasswordHashing, PasswordPolicy
from smtpgate.store import Store, open_store

STRICT = os.environ.get("SMTPGATE_STRICT") == "1"
PG_URL = os.environ.get("SMTPGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FAST_HASH = HashParams(memory_kib=8192, time_cost=1, parallelism=1)


def need(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing, except in strict mode where that is a failure."""
    if not condition:
        if STRICT:
            pytest.fail(f"strict mode: {why}")
        pytest.skip(why)


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}"


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test run, dropped afterwards."""
    problem = _postgres_available()
    need(problem is None, problem or "")
    import psycopg

    schema = f"sgtest_{secrets.token_hex(4)}"
    plain = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _reset_postgres(url: str) -> None:
    store = Store(url)
    with store.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("DROP TABLE IF EXISTS credentials, accounts, alembic_version CASCADE"))
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url = request.getfixturevalue("pg_schema_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(store: Store, clock: FakeClock) -> CredentialService:
    return CredentialService(
        store,
        app_key=b"k" * 32,
        hashing=PasswordHashing(FAST_HASH),
        policy=PasswordPolicy(),
        clock=clock,
    )


# ------------------------------------------------------------ running servers

from pathlib import Path

import pytest

from tests.smtp.server_harness import RunningServer, init_data_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One running server (SQLite, capture) shared by a test module."""
    data: Path = tmp_path_factory.mktemp("server") / "data"
    running = RunningServer(init_data_dir(data))
    running.start()
    yield running
    running.close()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of its own, for tests that stop, signal or reconfigure it."""
    running = RunningServer(init_data_dir(tmp_path / "data"))
    yield running
    running.close()
