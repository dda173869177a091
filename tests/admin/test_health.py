"""/healthz for a load balancer: 200 only when the database (and Redis, for the redis guard)
answers; a 503 naming what failed otherwise, and while the node drains.

The app runs in this process against the real PostgreSQL and Redis; "down" is a port where
nothing listens. A draining server is tested on the real process in tests/test_drain.py.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import httpx
import pytest

from smtpgate.admin.app import create_app
from smtpgate.config import load_config
from smtpgate.runtime import Runtime
from tests.conftest import need
from tests.guard.conftest import REDIS_URL, delete_prefix, redis_problem, unique_prefix
from tests.guard.servers import set_section
from tests.smtp.server_harness import init_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("health") / "data"
    init_data_dir(data)
    return data


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def health(data: Path, database_url: str, *, redis_url: str = "", redis_prefix: str = "",
           draining: bool = False) -> httpx.Response:
    """The app as a server runs it (its store opened at start), asked over ASGI."""
    config_path = data / f"health-{unique_prefix()}.toml"
    shutil.copy(data / "smtpgate.toml", config_path)
    set_section(config_path, "database", {"url": f'"{database_url}"'})
    if redis_url:
        set_section(config_path, "guard", {"backend": '"redis"', "redis_url": f'"{redis_url}"',
                                           "redis_prefix": f'"{redis_prefix or unique_prefix()}"'})
    runtime = Runtime(load_config(config_path))
    try:
        runtime.store
    except Exception:  # noqa: BLE001 - a database that is down: /healthz must say so
        pass

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(runtime, draining=lambda: draining))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.get("/healthz")

    try:
        return asyncio.run(ask())
    finally:
        runtime.close()


def test_ready_only_while_the_database_and_redis_answer(data_dir: Path, pg_schema_url: str) -> None:
    problem = redis_problem()
    need(problem is None, problem or "")
    prefix = unique_prefix()
    try:
        response = health(data_dir, pg_schema_url, redis_url=REDIS_URL, redis_prefix=prefix)
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"database": "ok", "redis": "ok"}
        import redis

        assert list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{prefix}:*")) == []  # a probe writes nothing
        port = closed_port()
        response = health(data_dir, pg_schema_url, redis_url=f"redis://127.0.0.1:{port}/0")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": "ok", "redis": "unavailable"}
        assert response.json()["failed"] == ["redis"] and str(port) not in response.text
    finally:
        delete_prefix(prefix)


def test_no_database_is_a_503_that_names_it(data_dir: Path) -> None:
    port = closed_port()
    response = health(data_dir, f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["database"] and body["status"] == "unavailable"
    assert str(port) not in response.text  # the reason goes to the log, not to a public endpoint


def test_a_draining_node_is_not_ready(data_dir: Path) -> None:
    response = health(data_dir, f"sqlite:///{data_dir / 'health.db'}", draining=True)
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "smtp": "draining"}
