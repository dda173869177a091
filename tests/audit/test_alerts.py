"""Alert sinks: a signed webhook to a real HTTP server on loopback (with retries), mail to the owner."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from smtpgate.audit import AlertDispatcher, AuditStore, EmailSink, WebhookSink
from smtpgate.audit.alerts import sign, verify
from smtpgate.audit.store import Alert
from smtpgate.delivery.capture import CaptureStore
from tests.audit.receiver import Receiver

SECRET = b"0123456789abcdef0123456789abcdef"


def an_alert(key: str = "k1") -> Alert:
    return Alert(
        "revoked-credential", "critical", "the revoked credential ap_1 of alice@example.com was tried from 203.0.113.9",
        key, datetime.now(UTC), login="alice@example.com", credential_id="ap_1", remote_ip="203.0.113.9",
        details={"reason": "revoked"}, id=7,
    )


def test_signature_verifies_and_rejects_tampering_and_staleness() -> None:
    body = b'{"rule":"volume"}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify(b"another secret", body, header)
    assert not verify(SECRET, body, sign(SECRET, body, now - 3600))
    assert not verify(SECRET, body, "v1=deadbeef")


def test_webhook_is_retried_after_a_failure_and_arrives_signed() -> None:
    sleeps: list[float] = []
    with Receiver(SECRET, fail_first=2) as receiver:
        sink = WebhookSink(receiver.url, SECRET, attempts=4, backoff=0.5, server="mx.test", sleep=sleeps.append)
        assert sink.send(an_alert()) is True
    assert len(receiver.attempts) == 3 and all(a["valid"] for a in receiver.attempts)
    assert sleeps == [0.5, 1.0]  # exponential backoff between the attempts
    (payload,) = receiver.delivered
    assert payload["rule"] == "revoked-credential" and payload["credential_id"] == "ap_1"
    assert payload["server"] == "mx.test" and payload["id"] == 7
    assert receiver.attempts[-1]["headers"]["X-Smtpgate-Alert-Id"] == "7"


def test_webhook_gives_up_on_a_client_error_and_after_the_attempts() -> None:
    with Receiver(SECRET, fail_first=10, failure_status=404) as receiver:
        assert WebhookSink(receiver.url, SECRET, attempts=5, sleep=lambda s: None).send(an_alert()) is False
    assert len(receiver.attempts) == 1  # a 404 is final
    with Receiver(SECRET, fail_first=10, failure_status=503) as receiver:
        assert WebhookSink(receiver.url, SECRET, attempts=3, sleep=lambda s: None).send(an_alert()) is False
    assert len(receiver.attempts) == 3


def test_webhook_to_a_closed_port_fails_cleanly() -> None:
    from tests.smtp.server_harness import free_port

    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/x", SECRET, attempts=2, sleep=lambda s: None, timeout=2)
    assert sink.send(an_alert()) is False


def test_dispatcher_stores_once_and_records_each_delivery(store, tmp_path: Path) -> None:
    audit = AuditStore(store)
    capture = CaptureStore(tmp_path / "capture")
    with Receiver(SECRET, fail_first=1) as receiver:
        dispatcher = AlertDispatcher(
            audit,
            webhook=WebhookSink(receiver.url, SECRET, attempts=3, backoff=0.01),
            email=EmailSink(capture, lambda login: "owner@example.org", sender="postmaster@mx.test", hostname="mx.test"),
        )
        stored = dispatcher.raise_alert(an_alert("dedupe-me"))
        assert stored is not None
        assert dispatcher.raise_alert(an_alert("dedupe-me")) is None  # the same alert again: nothing sent
        dispatcher.close(wait=True)
    (row,) = audit.alerts()
    assert (row.webhook, row.email) == ("sent", "sent")
    assert len(receiver.delivered) == 1
    (mail,) = capture.list()
    assert mail.rcpt_to == ("owner@example.org",) and mail.mail_from == "postmaster@mx.test"
    raw = capture.open_raw(mail.id).read()
    assert b"Subject: [smtpgate] the revoked credential ap_1" in raw and b"Auto-Submitted: auto-generated" in raw


def test_a_failing_sink_is_recorded_as_failed(store) -> None:
    audit = AuditStore(store)
    with Receiver(SECRET, fail_first=10, failure_status=500) as receiver:
        dispatcher = AlertDispatcher(audit, webhook=WebhookSink(receiver.url, SECRET, attempts=2, backoff=0.01))
        dispatcher.raise_alert(an_alert())
        dispatcher.close(wait=True)
    assert audit.alerts()[0].webhook == "failed"
