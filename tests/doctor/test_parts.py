"""The doctor's parts on their own: explanations, redaction, certificate facts, ports, rendering."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smtpgate import pki
from smtpgate.doctor import Check, PortSpec, Report, Status
from smtpgate.doctor.certs import examine, matches_host
from smtpgate.doctor.explain import (
    explain_connect_error,
    explain_reply,
    explain_tls_failure,
    parse_enhanced,
)
from smtpgate.doctor.transcript import REDACTED, Transcript, redact_auth_command

# ------------------------------------------------------------------ explanations


def test_connect_timeout_points_at_a_firewall_or_isp() -> None:
    """A TCP connect timeout cannot be produced on loopback, so the explanation is tested here."""
    why = explain_connect_error("timeout", 587, 5.0)
    assert "within 5 s" in why.cause and "firewall" in why.cause and "ISP" in why.cause
    assert "587" in why.fix and "465" in why.fix
    port25 = explain_connect_error("timeout", 25, 5.0)
    assert "blocks outgoing port 25" in port25.cause and "server-to-server" in port25.fix


def test_other_connect_failures() -> None:
    assert "nothing listens on port 2525" in explain_connect_error("refused", 2525).cause
    assert "no route" in explain_connect_error("unreachable", 587).cause


@pytest.mark.parametrize(
    ("code", "text", "stage", "words"),
    [
        (535, "5.7.8 Authentication credentials invalid", "auth", "login and password"),
        (535, "Error: authentication failed", "auth", "login and password"),  # Postfix: no enhanced code
        (534, "5.7.9 Application-specific password required", "auth", "two-factor"),
        (534, "5.7.14 Please log in via your web browser", "auth", "web page"),
        (538, "5.7.11 Encryption required", "auth", "TLS before AUTH"),
        (530, "5.7.0 Must issue a STARTTLS command first", "mail", "TLS before AUTH"),
        (530, "5.7.0 Authentication required", "mail", "did not log in"),
        (454, "4.7.0 Temporary authentication failure", "auth", "Temporary trouble"),
        (454, "4.7.0 TLS not available due to local problem", "starttls", "cannot start TLS"),
        (421, "4.7.0 Too many connections", "banner", "banned"),
        (421, "4.3.2 Service shutting down", "banner", "shutting down"),
        (553, "5.7.1 Sender address not allowed for this credential", "mail", "may not send as"),
        (554, "5.7.1 Relay access denied", "rcpt", "relay access denied"),
        (552, "5.3.4 Message too big", "data", "larger than"),
        (451, "4.7.1 Rate limit exceeded", "mail", "sending limit"),
        (599, "9.9.9 Something new", "data", "refused the request permanently"),
        (499, "Something new", "data", "temporary problem"),
    ],
)
def test_replies_map_to_causes(code: int, text: str, stage: str, words: str) -> None:
    assert words in explain_reply(code, text, stage).cause


def test_enhanced_codes() -> None:
    assert parse_enhanced("5.7.8 Authentication credentials invalid") == "5.7.8"
    assert parse_enhanced("5.7.139 Authentication unsuccessful") == "5.7.139"
    assert parse_enhanced("Error: authentication failed") == ""


def test_tls_failures() -> None:
    assert "does not speak implicit TLS" in explain_tls_failure("[SSL: WRONG_VERSION_NUMBER] wrong version number", True, 587).cause
    assert "old TLS versions" in explain_tls_failure("[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol", False, 587).cause
    assert "no cipher" in explain_tls_failure("sslv3 alert handshake failure", True, 465).cause


# ------------------------------------------------------------------ transcript


def test_transcript_scrubs_every_form_of_the_secret() -> None:
    t = Transcript()
    t.add_secret("s3cret-pass", "alice@example.test")
    plain = base64.b64encode(b"\0alice@example.test\0s3cret-pass").decode()
    t.sent(f"AUTH PLAIN {plain}")  # even without the first layer of redaction
    t.sent(base64.b64encode(b"s3cret-pass").decode())
    t.received("535 5.7.8 your password s3cret-pass is wrong")  # a careless server
    text = "\n".join(t.lines)
    assert "s3cret-pass" not in text and plain not in text and text.count(REDACTED) == 3


def test_auth_command_redaction_keeps_the_mechanism() -> None:
    assert redact_auth_command("AUTH PLAIN AGFsaWNlAHB3") == f"AUTH PLAIN {REDACTED}"
    assert redact_auth_command("AUTH LOGIN") == "AUTH LOGIN"


# ------------------------------------------------------------------ certificates


def _cert(tmp_path: Path, names: list[str], *, days: int = 30, self_signed: bool = True) -> bytes:
    now = datetime.now(timezone.utc)
    ca = None if self_signed else pki.make_ca("Test CA")
    pki.make_self_signed_cert(tmp_path / "c.pem", tmp_path / "k.pem", names, not_before=now - timedelta(days=40),
                              not_after=now + timedelta(days=days), ca=ca, overwrite=True)
    return pki.load_certificate(tmp_path / "c.pem").public_bytes(serialization.Encoding.DER)


def test_examine_reports_every_problem_at_once(tmp_path: Path) -> None:
    der = _cert(tmp_path, ["mail.other.test"], days=-2)
    facts = examine(der, "mail.example.test", datetime.now(timezone.utc))
    assert facts.problems == ["expired", "hostname", "self-signed"]
    assert facts.names == ["mail.other.test"] and facts.days_left < 0


def test_examine_a_good_certificate(tmp_path: Path) -> None:
    der = _cert(tmp_path, ["mail.example.test", "127.0.0.1"], self_signed=False)
    facts = examine(der, "127.0.0.1", datetime.now(timezone.utc))
    assert facts.problems == [] and not facts.self_signed and facts.issuer == "Test CA"
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string() == "CN=mail.example.test"


def test_hostname_matching() -> None:
    assert matches_host(["*.example.test"], "mail.example.test")
    assert not matches_host(["*.example.test"], "a.b.example.test")
    assert not matches_host(["*.example.test"], "example.test")
    assert matches_host(["127.0.0.1"], "127.0.0.1") and not matches_host(["localhost"], "127.0.0.1")
    assert matches_host(["Mail.Example.Test."], "mail.example.test")


# ------------------------------------------------------------------ ports and the report


def test_port_specs() -> None:
    assert PortSpec.parse("465") == PortSpec(465, "tls")
    assert PortSpec.parse("587") == PortSpec(587, "auto")
    assert PortSpec.parse("2465:TLS") == PortSpec(2465, "tls")
    for bad in ("0", "70000", "587:ssl", "smtp"):
        with pytest.raises(ValueError):
            PortSpec.parse(bad)


def test_report_text_and_json() -> None:
    report = Report("mail.example.test")
    report.add(Check("tcp:587", "tcp 587", Status.PASS, "connected to 192.0.2.1"))
    report.add(Check("auth", "auth", Status.FAIL, "refused", "Wrong password.", "Check it.", {"code": 535}))
    report.add(Check("tcp:25", "tcp 25", Status.WARN, "timed out", "Blocked.", "Use 587."))
    text = report.render()
    assert "  PASS  tcp 587  connected to 192.0.2.1" in text
    assert "cause: Wrong password." in text and "fix:   Check it." in text
    assert "3 checks (1 pass, 1 warn, 1 fail): problems found" in text
    value = json.loads(json.dumps(report.to_json()))
    assert value["ok"] is False and value["counts"] == {"pass": 1, "warn": 1, "fail": 1, "skip": 0}
    assert value["checks"][1] == {"id": "auth", "title": "auth", "status": "fail", "summary": "refused",
                                  "cause": "Wrong password.", "fix": "Check it.", "data": {"code": 535}}
    assert "transcript" not in value
