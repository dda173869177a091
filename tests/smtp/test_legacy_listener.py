"""The legacy listener end to end: a client on loopback plays the printer, the UPS, the intruder.

One real server (subprocess) for the module, its legacy listener open to a few loopback
addresses (all of 127/8 reaches lo on Linux): 127.0.0.3 is the printer (AUTH PLAIN, no TLS),
127.0.0.5 the old printer (TLS 1.0), 127.0.0.4 the UPS (no AUTH), 127.0.0.6 an allowed
address no device has, 127.0.0.2 outside [legacy] networks.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.credentials.devices import DeviceRequest
from tests.guard.servers import eventually, set_section
from tests.smtp.server_harness import RunningServer, free_port, init_data_dir, wait_for_port

LOGIN = "office@example.com"
PRINTER, UPS, OLD_PRINTER, STRANGER, OUTSIDER = "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.2"


class Office:
    def __init__(self, server: RunningServer, port: int) -> None:
        self.server, self.port = server, port
        credentials = server.credentials
        credentials.create_account(LOGIN)
        self.printer = credentials.create_device(LOGIN, DeviceRequest(
            "printer-2f", PRINTER, "scanner@example.com", ("@example.com",), "plain", "none", 20))
        self.old_printer = credentials.create_device(LOGIN, DeviceRequest(
            "printer-basement", OLD_PRINTER, "scanner-b@example.com", ("@example.com",), "plain", "legacy", 20))
        self.ups = credentials.create_device(LOGIN, DeviceRequest(
            "ups-1", UPS, "ups@example.com", ("it@example.com",), "none", "none", 20))

    def client(self, source: str, port: int | None = None) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", port or self.port, local_hostname="device.test", timeout=30,
                            source_address=(source, 0))

    def events(self, **query: str) -> list:
        return [e.event for e in self.server.runtime.audit_store.query(**query)]  # type: ignore[arg-type]

    def alert(self, rule: str, text: str) -> list:
        return eventually(lambda: [a for a in self.server.runtime.audit_store.alerts() if a.rule == rule and text in a.summary],
                          bool, timeout=30)


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    data: Path = tmp_path_factory.mktemp("legacy") / "data"
    config = init_data_dir(data)
    port = free_port()
    set_section(config, "legacy", {
        "listen": f'"127.0.0.1:{port}"',
        "networks": f'["127.0.0.1/32", "{PRINTER}", "{UPS}", "{OLD_PRINTER}/32", "{STRANGER}"]',
    })
    set_section(config, "alerts", {"device_volume_min_messages": "3"})
    server = RunningServer(config)
    server.start()
    assert server.proc is not None and server.log_path is not None
    wait_for_port(port, server.proc, server.log_path)
    try:
        yield Office(server, port)
    finally:
        server.close()


def message(sender: str, to: str, subject: str) -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nScan attached.\r\n".encode()


def tls10_context(server: RunningServer) -> ssl.SSLContext:
    """What a printer from 2012 speaks: TLS 1.0 only, at security level 0 for this context alone."""
    context = server.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def test_the_printer_logs_in_without_tls_and_its_scans_are_delivered(office: Office) -> None:
    with office.client(PRINTER) as printer:
        printer.ehlo()
        assert printer.has_extn("auth") and "PLAIN" in printer.esmtp_features["auth"]
        printer.login(LOGIN, office.printer.secret)
        for n in range(3):  # its usual is nothing: the third in an hour is above it (device floor 3)
            assert printer.sendmail("scanner@example.com", ["it@example.com"],
                                    message("scanner@example.com", "it@example.com", f"scan {n}")) == {}
        code, reply = printer.docmd("MAIL", "FROM:<office@example.com>")  # its sender is fixed
        assert (code, reply[:5]) == (553, b"5.7.1")
    captured = [m for m in office.server.runtime.capture.list() if m.subject.startswith("scan ")]
    assert len(captured) == 3 and {m.rcpt_to for m in captured} == {("it@example.com",)}
    raw = office.server.runtime.capture.open_raw(captured[0].id).read()
    assert b"with ESMTPA id" in raw and b"(tls no TLS)" in raw and office.printer.secret.encode() not in raw
    events = eventually(lambda: office.events(credential_id=office.printer.credential.id),
                        lambda found: len([e for e in found if e.kind == "message"]) >= 4, timeout=30)
    assert all(e.details.get("device") == "printer-2f" and e.listener == "legacy" for e in events)
    assert office.alert("volume", "device printer-2f")


def test_an_address_outside_the_networks_is_closed_on_before_the_greeting(office: Office) -> None:
    with socket.create_connection(("127.0.0.1", office.port), timeout=30, source_address=(OUTSIDER, 0)) as sock:
        assert sock.recv(100) == b""
    refused = eventually(lambda: office.events(kind="connect"),
                         lambda found: any(e.remote_ip == OUTSIDER for e in found), timeout=30)
    assert [(e.result, e.reason, e.listener) for e in refused if e.remote_ip == OUTSIDER][:1] == [
        ("fail", "network-not-allowed", "legacy")]
    with pytest.raises(smtplib.SMTPServerDisconnected):
        office.client(OUTSIDER)


def test_a_recipient_outside_the_list_is_refused_and_alerted(office: Office) -> None:
    with office.client(PRINTER) as printer:
        printer.login(LOGIN, office.printer.secret)
        printer.mail("scanner@example.com")
        code, reply = printer.rcpt("someone@gmail.com")
        assert (code, reply[:5]) == (550, b"5.7.1")
    assert office.alert("device-recipient", "someone@gmail.com")


def test_the_device_secret_fails_on_587_and_465_and_from_another_address(office: Office) -> None:
    server = office.server
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as modern:
        modern.starttls(context=server.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            modern.login(LOGIN, office.printer.secret)
        assert refused.value.smtp_code == 535
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=server.client_context(), timeout=30) as modern:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            modern.login(LOGIN, office.printer.secret)
    with office.client(STRANGER) as copied, pytest.raises(smtplib.SMTPAuthenticationError):
        copied.login(LOGIN, office.printer.secret)
    assert office.alert("device-elsewhere", "used on submission:")
    assert office.alert("device-elsewhere", "used on submissions:")
    assert office.alert("device-elsewhere", f"from another address: {STRANGER}")


def test_an_app_password_does_not_work_on_the_legacy_listener(office: Office) -> None:
    secret = office.server.credentials.create_app_password(LOGIN, "laptop").secret
    with office.client(PRINTER) as client, pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(LOGIN, secret)


def test_a_tls10_printer_works_on_the_legacy_listener_and_not_on_465(office: Office) -> None:
    with office.client(OLD_PRINTER) as printer:
        printer.starttls(context=tls10_context(office.server))
        assert isinstance(printer.sock, ssl.SSLSocket) and printer.sock.version() == "TLSv1"
        printer.login(LOGIN, office.old_printer.secret)
        assert printer.sendmail("scanner-b@example.com", ["it@example.com"],
                                message("scanner-b@example.com", "it@example.com", "tls10 scan")) == {}
    raw = office.server.runtime.capture.open_raw(
        next(m.id for m in office.server.runtime.capture.list() if m.subject == "tls10 scan")).read()
    assert b"with ESMTPSA id" in raw and b"(tls TLSv1 " in raw
    with pytest.raises(ssl.SSLError):
        smtplib.SMTP_SSL("127.0.0.1", office.server.submissions_port, context=tls10_context(office.server), timeout=30)
    # set up for TLS, it may not log in without: a stripped STARTTLS is refused, not obeyed
    with office.client(OLD_PRINTER) as stripped:
        stripped.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            stripped.login(LOGIN, office.old_printer.secret)
        assert refused.value.smtp_code == 530
    assert office.alert("device-no-tls", "device printer-basement")


def test_a_device_without_auth_is_known_by_its_address_alone(office: Office) -> None:
    with office.client(UPS) as ups:
        assert ups.sendmail("ups@example.com", ["it@example.com"],
                            message("ups@example.com", "it@example.com", "on battery")) == {}
    (captured,) = [m for m in office.server.runtime.capture.list() if m.subject == "on battery"]
    assert captured.credential_id == office.ups.credential.id
    raw = office.server.runtime.capture.open_raw(captured.id).read()
    assert b"with ESMTP id" in raw
    with office.client(STRANGER) as impostor:
        impostor.ehlo()
        code, reply = impostor.mail("ups@example.com")
        assert (code, reply[:5]) == (530, b"5.7.0")
    events = eventually(lambda: office.events(credential_id=office.ups.credential.id, kind="auth"), bool, timeout=30)
    assert events and events[0].mechanism == "address" and events[0].details["device"] == "ups-1"


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1", "TLSv1_2"])
def test_587_and_465_still_refuse_old_tls_and_auth_in_clear(office: Office, version: str) -> None:
    """With the legacy listener on, 587 and 465 keep TLS 1.2+ with AEAD suites only."""
    server = office.server
    context = tls10_context(server)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = getattr(ssl.TLSVersion, version)
    if version == "TLSv1_2":  # what the legacy context takes and the strict one does not: CBC suites
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE+AES+SHA1:ECDHE+AES+SHA256:-AESGCM:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=context, timeout=30)
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as modern:
        modern.ehlo()
        assert not modern.has_extn("auth")
        code, _ = modern.mail("ups@example.com")
        assert code == 530
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected)):
            modern.starttls(context=context)
    with office.client(PRINTER) as legacy:  # the same client is one the legacy listener takes
        legacy.starttls(context=context)
        assert isinstance(legacy.sock, ssl.SSLSocket) and legacy.sock.cipher()[0].endswith(("SHA", "SHA256"))


def doctor(office: Office, source: str, *, port: str = "", user: str = "", password: str = "", **more: str):
    from smtpgate.doctor import DoctorOptions, PortSpec, diagnose

    return diagnose(DoctorOptions(host="127.0.0.1", ports=[PortSpec.parse(port or str(office.port))], user=user,
                                  password=password, legacy=True, source=source, timeout=20, **more))


def test_doctor_sees_what_the_printer_sees_and_names_the_weaknesses(office: Office) -> None:
    report = doctor(office, PRINTER, user=LOGIN, password=office.printer.secret,
                    send_to="it@example.com", mail_from="scanner@example.com")
    assert report.get("auth").summary == f"logged in as {LOGIN} with PLAIN without TLS"
    assert report.get("send").status.value == "pass"
    weaknesses = report.get("weaknesses")
    assert weaknesses.status.value == "warn"
    assert [w.split(":")[0] for w in weaknesses.data["weaknesses"]] == ["weak TLS", "no TLS in this session", "AUTH without TLS"]
    assert "TLS 1.0" in weaknesses.cause and weaknesses.summary.startswith("3: weak TLS") and report.exit_code == 0
    assert office.printer.secret not in "\n".join(report.transcript)
    over_tls = doctor(office, OLD_PRINTER, port=f"{office.port}:starttls", user=LOGIN, password=office.old_printer.secret)
    assert over_tls.get("auth").status.value == "pass" and "AUTH without TLS" not in over_tls.get("weaknesses").cause


def test_doctor_from_outside_the_networks_and_as_the_ups(office: Office) -> None:
    outside = doctor(office, OUTSIDER)
    assert outside.get("greeting").summary == "closed before the greeting" and outside.exit_code == 1
    assert "[legacy] networks" in outside.get("greeting").cause
    ups = doctor(office, UPS, mail_from="ups@example.com")
    assert ups.get("no-auth").status.value == "pass"
    assert any(w.startswith("no AUTH") for w in ups.get("weaknesses").data["weaknesses"])
    stranger = doctor(office, STRANGER, user=LOGIN, password=office.printer.secret)
    assert stranger.get("auth").status.value == "fail" and "its own address" in stranger.get("auth").cause


def test_a_device_quota_holds(office: Office) -> None:
    secret = office.server.credentials.create_device(LOGIN, DeviceRequest(
        "label-printer", "127.0.0.1", "labels@example.com", ("@example.com",), "plain", "none", 1)).secret
    with office.client("127.0.0.1") as printer:
        printer.login(LOGIN, secret)
        assert printer.sendmail("labels@example.com", ["it@example.com"],
                                message("labels@example.com", "it@example.com", "label")) == {}
        code, reply = printer.docmd("MAIL", "FROM:<labels@example.com>")
        assert (code, reply[:5]) == (451, b"4.7.1")


def test_doctor_legacy_through_the_command_line(office: Office) -> None:
    from tests.cli.conftest import Cli

    cli = Cli(None)
    printer = cli("doctor", "127.0.0.1", "--legacy", "--port", str(office.port), "--source", PRINTER,
                  "--user", LOGIN, "--password-stdin", input=office.printer.secret + "\n")
    assert printer.code == 0, printer.stdout + printer.stderr
    assert "WARN  weaknesses  3: weak TLS, no TLS in this session, AUTH without TLS" in printer.stdout
    assert office.printer.secret not in printer.stdout + printer.stderr
    bad = cli("doctor", "127.0.0.1", "--legacy", "--source", "printer")
    assert bad.code == 2 and "--source 'printer' is not an IP address" in bad.stderr


def test_a_login_made_in_clear_is_forgotten_after_starttls(office: Office) -> None:
    with office.client(PRINTER) as printer:
        printer.login(LOGIN, office.printer.secret)
        printer.starttls(context=tls10_context(office.server))
        printer.ehlo()
        code, reply = printer.mail("scanner@example.com")
        assert (code, reply[:5]) == (530, b"5.7.0")
        printer.login(LOGIN, office.printer.secret)
        assert printer.mail("scanner@example.com")[0] == 250
