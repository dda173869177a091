"""One validated configuration object, loaded once from a TOML file.

Relative paths in the file are relative to the file's own folder, so a data dir can be
moved as a whole. Secrets are never in the TOML: it names files (mode 0600) that hold
them. A bad file raises ConfigError naming the file, the key, what was found and what is
expected; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from smtpgate.durations import parse_duration

CONFIG_ENV = "SMTPGATE_CONFIG"
CONFIG_NAME = "smtpgate.toml"


class ConfigError(Exception):
    """The config file is missing or wrong; the message says where and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _listen(value: str) -> str:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, such as 127.0.0.1:587 or [::1]:587")
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(str(value))


class DatabaseConfig(_Section):
    url: str = ""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("expected a sqlite:/// or postgresql+psycopg:// URL")
        return value


class SecretsConfig(_Section):
    app_password_key_file: str = "secrets/app-password.key"


class TlsConfig(_Section):
    cert: str = "tls/server.pem"
    key: str = "tls/server.key"
    ca: str = "tls/ca.pem"


class SmtpConfig(_Section):
    submission: str = "127.0.0.1:2587"
    submissions: str = "127.0.0.1:2465"
    max_message_size: int = Field(default=25 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, gt=0)
    max_connections: int = Field(default=10000, gt=0)
    max_connections_per_ip: int = Field(default=200, gt=0)
    command_timeout: timedelta = timedelta(minutes=5)
    data_timeout: timedelta = timedelta(minutes=10)
    auth_failure_delay: timedelta = timedelta(milliseconds=250)
    tls_handshake_timeout: timedelta = timedelta(seconds=30)
    shutdown_grace: timedelta = timedelta(seconds=30)

    _check_listen = field_validator("submission", "submissions")(classmethod(lambda cls, v: _listen(v)))
    _check_durations = field_validator(
        "command_timeout", "data_timeout", "auth_failure_delay", "tls_handshake_timeout",
        "shutdown_grace", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))


class AdminConfig(_Section):
    listen: str = "127.0.0.1:8025"

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: _listen(v)))


class PasswordConfig(_Section):
    argon2_memory_kib: int = Field(default=19456, ge=8192)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    min_length: int = Field(default=12, ge=8)
    min_strength: int = Field(default=3, ge=0, le=4)
    hibp_file: str = ""


class CredentialConfig(_Section):
    rotation_age: timedelta = timedelta(days=90)
    rotation_overlap: timedelta = timedelta(hours=24)
    dormant_after: timedelta = timedelta(days=90)
    expiring_within: timedelta = timedelta(days=14)

    _check_durations = field_validator(
        "rotation_age", "rotation_overlap", "dormant_after", "expiring_within", mode="before"
    )(classmethod(lambda cls, v: _duration(v)))


class DeliveryConfig(_Section):
    mode: Literal["capture"] = "capture"
    capture_dir: str = "capture"


class Config(_Section):
    """The whole configuration; `base_dir` is the folder of the file it came from."""

    hostname: str = "localhost"
    database: DatabaseConfig = DatabaseConfig()
    secrets: SecretsConfig = SecretsConfig()
    tls: TlsConfig = TlsConfig()
    smtp: SmtpConfig = SmtpConfig()
    admin: AdminConfig = AdminConfig()
    passwords: PasswordConfig = PasswordConfig()
    credentials: CredentialConfig = CredentialConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: Path | None = Field(default=None, exclude=True)

    def path(self, value: str) -> Path:
        """Resolve a path from the file against the config's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.path('smtpgate.db')}"

    @property
    def capture_dir(self) -> Path:
        return self.path(self.delivery.capture_dir)

    def read_secret_file(self, value: str, what: str) -> bytes:
        """Read a secret file, refusing one that others can read."""
        path = self.path(value)
        try:
            mode = path.stat().st_mode & 0o777
            data = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"{self.source}: cannot read the {what} file {path}: {exc.strerror}. "
                "Run `smtpgate init` to create it, or fix the path in the config."
            ) from None
        if mode & 0o077:
            raise ConfigError(
                f"{path}: the {what} file is readable by others (mode {mode:o}); "
                f"run `chmod 600 {path}`."
            )
        if not data:
            raise ConfigError(f"{path}: the {what} file is empty.")
        return data


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or CONFIG_NAME)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_error(path: Path, error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key `{key}` (a typo?); remove it or check the documented keys"
    message = error["msg"].removeprefix("Value error, ")
    found = _describe(error.get("input"))
    return f"{path}: key `{key}`: found {found}; {message[0].lower()}{message[1:]}"


def load_config(path: Path | str | None = None) -> Config:
    """Load and validate the config file, or raise ConfigError."""
    file = Path(path) if path else default_config_path()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such config file. Create one with "
            "`smtpgate init --data-dir DIR`, then pass --config DIR/smtpgate.toml "
            f"or set {CONFIG_ENV}."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_format_error(file, err) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    config.base_dir = file.resolve().parent
    config.source = file.resolve()
    return config
