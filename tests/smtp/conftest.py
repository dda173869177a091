from __future__ import annotations

from collections.abc import Iterator
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
