"""Guard fixtures: both backends (in-memory, and Redis under a prefix of this run), a clock."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from smtpgate.guard.memory import MemoryBackend
from smtpgate.guard.redis_backend import RedisBackend
from tests.cli.conftest import Cli, _initialised
from tests.conftest import need

T = TypeVar("T")
REDIS_URL = os.environ.get("SMTPGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_problem() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"Redis at {REDIS_URL} is not reachable: {exc}"


def unique_prefix() -> str:
    return f"sgtest-{secrets.token_hex(5)}"


def delete_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test in the Redis at 127.0.0.1:6379, deleted afterwards."""
    problem = redis_problem()
    need(problem is None, problem or "")
    prefix = unique_prefix()
    yield prefix
    delete_prefix(prefix)


class Clock:
    """Epoch seconds that move only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """An initialised data dir (SQLite), driven through the real `smtpgate` entry point."""
    return _initialised(tmp_path / "data")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[MemoryBackend | RedisBackend]:
    """Each guard test runs on both backends."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    prefix = request.getfixturevalue("redis_prefix")
    yield RedisBackend(REDIS_URL, prefix=prefix)


def run(backend: MemoryBackend | RedisBackend, coro: Coroutine[Any, Any, T]) -> T:
    """Run a test's coroutine on a fresh loop; the Redis client lives and dies with that loop."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await backend.close()

    return asyncio.run(main())
