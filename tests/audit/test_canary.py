"""Canary credentials: planted to be found, never to log in; their use is a critical alert and a ban."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason
from tests.audit.receiver import Receiver
from tests.audit.test_alerts_e2e import SECRET, write_secret
from tests.guard.servers import client, eventually, guarded_config
from tests.smtp.server_harness import RunningServer

LOGIN = "planted@example.com"


def test_a_canary_never_authenticates_and_is_not_due(service: CredentialService) -> None:
    service.create_account(LOGIN)
    canary = service.create_app_password(LOGIN, "wiki-page-smtp", notes="planted in the wiki", canary=True)
    assert canary.credential.canary
    result = service.authenticate(LOGIN, canary.secret, "192.0.2.7", True)
    assert isinstance(result, AuthFailure) and result.reason is FailureReason.CANARY
    assert result.credential_id == canary.credential.id
    assert canary.credential.id not in {c.id for c in service.due()}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as r:
        yield r


@pytest.fixture
def alerting(tmp_path: Path, receiver: Receiver) -> Iterator[RunningServer]:
    config = guarded_config(tmp_path / "data", backend="memory", alerts={
        "webhook_url": f'"{receiver.url}"', "webhook_backoff": '"100ms"',
    })
    write_secret(config)
    server = RunningServer(config)
    server.start()
    yield server
    server.close()


def test_a_used_canary_is_refused_alerted_and_its_source_banned(alerting: RunningServer, receiver: Receiver) -> None:
    alerting.credentials.create_account(LOGIN)
    canary = alerting.credentials.create_app_password(LOGIN, "backup-config", notes="in the 2025 backup", canary=True)
    real = alerting.credentials.create_app_password(LOGIN, "real-app")
    smtp = client(alerting, "127.0.0.9")
    try:
        smtp.ehlo()
        plain = base64.b64encode(f"\0{LOGIN}\0{canary.secret}".encode()).decode()
        code, text = smtp.docmd("AUTH", f"PLAIN {plain}")
    finally:
        smtp.close()  # the server has closed it: the source is banned
    assert (code, text[:5]) == (535, b"5.7.8")  # like a wrong password
    assert receiver.arrived.wait(20)
    (alert,) = receiver.delivered
    assert alert["rule"] == "canary" and alert["severity"] == "critical"
    assert alert["remote_ip"] == "127.0.0.9" and alert["credential_id"] == canary.credential.id
    assert canary.secret.encode() not in b"".join(a["body"] for a in receiver.attempts)
    with pytest.raises((smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException)):
        with client(alerting, "127.0.0.9") as smtp:  # the source is banned at once
            smtp.login(LOGIN, real.secret)
    with client(alerting, "127.0.0.1") as smtp:  # the owner elsewhere is not
        smtp.login(LOGIN, real.secret)
    events = eventually(lambda: alerting.runtime.audit_store.query(credential_id=canary.credential.id),
                        lambda found: any(e.event.reason == "canary" for e in found))
    assert any(e.event.reason == "canary" and e.event.remote_ip == "127.0.0.9" for e in events)
