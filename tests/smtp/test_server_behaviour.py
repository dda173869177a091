"""The adapter's duties: TLS edges, smuggling and injection on the wire, caps, timeouts, signals."""

from __future__ import annotations

import signal
import smtplib
import ssl
import threading
import time

import pytest

from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import RunningServer, init_data_dir


def authed(server: RunningServer, login: str) -> RawClient:
    secret = server.account_with_app_password(login)
    client = RawClient(server.submission_port)
    assert client.reply()[0] == 220
    client.cmd("EHLO raw.test")
    assert client.cmd("STARTTLS")[0] == 220
    client.starttls(server.client_context())
    client.cmd("EHLO raw.test")
    assert client.login(login, secret)[0] == 235
    return client


def test_starttls_injection_is_not_executed(server: RunningServer) -> None:
    client = RawClient(server.submission_port)
    client.reply()
    client.cmd("EHLO raw.test")
    client.send("STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n")  # pipelined plaintext after STARTTLS
    assert client.reply()[0] == 220
    client.starttls(server.client_context())
    # the injected MAIL must not have been run inside TLS: the next reply is our EHLO's
    code, lines = client.cmd("EHLO raw.test")
    assert code == 250 and lines[0].startswith("250-")
    assert client.cmd("NOOP")[0] == 250
    client.close()


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"])
def test_smtp_smuggling_is_refused(server: RunningServer, smuggle: bytes) -> None:
    client = authed(server, "smuggle@example.com")
    assert client.cmd("MAIL FROM:<smuggle@example.com>")[0] == 250
    assert client.cmd("RCPT TO:<victim@example.org>")[0] == 250
    assert client.cmd("DATA")[0] == 354
    client.send(
        b"From: smuggle@example.com\r\nSubject: smuggled\r\n\r\nfirst" + smuggle
        + b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nFrom: ceo@example.com\r\n\r\nforged\r\n.\r\n"
    )
    code, lines = client.reply()
    assert code == 550 and "5.6.0" in lines[0]
    assert client.cmd("NOOP")[0] == 250  # the would-be second transaction never ran
    client.close()
    assert not [m for m in server.runtime.capture.list() if m.subject == "smuggled" or m.mail_from == "ceo@example.com"]


def test_dot_stuffing_is_undone_and_bdat_works(server: RunningServer) -> None:
    client = authed(server, "dots@example.com")
    client.cmd("MAIL FROM:<dots@example.com>")
    client.cmd("RCPT TO:<x@example.org>")
    client.cmd("DATA")
    client.send(b"From: dots@example.com\r\nSubject: dots\r\n\r\n..leading dot\r\n.\r\n")
    code, lines = client.reply()
    assert code == 250
    stored = next(m for m in server.runtime.capture.list() if m.subject == "dots")
    assert server.runtime.capture.open_raw(stored.id).read().endswith(b"\r\n.leading dot\r\n")
    body = b"From: dots@example.com\r\nSubject: bdat\r\n\r\nchunked\r\n"
    client.cmd("MAIL FROM:<dots@example.com>")
    client.cmd("RCPT TO:<x@example.org>")
    client.send(b"BDAT %d\r\n" % 20 + body[:20])
    assert client.reply()[0] == 250
    client.send(b"BDAT %d LAST\r\n" % (len(body) - 20) + body[20:])
    code, lines = client.reply()
    assert code == 250 and "queued as" in lines[0]
    assert any(m.subject == "bdat" for m in server.runtime.capture.list())
    client.close()


def test_pipelined_transaction(server: RunningServer) -> None:
    client = authed(server, "pipe@example.com")
    client.send(
        "MAIL FROM:<pipe@example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    )
    assert [client.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    client.send("From: pipe@example.com\r\nSubject: pipelined\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert client.reply()[0] == 250 and client.reply()[0] == 221
    assert client.closed_by_server()


def test_long_auth_line_is_accepted_but_long_command_is_not(server: RunningServer) -> None:
    client = authed(server, "lines@example.com")
    assert client.cmd("NOOP " + "x" * 600)[0] == 500
    client.close()
    client = RawClient(server.submission_port)
    client.reply()
    client.cmd("EHLO raw.test")
    client.cmd("STARTTLS")
    client.starttls(server.client_context())
    client.cmd("EHLO raw.test")
    blob = "A" * 14000  # like a 10 KB OAuth token: must be read whole, then refused as credentials
    code, _ = client.cmd(f"AUTH PLAIN {blob}")
    assert code in (501, 535)
    assert client.cmd("NOOP")[0] == 250
    client.close()


def _authed_from(server: RunningServer, source: str, login: str, secret: str) -> RawClient:
    client = RawClient(server.submission_port, source=source)
    assert client.reply()[0] == 220
    client.cmd("EHLO raw.test")
    assert client.cmd("STARTTLS")[0] == 220
    client.starttls(server.client_context())
    client.cmd("EHLO raw.test")
    assert client.login(login, secret)[0] == 235
    return client


def test_connection_caps(tmp_path) -> None:
    server = RunningServer(init_data_dir(tmp_path / "d", smtp={"max_connections_per_ip": "3", "max_connections": "5"}))
    server.start()
    try:
        # not from 127.0.0.1, where the harness's readiness probes may still be counted
        held = [RawClient(server.submission_port, source="127.0.0.4") for _ in range(3)]
        assert all(c.reply()[0] == 220 for c in held)
        extra = RawClient(server.submission_port, source="127.0.0.4")
        code, lines = extra.reply()
        assert code == 421 and "4.7.0" in lines[0] and "your address" in lines[0]
        assert extra.closed_by_server()
        # unauthenticated connections get 4 of the 5 slots (auth_reserve 0.2): a fifth one
        # is let in by shedding the one idle the longest
        other = RawClient(server.submission_port, source="127.0.0.2")
        assert other.reply()[0] == 220
        newest = RawClient(server.submission_port, source="127.0.0.2")
        assert newest.reply()[0] == 220
        code, lines = held[0].reply()
        assert code == 421 and "idle the longest" in lines[0]
        assert held[0].closed_by_server()
        for client in [*held[1:], other, newest]:
            client.close()
        time.sleep(0.3)
        # when every slot is an authenticated session there is nothing to shed: 421
        secret = server.account_with_app_password("caps@example.com")
        sessions = [_authed_from(server, f"127.0.0.{2 + n // 2}", "caps@example.com", secret) for n in range(5)]
        over = RawClient(server.submission_port, source="127.0.0.9")
        code, lines = over.reply()
        assert code == 421 and "4.7.0" in lines[0] and "your address" not in lines[0]
        sessions[0].cmd("QUIT")
        time.sleep(0.3)
        again = RawClient(server.submission_port, source="127.0.0.9")
        assert again.reply()[0] == 220
    finally:
        server.close()


def test_idle_client_is_timed_out(tmp_path) -> None:
    server = RunningServer(init_data_dir(tmp_path / "d", smtp={"command_timeout": '"1s"'}))
    server.start()
    try:
        client = RawClient(server.submission_port)
        client.reply()
        code, lines = client.reply()  # nothing sent: the server gives up on us
        assert code == 421 and "4.4.2" in lines[0]
        assert client.closed_by_server()
    finally:
        server.close()


def test_sigterm_finishes_the_transaction_in_flight(fresh_server: RunningServer) -> None:
    fresh_server.start()
    client = authed(fresh_server, "inflight@example.com")
    client.cmd("MAIL FROM:<inflight@example.com>")
    client.cmd("RCPT TO:<x@example.org>")
    client.cmd("DATA")
    client.send(b"From: inflight@example.com\r\nSubject: inflight\r\n\r\nhalf")
    idle = RawClient(fresh_server.submission_port)
    idle.reply()
    fresh_server.proc.send_signal(signal.SIGTERM)
    code, lines = idle.reply()  # an idle session is told at once
    assert code == 421 and "4.3.2" in lines[0]
    time.sleep(0.3)
    client.send(b" of the message\r\n.\r\n")
    code, lines = client.reply()
    assert code == 250, lines  # the transaction in flight completes
    code, lines = client.cmd("MAIL FROM:<inflight@example.com>")
    assert code == 421
    assert fresh_server.proc.wait(15) == 0
    assert any(m.subject == "inflight" for m in fresh_server.runtime.capture.list())


def test_sighup_reloads_the_certificate_without_dropping_connections(fresh_server: RunningServer) -> None:
    from smtpgate import pki

    fresh_server.start()
    tls_dir = fresh_server.config.path("tls")
    first = RawClient(fresh_server.submissions_port)
    first.sock = fresh_server.client_context().wrap_socket(first.sock, server_hostname="localhost")
    assert first.reply()[0] == 220
    old_serial = first.sock.getpeercert()["serialNumber"]
    ca_cert = pki.load_certificate(tls_dir / "ca.pem")
    ca_key = pki.load_private_key(tls_dir / "ca.key")
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    cert_pem, key_pem = pki.issue_server_cert(ca_cert, ca_key, ["localhost"], now - timedelta(minutes=1), now + timedelta(days=30), include_loopback=True)
    (tls_dir / "server.key").write_bytes(key_pem)
    (tls_dir / "server.pem").write_bytes(cert_pem + pki.cert_to_pem(ca_cert))
    fresh_server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert first.cmd("NOOP")[0] == 250  # the old connection lives on
    for port in (fresh_server.submissions_port, fresh_server.submission_port):
        second = RawClient(port)
        if port == fresh_server.submissions_port:
            second.sock = fresh_server.client_context().wrap_socket(second.sock, server_hostname="localhost")
            second.reply()
        else:
            second.reply()
            second.cmd("EHLO raw.test")
            second.cmd("STARTTLS")
            second.starttls(fresh_server.client_context())
        assert second.sock.getpeercert()["serialNumber"] != old_serial
        second.close()
    assert "TLS certificate reloaded" in fresh_server.log()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(server: RunningServer) -> None:
    context = server.client_context()
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected)):
        smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=context, timeout=5)


def test_many_concurrent_sessions(server: RunningServer) -> None:
    secret = server.account_with_app_password("busy@example.com")
    errors: list[Exception] = []

    def send(i: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=20) as c:
                c.starttls(context=server.client_context())
                c.login("busy@example.com", secret)
                for j in range(5):
                    c.sendmail("busy@example.com", ["x@example.org"], f"From: busy@example.com\r\nSubject: busy-{i}-{j}\r\n\r\nx\r\n".encode())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len([m for m in server.runtime.capture.list() if m.subject.startswith("busy-")]) == 100


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-tls", "starttls"])
def test_a_tls_client_closing_logs_no_asyncio_warning(server: RunningServer, implicit: bool) -> None:
    """A TLS peer's EOF ends the session quietly (asyncio warns if eof_received keeps TLS open)."""
    if implicit:
        client = RawClient(server.submissions_port)
        client.starttls(server.client_context())
    else:
        client = RawClient(server.submission_port)
        client.reply()
        client.cmd("EHLO raw.test")
        assert client.cmd("STARTTLS")[0] == 220
        client.starttls(server.client_context())
        client.cmd("EHLO raw.test")
    if implicit:
        assert client.reply()[0] == 220
    assert client.cmd("NOOP")[0] == 250
    assert isinstance(client.sock, ssl.SSLSocket)
    plain = client.sock.unwrap()  # close_notify out, and the server's close_notify back
    assert plain.recv(1) == b""  # then the server closes the TCP connection
    plain.close()
    # the server has closed: anything it logged about this connection is in the log now
    assert "eof_received" not in server.log()
