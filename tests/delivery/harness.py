"""Helpers for delivery tests: test PKI, configs with a [delivery] section, waiting, sending."""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from smtpgate import pki
from smtpgate.config import Config
from smtpgate.delivery.capture import Envelope

T = TypeVar("T")


@dataclass(frozen=True)
class LoopbackPki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_pki(directory: Path, hostnames: list[str]) -> LoopbackPki:
    """A CA and a server certificate for `hostnames` (plus localhost and 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = pki.make_ca("smtpgate delivery test CA")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(pki.cert_to_pem(ca_cert))
    cert, key = directory / "server.pem", directory / "server.key"
    pki.make_self_signed_cert(cert, key, [*hostnames, "localhost", "127.0.0.1"], ca=(ca_cert, ca_key))
    return LoopbackPki(ca_file, cert, key)


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until `condition()` is truthy; its value. Bounded: fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def config_for(base_dir: Path, delivery: dict[str, Any], hostname: str = "gw.example.test") -> Config:
    config = Config.model_validate({"hostname": hostname, "delivery": delivery})
    config.base_dir = base_dir
    return config


def envelope(mail_from: str = "alice@example.com", *rcpts: str, credential_id: str | None = "cred_1", account: str | None = "alice@example.com") -> Envelope:
    return Envelope(
        mail_from=mail_from,
        rcpt_to=tuple(rcpts or ("bob@example.org",)),
        credential_id=credential_id,
        account=account,
        client_ip="192.0.2.1",
        helo="client.example",
        received_at=datetime.now(timezone.utc),
    )


def message(subject: str = "hello", sender: str = "alice@example.com", to: str = "bob@example.org", body: str = "Hello.") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n\r\n{body}\r\n"
    ).encode()


def set_delivery(config_path: Path, delivery_toml: str) -> None:
    """Replace the [delivery] section (and its subtables) of a config file."""
    lines = config_path.read_text().splitlines()
    kept: list[str] = []
    skipping = False
    for line in lines:
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            skipping = header.group(1).strip() == "delivery" or header.group(1).strip().startswith("delivery.")
        if not skipping:
            kept.append(line)
    config_path.write_text("\n".join(kept) + "\n\n" + delivery_toml.strip() + "\n")


def relay_to_sink(config_path: Path, port: int, ca_file: Path | str, *, retry_initial: str, retry_max: str) -> None:
    """Relay through a loopback sink over STARTTLS, retries without jitter, the queue polled every 100 ms."""
    set_delivery(config_path, f"""
[delivery]
mode = "relay"
retry_initial = "{retry_initial}"
retry_max = "{retry_max}"
retry_jitter = 0.0
poll_interval = "100ms"

[delivery.relay]
host = "127.0.0.1"
port = {port}
ca_file = "{ca_file}"
""")


def submit(port: int, context: ssl.SSLContext, login: str, secret: str, sender: str, rcpts: list[str], data: bytes) -> str:
    """Send one message over STARTTLS with AUTH; the queue id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=context)
        client.login(login, secret)
        client.mail(sender)
        for rcpt in rcpts:
            code, reply = client.rcpt(rcpt)
            assert code == 250, reply
        code, reply = client.data(data)
        assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]
