"""DSNs: RFC 3464 multipart/report that mail readers and the stdlib parser understand."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone

from smtpgate.delivery.dsn import FailedRecipient, build_dsn, status_of

ORIGINAL = b"From: Alice <alice@example.com>\r\nSubject: quarterly report\r\n\r\nsecret body text\r\n"


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_dsn_structure_and_fields() -> None:
    data = build_dsn(
        hostname="gw.example.com", queue_id="20261128T120000Z-ABCDEFGHIJ", sender="alice@example.com",
        arrival=datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc),
        failed=[FailedRecipient("bob@example.org", "5.1.1", "550 5.1.1 no such user\r\nInjected: header", "mx.example.org[192.0.2.7]")],
        original=ORIGINAL,
    )
    assert data.isascii() and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = parse(data)
    assert msg["To"].addresses[0].addr_spec == "alice@example.com" and msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
    human, status, headers = msg.iter_parts()
    assert "bob@example.org" in human.get_content()
    report = status.as_string()
    for line in ("Reporting-MTA: dns; gw.example.com", "Final-Recipient: rfc822; bob@example.org", "Action: failed",
                 "Status: 5.1.1", "Remote-MTA: dns; mx.example.org[192.0.2.7]", "Diagnostic-Code: smtp; 550 5.1.1 no such user Injected: header"):
        assert line in report
    assert "\nInjected:" not in report  # a reply cannot inject a field
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: quarterly report" in headers.get_content()
    assert b"secret body text" not in data  # headers only, never the body


def test_expiry_dsn_says_so() -> None:
    data = build_dsn(hostname="gw", queue_id="q", sender="a@example.com", arrival=datetime.now(timezone.utc),
                     failed=[FailedRecipient("b@example.org", "4.4.7", "451 4.4.1 cannot connect")], original=ORIGINAL)
    assert b"Status: 4.4.7" in data and b"within the time the queue keeps a message" in data


def test_status_of_uses_the_enhanced_code_or_the_class() -> None:
    assert status_of(550, "5.7.1 relaying denied") == "5.7.1"
    assert status_of(550, "no such user") == "5.0.0"
    assert status_of(451, "try later") == "4.0.0"
