from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpgate.mailauth.resolver import Resolver
from tests.delivery.fakedns import FakeDns


@pytest.fixture
def fake_dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    yield server
    server.stop()


@pytest.fixture
def resolver(fake_dns: FakeDns) -> Resolver:
    return Resolver([("127.0.0.1", fake_dns.port)], timeout=3)
