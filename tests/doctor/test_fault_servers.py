"""The doctor against small misbehaving servers on loopback: every diagnosis asserted."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from smtpgate.doctor import DoctorOptions, PortSpec, Status
from smtpgate.doctor.runner import Doctor
from tests.doctor.conftest import doctor
from tests.doctor.fakes import FakeSmtp, self_signed

SECRET = "hunter2-but-longer-and-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_starttls_is_a_failure_and_no_password_is_sent() -> None:
    with FakeSmtp(starttls=False, auth_before_tls=True) as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET)
    tls = report.get(f"tls:{fake.port}")
    assert tls.status is Status.FAIL and tls.summary == "STARTTLS not offered"
    assert "does not offer STARTTLS" in tls.cause and "clear text" in tls.cause and "465" in tls.fix
    mechanisms = report.get(f"auth-mechanisms:{fake.port}")
    assert mechanisms.status is Status.WARN and "without TLS" in mechanisms.summary
    auth = report.get("auth")
    assert auth.status is Status.SKIP and "password was not sent" in auth.summary
    assert not any(line.upper().startswith("AUTH") for line in fake.received)
    assert not report.ok


def test_firewall_that_strips_starttls_is_named() -> None:
    with FakeSmtp(starttls=False, extra_plain_features=["XXXXXXXA"]) as fake:
        report = doctor(str(fake.port))
    tls = report.get(f"tls:{fake.port}")
    assert tls.status is Status.FAIL
    assert "firewall with SMTP inspection" in tls.cause and "XXXXXXXA" in tls.cause


def test_auth_before_tls_is_a_warning_and_login_still_works(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(auth_before_tls=True, cert=fake_cert) as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET, cafile=str(fake_cert[0]))
    mechanisms = report.get(f"auth-mechanisms:{fake.port}")
    assert mechanisms.status is Status.WARN
    assert "before TLS" in mechanisms.summary and "clear text" in mechanisms.cause
    assert "smtpd_tls_auth_only" in mechanisms.fix
    assert mechanisms.data["before_tls"] == ["PLAIN", "LOGIN"]
    assert report.get(f"tls:{fake.port}").status is Status.PASS
    cert = report.get(f"cert:{fake.port}")
    assert cert.status is Status.PASS and "self-signed, trusted via --cafile" in cert.summary
    assert report.get("auth").status is Status.PASS
    assert report.ok  # warnings do not fail the run
    # the password only crossed inside TLS: the AUTH line came after STARTTLS
    assert fake.received.index("STARTTLS") < next(i for i, l in enumerate(fake.received) if l.startswith("AUTH"))


def test_tarpit_on_a_starttls_port_times_out_with_an_explanation() -> None:
    with FakeSmtp(behaviour="tarpit") as fake:
        report = doctor(f"{fake.port}:starttls", timeout=1.0)
    assert report.get(f"tcp:{fake.port}").status is Status.PASS
    banner = report.get(f"banner:{fake.port}")
    assert banner.status is Status.FAIL and banner.summary.startswith("no greeting")
    assert "said nothing in 1 s" in banner.cause and "implicit TLS" in banner.cause and "tarpit" in banner.cause
    assert not report.ok


def test_tarpit_on_an_auto_port_also_refuses_tls() -> None:
    with FakeSmtp(behaviour="tarpit") as fake:
        report = doctor(str(fake.port), timeout=1.0)
    banner = report.get(f"banner:{fake.port}")
    assert banner.status is Status.FAIL and "no TLS either" in banner.summary
    assert "said nothing" in banner.cause


def test_server_that_hangs_up_is_diagnosed() -> None:
    with FakeSmtp(behaviour="drop") as fake:
        report = doctor(str(fake.port))
    banner = report.get(f"banner:{fake.port}")
    assert banner.status is Status.FAIL and "closed without a greeting" in banner.summary
    assert "banned" in banner.cause and "block list" in banner.cause


@pytest.mark.parametrize(
    ("greeting", "words"),
    [
        ("421 4.7.0 Too many connections from your address, try again later", ["rate limited or banned"]),
        ("554 5.7.1 No SMTP service for you", ["refuses connections from your address"]),
    ],
)
def test_refusing_greeting_is_explained(greeting: str, words: list[str]) -> None:
    with FakeSmtp(banner=greeting) as fake:
        report = doctor(str(fake.port))
    banner = report.get(f"banner:{fake.port}")
    assert banner.status is Status.FAIL and banner.data["code"] == int(greeting[:3])
    assert all(w in banner.cause for w in words)


@pytest.mark.parametrize(
    ("reply", "cause_words", "fix_words"),
    [
        ("535 5.7.8 Authentication credentials invalid", ["does not accept this login and password"],
         ["which", "every client", "app password"]),
        ("534 5.7.9 Application-specific password required", ["two-factor"], ["app password"]),
        ("530 5.7.0 Must issue a STARTTLS command first", ["TLS before AUTH"], ["STARTTLS"]),
        ("454 4.7.0 Temporary authentication failure", ["Temporary trouble on the server"], ["Try again"]),
        ("421 4.7.0 Too many failed logins, closing", ["rate limited or banned"], ["old password"]),
        ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
         ["SMTP AUTH is turned off"], ["Authenticated SMTP"]),
    ],
)
def test_auth_replies_are_mapped_to_causes(fake_cert: tuple[Path, Path], reply: str, cause_words: list[str],
                                           fix_words: list[str]) -> None:
    with FakeSmtp(cert=fake_cert, auth_reply=reply) as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET, cafile=str(fake_cert[0]))
    auth = report.get("auth")
    assert auth.status is Status.FAIL
    assert auth.data["code"] == int(reply[:3]) and auth.data["enhanced"] == reply.split()[1]
    assert all(w in auth.cause for w in cause_words), auth.cause
    assert all(w in auth.fix for w in fix_words), auth.fix
    assert not report.ok


def test_login_mechanism_transcript_never_shows_the_secret(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(cert=fake_cert, auth_after_tls="LOGIN") as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET, cafile=str(fake_cert[0]))
    assert report.get("auth").status is Status.PASS and report.get("auth").data["mechanism"] == "LOGIN"
    encoded = base64.b64encode(SECRET.encode()).decode()
    assert encoded in fake.received  # the server did get the password...
    text = "\n".join(report.transcript)
    assert SECRET not in text and encoded not in text  # ...the transcript did not
    assert text.count("C: <redacted>") == 2 and "AUTH LOGIN" in text


def test_plain_transcript_keeps_the_mechanism_and_drops_the_blob(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(cert=fake_cert) as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET, cafile=str(fake_cert[0]))
    blob = base64.b64encode(f"\0alice@example.test\0{SECRET}".encode()).decode()
    assert f"AUTH PLAIN {blob}" in fake.received
    text = "\n".join(report.transcript)
    assert "C: AUTH PLAIN <redacted>" in text and blob not in text and SECRET not in text


def test_implicit_tls_mode_on_a_plain_port(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(cert=fake_cert) as fake:
        report = doctor(f"{fake.port}:tls", cafile=str(fake_cert[0]))
    tls = report.get(f"tls:{fake.port}")
    assert tls.status is Status.FAIL and "does not speak implicit TLS" in tls.cause
    assert f"--port {fake.port}:starttls" in tls.fix


def test_auto_port_that_wants_tls_first_is_detected(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(cert=fake_cert, implicit_tls=True, starttls=False) as fake:
        report = doctor(str(fake.port), cafile=str(fake_cert[0]), timeout=1.0, user="a@example.test", password=SECRET)
    tls = report.get(f"tls:{fake.port}")
    assert tls.status is Status.PASS and tls.summary.startswith("implicit TLS works")
    assert report.get(f"banner:{fake.port}").status is Status.PASS
    assert report.get("auth").status is Status.PASS and report.ok


def test_certificate_about_to_expire_is_a_warning(tmp_path: Path) -> None:
    cert = self_signed(tmp_path, days=5)
    with FakeSmtp(cert=cert) as fake:
        report = doctor(str(fake.port), cafile=str(cert[0]))
    check = report.get(f"cert:{fake.port}")
    assert check.status is Status.WARN and "expires in 4 days" in check.summary
    assert "Renew it now" in check.fix and check.data["days_left"] == 4


def test_self_signed_certificate_not_trusted_stops_the_password(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(cert=fake_cert) as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET)
    cert = report.get(f"cert:{fake.port}")
    assert cert.status is Status.FAIL and "self-signed" in cert.summary
    assert "self-signed" in cert.cause and "--cafile" in cert.fix
    assert report.get("auth").status is Status.SKIP
    assert not any(line.startswith("AUTH") for line in fake.received)
    with FakeSmtp(cert=fake_cert) as fake:
        insecure = doctor(str(fake.port), user="alice@example.test", password=SECRET, insecure=True)
    assert insecure.get(f"cert:{fake.port}").status is Status.FAIL
    assert insecure.get("auth").status is Status.PASS  # --insecure goes on, still reporting the certificate


def test_refused_port_is_explained() -> None:
    port = free_port()
    report = doctor(str(port))
    check = report.get(f"tcp:{port}")
    assert check.status is Status.FAIL and check.data["error"] == "refused"
    assert "nothing listens" in check.cause and "587" in check.fix


def test_with_default_ports_a_blocked_port_is_only_a_warning_when_another_works() -> None:
    closed = free_port()
    with FakeSmtp() as fake:
        run = Doctor(DoctorOptions(host="127.0.0.1", timeout=2, connect_timeout=2))
        reached = run._reach_all([PortSpec(fake.port), PortSpec(closed)], ["127.0.0.1"])
        for _, wire, _ in reached:
            wire.close()
    assert [spec.port for spec, _, _ in reached] == [fake.port]
    blocked = run.report.get(f"tcp:{closed}")
    assert blocked.status is Status.WARN and f"Port {fake.port} works" in blocked.fix


def test_test_message_through_a_fake(fake_cert: tuple[Path, Path]) -> None:
    with FakeSmtp(cert=fake_cert) as fake:
        report = doctor(str(fake.port), user="alice@example.test", password=SECRET, cafile=str(fake_cert[0]),
                        send_to="bob@example.test")
    send = report.get("send")
    assert send.status is Status.PASS and "queued as FAKE1" in send.summary
    assert "MAIL FROM:<alice@example.test>" in fake.received and "RCPT TO:<bob@example.test>" in fake.received
