"""Shared fixtures: databases (SQLite and PostgreSQL), a fake clock, a credential service.

In strict mode (SMTPGATE_STRICT=1, as CI runs) a missing service or client program fails
the run instead of skipping, so a green CI always means everything really ran.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from smtpgate.credentials import CredentialService
from smtpgate.credentials.passwords import HashParams, PasswordHashing, PasswordPolicy
from smtpgate.store import Store, open_store
from tests.smtp.server_harness import RunningServer, init_data_dir

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
def pg_schema_name() -> Iterator[str]:
    """A PostgreSQL schema of this test run's own, dropped afterwards."""
    problem = _postgres_available()
    need(problem is None, problem or "")
    import psycopg

    schema = f"sgtest_{secrets.token_hex(4)}"
    yield schema
    with psycopg.connect(_plain(PG_URL), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


@pytest.fixture
def pg_schema_url(pg_schema_name: str) -> str:
    """The run's schema, emptied for this test: every test starts from a blank database."""
    import psycopg

    with psycopg.connect(_plain(PG_URL), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{pg_schema_name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{pg_schema_name}"')
    return f"{PG_URL}?options=-csearch_path%3D{pg_schema_name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_schema_url")


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
