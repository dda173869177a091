from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smtpgate.config import Config
from tests.cli.conftest import cli  # noqa: F401 - a fixture, re-exported for this folder
from tests.delivery.fakedns import FakeDns


@pytest.fixture
def fake_dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    yield server
    server.stop()


def make_config(base_dir: Path, *, delivery: dict[str, Any] | None = None, deliverability: dict[str, Any] | None = None,
                reputation: dict[str, Any] | None = None, hostname: str = "gw.example.test") -> Config:
    config = Config.model_validate({
        "hostname": hostname, "delivery": delivery or {}, "deliverability": deliverability or {},
        "reputation": reputation or {},
    })
    config.base_dir = base_dir
    return config
