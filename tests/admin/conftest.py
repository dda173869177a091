"""A real server in a subprocess, and operator tokens of each role, for the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from smtpgate.credentials.api_tokens import IssuedApiToken
from tests.smtp.server_harness import RunningServer, init_data_dir, wait_for_port


@dataclass
class Api:
    """The running server's API, with one token per role (the secrets live only here)."""

    server: RunningServer
    base: str
    tokens: dict[str, IssuedApiToken]

    def client(self, role: str | None = "admin", **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role].secret}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def secrets(self) -> list[str]:
        return [t.secret for t in self.tokens.values()]


def start_api(data: Path, *, guard: dict[str, str] | None = None, extra_config: str = "") -> tuple[RunningServer, Api]:
    """`extra_config`: TOML sections appended to the config (sections `init` does not write)."""
    config = init_data_dir(data)
    if guard:
        text = config.read_text()
        for key, value in guard.items():
            lines = [line for line in text.splitlines() if not line.startswith(f"{key} ")]
            text = "\n".join(lines).replace("[guard]\n", f"[guard]\n{key} = {value}\n", 1) + "\n"
        config.write_text(text)
    if extra_config:
        config.write_text(config.read_text() + "\n" + extra_config)
    server = RunningServer(config)
    base, tokens = start_with_role_tokens(server)
    return server, Api(server, base, tokens)


def start_with_role_tokens(server: RunningServer) -> tuple[str, dict[str, IssuedApiToken]]:
    """One API token per role made before the start (in the store), then the server started: its admin URL and the tokens."""
    tokens = {role: server.credentials.api_tokens.create(f"test-{role}", role, actor="test")
              for role in ("viewer", "operator", "admin")}
    server.start()
    host, _, port = server.config.admin.listen.rpartition(":")
    wait_for_port(int(port), server.proc, server.log_path)  # type: ignore[arg-type]
    return f"http://{host}:{port}", tokens


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server with the API, shared by a test module."""
    server, api = start_api(tmp_path_factory.mktemp("api") / "data")
    yield api
    server.close()
