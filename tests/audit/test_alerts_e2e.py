"""A real server raises alerts: to a signed webhook on loopback (retried), and to the owner by mail."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.receiver import Receiver
from tests.guard.servers import client, eventually, guarded_config, set_section
from tests.smtp.server_harness import RunningServer

SECRET = b"6f1c0d8e2b7a4e95a3c2d1b0f9e8d7c6"
LOGIN = "leaky@example.com"


def write_secret(config: Path, data: bytes = SECRET, mode: int = 0o600) -> Path:
    path = config.parent / "secrets" / "alert-webhook.key"
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET, fail_first=1) as r:
        yield r


@pytest.fixture
def alerting(tmp_path: Path, receiver: Receiver) -> Iterator[RunningServer]:
    config = guarded_config(tmp_path / "data", backend="memory", alerts={
        "webhook_url": f'"{receiver.url}"', "webhook_backoff": '"100ms"', "email_owner": "true",
    })
    write_secret(config)
    server = RunningServer(config)
    server.start()
    yield server
    server.close()


def test_a_revoked_secret_tried_raises_a_signed_webhook_and_mails_the_owner(alerting: RunningServer, receiver: Receiver) -> None:
    alerting.credentials.create_account(LOGIN, password="tulip-anvil-orbit-quartz-59", owner="it-owner@example.org")
    issued = alerting.credentials.create_app_password(LOGIN, "billing")
    alerting.credentials.revoke(issued.credential.id)
    with client(alerting) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp.login(LOGIN, issued.secret)
    assert info.value.smtp_code == 535  # the client learns nothing more
    assert receiver.arrived.wait(20)
    assert len(receiver.attempts) == 2 and all(a["valid"] for a in receiver.attempts)  # the first got a 500
    (alert,) = receiver.delivered
    assert alert["rule"] == "revoked-credential" and alert["credential_id"] == issued.credential.id
    assert alert["remote_ip"] == "127.0.0.1" and alert["severity"] == "critical"
    assert issued.secret.encode() not in b"".join(a["body"] for a in receiver.attempts)
    mails = eventually(lambda: [m for m in alerting.runtime.capture.list() if "it-owner@example.org" in m.rcpt_to],
                       lambda found: len(found) == 1)
    assert mails and mails[0].subject.startswith("[smtpgate] the revoked credential")
    listed = eventually(lambda: alerting.runtime.audit_store.alerts(), lambda a: a and a[0].webhook == "sent" and a[0].email == "sent")
    assert (listed[0].webhook, listed[0].email) == ("sent", "sent")


def test_a_webhook_without_its_secret_file_stops_the_start(tmp_path: Path) -> None:
    config = guarded_config(tmp_path / "data", backend="memory")
    set_section(config, "alerts", {"webhook_url": '"http://127.0.0.1:9/hook"'})
    env = {**os.environ, "SMTPGATE_CONFIG": str(config)}
    run = subprocess.run([sys.executable, "-m", "smtpgate", "serve", "--workers", "1"], check=False, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "alert webhook secret" in run.stderr and "alert-webhook.key" in run.stderr
    write_secret(config, mode=0o644)
    run = subprocess.run([sys.executable, "-m", "smtpgate", "serve", "--workers", "1"], check=False, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "chmod 600" in run.stderr
    assert SECRET.decode() not in run.stderr


def test_an_unreachable_redis_stops_the_start_with_the_fix(tmp_path: Path) -> None:
    from tests.smtp.server_harness import free_port

    config = guarded_config(tmp_path / "data", backend="redis",
                            guard={"redis_url": f'"redis://:pa55word@127.0.0.1:{free_port()}/0"'})
    env = {**os.environ, "SMTPGATE_CONFIG": str(config)}
    run = subprocess.run([sys.executable, "-m", "smtpgate", "serve", "--workers", "1"], check=False, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "guard backend is unreachable" in run.stderr and "redis_url" in run.stderr
    assert "pa55word" not in run.stderr
