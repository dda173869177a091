"""Run the real `smtpgate` console script in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SMTPGATE = str(Path(sys.executable).with_name("smtpgate"))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    def __init__(self, config: Path | None) -> None:
        self.config = config

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        environ = {k: v for k, v in os.environ.items() if k != "SMTPGATE_CONFIG"}
        if self.config:
            environ["SMTPGATE_CONFIG"] = str(self.config)
        environ.update(env or {})
        proc = subprocess.run(
            [SMTPGATE, *args], input=input or "", capture_output=True, text=True, env=environ, timeout=60
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.code == 0, f"{args}: exit {result.code}\n{result.stdout}\n{result.stderr}"
        return result


def fast_hashing(config: Path) -> None:
    """Cheaper argon2 for the suite (the defaults are tested in tests/credentials)."""
    text = config.read_text().replace("argon2_memory_kib = 19456", "argon2_memory_kib = 8192")
    config.write_text(text.replace("argon2_time_cost = 2", "argon2_time_cost = 1"))


def _initialised(data: Path, database_url: str = "") -> Cli:
    extra = ["--database-url", database_url] if database_url else []
    Cli(None).ok("init", "--data-dir", str(data), *extra)
    fast_hashing(data / "smtpgate.toml")
    return Cli(data / "smtpgate.toml")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """An initialised data dir on the embedded default (SQLite)."""
    return _initialised(tmp_path / "data")


@pytest.fixture
def cli_any_db(tmp_path: Path, db_url: str) -> Cli:
    """The same, once on SQLite and once on PostgreSQL."""
    return _initialised(tmp_path / "data", "" if db_url.startswith("sqlite") else db_url)
