"""Guard fixtures: both backends (in-memory, and Redis under a prefix of this run), a clock."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from smtpgate.guard.host import GuardHost, HostLoop
from smtpgate.guard.memory import MemoryBackend
from smtpgate.guard.redis_backend import RedisBackend
from smtpgate.guard.shared import SharedBackend
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


class HostThread:
    """A guard host served from a thread, as the parent process serves it to its workers."""

    def __init__(self) -> None:
        self.host = GuardHost()
        self.loop = HostLoop(self.host, time.time)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def channel(self) -> SharedBackend:
        sock = self.loop.open_channel()
        assert sock is not None
        return SharedBackend(sock)

    def __enter__(self) -> HostThread:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.loop.poll(0.02)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def host() -> Iterator[HostThread]:
    with HostThread() as served:
        yield served


AnyBackend = MemoryBackend | RedisBackend | SharedBackend


@pytest.fixture(params=["memory", "shared", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[AnyBackend]:
    """Each guard test runs on every backend."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "shared":
        yield request.getfixturevalue("host").channel()
        return
    prefix = request.getfixturevalue("redis_prefix")
    yield RedisBackend(REDIS_URL, prefix=prefix)


def run(backend: AnyBackend, coro: Coroutine[Any, Any, T]) -> T:
    """Run a test's coroutine on a fresh loop; the Redis client lives and dies with that loop."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await backend.close()

    return asyncio.run(main())
