"""Python's smtplib against a real server over real TLS: the paths a user takes."""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.guard.servers import eventually
from tests.smtp.server_harness import PASSWORD, RunningServer

MESSAGE = b"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nHello\r\n"


def message(sender: str, subject: str = "hi") -> bytes:
    return MESSAGE.replace(b"{sender}", sender.encode()).replace(b"{subject}", subject.encode())


def starttls_client(server: RunningServer) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.submission_port, local_hostname="client.test", timeout=10)
    client.starttls(context=server.client_context())
    return client


def test_starttls_app_password_message_is_captured(server: RunningServer) -> None:
    secret = server.account_with_app_password("e2e1@example.com")
    with starttls_client(server) as client:
        client.login("e2e1@example.com", secret)
        refused = client.sendmail("e2e1@example.com", ["bob@example.org"], message("e2e1@example.com", "starttls"))
    assert refused == {}
    captured = [m for m in server.runtime.capture.list() if m.subject == "starttls"]
    assert len(captured) == 1
    assert captured[0].mail_from == "e2e1@example.com" and captured[0].rcpt_to == ("bob@example.org",)
    raw = server.runtime.capture.open_raw(captured[0].id).read()
    assert raw.startswith(b"Received: from client.test ([127.0.0.1])")
    assert b"TLSv1.3" in raw and secret.encode() not in raw
    # every recipient sees this header: the credential id is not theirs to know; an opaque
    # per-message token that the audit ties to the credential is there instead
    received = raw.split(b"\r\n\t", 3)
    assert captured[0].credential_id.encode() not in raw
    token = re.search(rb"\(auth ([0-9a-f]{16})\)", b"".join(received[:3]))
    assert token is not None
    events = eventually(lambda: server.runtime.audit_store.query(credential_id=captured[0].credential_id, kind="message"), bool)
    assert [e.event.details.get("received_token") for e in events] == [token.group(1).decode()]


def test_source_route_is_dropped_from_the_envelope(server: RunningServer) -> None:
    """RFC 5321 4.1.1.3: a source route is ignored; the mailbox is what is checked and stored."""
    secret = server.account_with_app_password("route@example.com")
    with starttls_client(server) as client:
        client.login("route@example.com", secret)
        assert client.docmd("MAIL", "FROM:<@evil.example:route@example.com>")[0] == 250
        assert client.docmd("RCPT", "TO:<@relay.example:bob@example.org>")[0] == 250
        assert client.docmd("DATA")[0] == 354
        client.send(message("route@example.com", "routed") + b".\r\n")
        assert client.getreply()[0] == 250
    captured = [m for m in server.runtime.capture.list() if m.subject == "routed"]
    assert [(m.mail_from, m.rcpt_to) for m in captured] == [("route@example.com", ("bob@example.org",))]


def test_implicit_tls_advertises_and_accepts_auth(server: RunningServer) -> None:
    secret = server.account_with_app_password("e2e2@example.com")
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=server.client_context(), timeout=10) as client:
        client.ehlo("client.test")
        assert "PLAIN" in client.esmtp_features["auth"] and "LOGIN" in client.esmtp_features["auth"]
        assert "starttls" not in client.esmtp_features
        client.login("e2e2@example.com", secret)
        client.sendmail("e2e2@example.com", ["x@example.org"], message("e2e2@example.com"))


def test_account_password_with_login_mechanism(server: RunningServer) -> None:
    server.credentials.create_account("e2e3@example.com", password=PASSWORD)
    with starttls_client(server) as client:
        client.ehlo("client.test")
        client.user, client.password = "e2e3@example.com", PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235


def test_no_auth_before_tls(server: RunningServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as client:
        client.ehlo("client.test")
        assert "auth" not in client.esmtp_features and "starttls" in client.esmtp_features
        assert client.docmd("AUTH", "PLAIN AGEAYg==") == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530


def test_mail_without_auth_is_refused_after_tls(server: RunningServer) -> None:
    with starttls_client(server) as client:
        client.ehlo("client.test")
        assert client.docmd("MAIL", "FROM:<a@example.com>") == (530, b"5.7.0 Authentication required")


@pytest.mark.parametrize("case", ["wrong", "unknown", "revoked", "expired-style-typo"])
def test_every_auth_failure_looks_the_same(server: RunningServer, case: str) -> None:
    secret = server.account_with_app_password(f"fail-{case}@example.com")
    login = f"fail-{case}@example.com"
    if case == "wrong":
        secret = secret[:-5] + "aaaaa"
    elif case == "unknown":
        login = "ghost@example.com"
    elif case == "revoked":
        cred = server.credentials.list_credentials(account=login)[-1]
        server.credentials.revoke(cred.id)
    else:
        secret = secret.upper()
    with starttls_client(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login(login, secret)
    assert err.value.smtp_code == 535
    assert err.value.smtp_error == b"5.7.8 Authentication credentials invalid"


def test_app_password_required_gets_534(server: RunningServer) -> None:
    server.credentials.create_account("twofa@example.com", password=PASSWORD, require_app_passwords=True)
    with starttls_client(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login("twofa@example.com", PASSWORD)
    assert err.value.smtp_code == 534
    assert err.value.smtp_error.startswith(b"5.7.9 Application-specific password required; make one at http://")
    assert err.value.smtp_error.endswith(b"/apps")


def test_wrong_network_is_refused_like_any_failure(server: RunningServer) -> None:
    secret = server.account_with_app_password("netscope@example.com", allowed_networks=("192.0.2.0/24",))
    with starttls_client(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login("netscope@example.com", secret)
    assert err.value.smtp_code == 535
    assert "reason=ip-not-allowed" in server.log()


def test_sender_scopes_envelope_and_header(server: RunningServer) -> None:
    secret = server.account_with_app_password("scoped@example.com", allowed_senders=("scoped@example.com", "@billing.example.com"))
    with starttls_client(server) as client:
        client.login("scoped@example.com", secret)
        assert client.docmd("MAIL", "FROM:<boss@example.com>") == (553, b"5.7.1 Sender address not allowed for this credential")
        client.sendmail("invoices@billing.example.com", ["x@example.org"], message("Billing <invoices@billing.example.com>"))
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail("scoped@example.com", ["x@example.org"], message("CEO <ceo@example.com>"))
        assert err.value.smtp_code == 550 and b"From:" in err.value.smtp_error
        forged_sender = b"From: scoped@example.com\r\nSender: ceo@example.com\r\n\r\nx\r\n"
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail("scoped@example.com", ["x@example.org"], forged_sender)
        assert err.value.smtp_code == 550 and b"Sender:" in err.value.smtp_error
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail("scoped@example.com", ["x@example.org"], b"Subject: no from\r\n\r\nx\r\n")
        assert err.value.smtp_code == 550


def test_revocation_takes_effect_for_the_next_login(server: RunningServer) -> None:
    secret = server.account_with_app_password("revokeme@example.com")
    with starttls_client(server) as client:
        client.login("revokeme@example.com", secret)
    cred = server.credentials.list_credentials(account="revokeme@example.com")[-1]
    server.credentials.revoke(cred.id)
    with starttls_client(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("revokeme@example.com", secret)
    assert "reason=revoked" in server.log()


def test_secrets_never_reach_the_log(server: RunningServer) -> None:
    secret = server.account_with_app_password("logcheck@example.com")
    with starttls_client(server) as client:
        client.login("logcheck@example.com", secret)
    with starttls_client(server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("logcheck@example.com", secret[:-3] + "abc")
    assert secret not in server.log() and secret[:-3] not in server.log()
    assert PASSWORD not in server.log()


def test_too_many_recipients(server: RunningServer) -> None:
    secret = server.account_with_app_password("many@example.com")
    with starttls_client(server) as client:
        client.login("many@example.com", secret)
        client.mail("many@example.com")
        codes = [client.rcpt(f"r{i}@example.org")[0] for i in range(101)]
    assert codes[:100] == [250] * 100 and codes[100] == 452


def test_oversized_message_is_refused_while_streaming(server: RunningServer) -> None:
    secret = server.account_with_app_password("big@example.com")
    body = b"From: big@example.com\r\n\r\n" + (b"x" * 990 + b"\r\n") * (server.config.smtp.max_message_size // 992 + 10)
    with starttls_client(server) as client:
        client.login("big@example.com", secret)
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # SIZE= says it up front
            client.sendmail("big@example.com", ["x@example.org"], body)
        assert declared.value.smtp_code == 552
        client.mail("big@example.com")  # no SIZE=: refused while streaming
        client.rcpt("x@example.org")
        code, reply = client.data(body)
        assert (code, reply[:5]) == (552, b"5.3.4")
        assert client.noop()[0] == 250  # the session goes on
    assert not [m for m in server.runtime.capture.list() if m.mail_from == "big@example.com"]


def test_message_policy_keys(tmp_path) -> None:
    """allow_null_sender = true, display_name_address = "flag", received_auth = "none"."""
    from tests.smtp.server_harness import init_data_dir

    config = init_data_dir(tmp_path / "data", smtp={
        "allow_null_sender": "true", "display_name_address": '"flag"', "received_auth": '"none"',
    })
    server = RunningServer(config)
    server.start()
    try:
        secret = server.account_with_app_password("receipts@example.com")
        with starttls_client(server) as client:
            client.login("receipts@example.com", secret)
            client.sendmail("", ["bob@example.org"], message('"boss@example.com" <receipts@example.com>', "flagged"))
        [captured] = [m for m in server.runtime.capture.list() if m.subject == "flagged"]
        assert captured.mail_from == ""
        raw = server.runtime.capture.open_raw(captured.id).read()
        assert b"(auth " not in raw and captured.credential_id.encode() not in raw
        events = eventually(lambda: server.runtime.audit_store.query(credential_id=captured.credential_id, kind="message"), bool)
        [event] = events
        assert event.event.details["flags"] == [{"reason": "display-name-address", "where": "From",
                                           "address": "receipts@example.com", "shown": "boss@example.com"}]
        assert "received_token" not in event.event.details
    finally:
        server.close()
