"""Real servers with the guard configured: sections of smtpgate.toml set, clients bound to a source."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.smtp.server_harness import RunningServer, init_data_dir


def set_section(config: Path, section: str, values: dict[str, str]) -> None:
    """Set keys of [section] to TOML literals, replacing the template's lines."""
    lines = config.read_text().splitlines()
    out: list[str] = []
    current = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            out.append(line)
            if current == section:
                out.extend(f"{k} = {v}" for k, v in values.items())
            continue
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        if current == section and key in values:
            continue
        out.append(line)
    if f"[{section}]" not in (line.strip() for line in lines):
        out.append(f"[{section}]")
        out.extend(f"{k} = {v}" for k, v in values.items())
    config.write_text("\n".join(out) + "\n")


def guarded_config(data: Path, *, backend: str | None, redis_prefix: str = "", database_url: str = "",
                   guard: dict[str, str] | None = None, smtp: dict[str, str] | None = None,
                   alerts: dict[str, str] | None = None) -> Path:
    """A data dir whose guard bans loopback sources (the default allow-list spares them).

    backend=None keeps the backend `smtpgate init` chose: the default a new user gets."""
    config = init_data_dir(data, database_url=database_url, smtp={"auth_failure_delay": '"20ms"', **(smtp or {})})
    values = {"allow_networks": "[]", "sync_interval": '"200ms"', **(guard or {})}
    if backend is not None:
        values["backend"] = f'"{backend}"'
    if redis_prefix:
        values["redis_prefix"] = f'"{redis_prefix}"'
    set_section(config, "guard", values)
    if alerts:
        set_section(config, "alerts", alerts)
    return config


def client(server: RunningServer, source: str = "127.0.0.1", *, port: int | None = None) -> smtplib.SMTP:
    """smtplib over STARTTLS from a chosen loopback address (all of 127/8 routes to lo)."""
    smtp = smtplib.SMTP("127.0.0.1", port or server.submission_port, local_hostname="client.test", timeout=15,
                        source_address=(source, 0))
    smtp.starttls(context=server.client_context())
    return smtp


def one_auth_try(connect: Callable[[], smtplib.SMTP], login: str, secret: str, helo: str = "client.test") -> str:
    """One AUTH PLAIN on a fresh connection (login() would try every mechanism): the answer in short."""
    try:
        smtp = connect()
    except smtplib.SMTPConnectError as exc:
        return f"{exc.smtp_code} at connect"
    try:
        smtp.ehlo(helo)
        smtp.user, smtp.password = login, secret
        smtp.auth("PLAIN", smtp.auth_plain)
        return "235"
    except smtplib.SMTPAuthenticationError as exc:
        return str(exc.smtp_code)
    except smtplib.SMTPServerDisconnected:
        return "disconnected"
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def message(sender: str, subject: str = "hi", to: str = "bob@example.org") -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello\r\n".encode()


def tls_context(server: RunningServer) -> ssl.SSLContext:
    return server.client_context()


T = TypeVar("T")


def eventually(probe: Callable[[], T], until: Callable[[T], bool], timeout: float = 15.0) -> T:
    """Poll what another process writes in the background (audit rows, synced bans) until it holds."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not until(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = probe()
    return value
