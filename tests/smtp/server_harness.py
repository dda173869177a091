"""A real smtpgate server in a subprocess, on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from smtpgate.config import load_config
from smtpgate.runtime import Runtime

PASSWORD = "tulip-anvil-orbit-quartz-59"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}:\n{log.read_text()}")


def init_data_dir(data: Path, *, database_url: str = "", smtp: dict[str, str] | None = None) -> Path:
    """`smtpgate init` through the real entry point, with cheap argon2 and short delays.

    `smtp` overrides keys of the [smtp] section, values as TOML literals ('"2s"', '5').
    """
    ports = [str(free_port()) for _ in range(3)]
    args = [sys.executable, "-m", "smtpgate", "init", "--data-dir", str(data),
            "--submission-port", ports[0], "--submissions-port", ports[1], "--admin-port", ports[2]]
    if database_url:
        args += ["--database-url", database_url]
    subprocess.run(args, check=True, capture_output=True)
    config = data / "smtpgate.toml"
    text = config.read_text().replace("argon2_memory_kib = 19456", "argon2_memory_kib = 8192")
    text = text.replace("argon2_time_cost = 2", "argon2_time_cost = 1")
    overrides = {"auth_failure_delay": '"50ms"', **(smtp or {})}
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in overrides and "=" in line and not line.startswith("#"):
            continue
        lines.append(line)
        if line.strip() == "[smtp]":
            lines.extend(f"{k} = {v}" for k, v in overrides.items())
    config.write_text("\n".join(lines) + "\n")
    return config


@dataclass
class RunningServer:
    config_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    runtime: Runtime = field(init=False)
    _app_passwords: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.config = load_config(self.config_path)
        self.runtime = Runtime(self.config)
        self.submission_port = int(self.config.smtp.submission.rpartition(":")[2])
        self.submissions_port = int(self.config.smtp.submissions.rpartition(":")[2])
        self.ca = self.config.path(self.config.tls.ca)

    @property
    def credentials(self):
        return self.runtime.credentials

    def start(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = self.config_path.parent / "server.log"
        log = self.log_path.open("wb")
        environ = {**os.environ, "SMTPGATE_CONFIG": str(self.config_path), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smtpgate", "serve", "--workers", "1", *args],
            stdout=log, stderr=subprocess.STDOUT, env=environ,
        )
        wait_for_port(self.submission_port, self.proc, self.log_path)
        wait_for_port(self.submissions_port, self.proc, self.log_path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def close(self) -> None:
        self.stop()
        self.runtime.close()

    # ---------------------------------------------------------------- set-up

    def account_with_app_password(self, login: str, **scopes) -> str:
        from smtpgate.credentials import ScopeRequest

        try:
            self.credentials.create_account(login, password=PASSWORD)
        except Exception:  # noqa: BLE001 - exists already in a shared server
            pass
        self._app_passwords += 1  # names are unique per account
        name = f"test-{self._app_passwords}"
        return self.credentials.create_app_password(login, name, scopes=ScopeRequest(**scopes)).secret
