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


class TlsProxy:
    """HTTPS in front of a plain HTTP port on loopback, as the proxy before the admin listener."""

    def __init__(self, context, target_port: int) -> None:  # type: ignore[no-untyped-def]
        import socket
        import threading

        self.context, self.target_port = context, target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                raw.settimeout(10)
                client = self.context.wrap_socket(raw, server_side=True)
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                raw.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def _pipe(a, b) -> None:  # type: ignore[no-untyped-def]
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


def publish(dns: FakeDns, records: list[dict[str, str]]) -> None:
    """Put what `smtpgate dns records --json` lists into the fake zone, as an operator would."""
    from tests.delivery.fakedns import txt

    for r in records:
        dns.set(r["name"], r["type"], txt(r["value"]) if r["type"] == "TXT" else r["value"])
