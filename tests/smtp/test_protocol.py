"""Rule-by-rule tests of the sans-I/O SMTP protocol machine.

Each test pins exact reply codes and enhanced status codes, because clients
and monitoring key on them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpgate.smtp.protocol import (
    AUTH_CREDENTIALS_INVALID,
    NEED_DATA,
    PAUSED,
    AuthAttempt,
    ConnectionLost,
    DataStart,
    DecisionEvent,
    Event,
    Hello,
    MailFrom,
    MessageComplete,
    MessageData,
    MessageRejected,
    ProtocolLimits,
    ProtocolUsageError,
    Quit,
    RcptTo,
    Reply,
    Reset,
    ServerConnection,
    ServerFeatures,
    StartTLS,
    State,
)

from .protocol_dialogs import (
    DialogError,
    merged_event_names,
    names_match,
    parse_dialog,
    run_dialog,
)

HOST = "mx.example.test"
DIALOGS = sorted((Path(__file__).parent / "dialogs").glob("proto_*.txt"))
Decider = Callable[[DecisionEvent], Reply | None]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def accept_all(event: DecisionEvent) -> Reply | None:
    return None


def connect(**settings: Any) -> ServerConnection:
    """A started connection; keyword arguments go to features or limits."""
    limit_names = ProtocolLimits.__dataclass_fields__
    limits = {k: settings.pop(k) for k in list(settings) if k in limit_names}
    conn = ServerConnection(ServerFeatures(HOST, **settings), ProtocolLimits(**limits))
    conn.start()
    conn.data_to_send()
    return conn


def talk(
    conn: ServerConnection, data: bytes = b"", decide: Decider = accept_all
) -> tuple[list[Event], list[str]]:
    """Feed ``data``, answer every decision, return (events, reply lines)."""
    if data:
        conn.receive_data(data)
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        if event is PAUSED:
            pending = conn.pending_decision
            assert pending is not None
            answer = decide(pending)
            if answer is None:
                conn.accept()
            else:
                conn.reject(answer)
            continue
        events.append(event)
    return events, replies(conn)


def replies(conn: ServerConnection) -> list[str]:
    return conn.data_to_send().decode("utf-8").split("\r\n")[:-1]


def until_pause(conn: ServerConnection, data: bytes = b"") -> list[Event]:
    """Feed ``data`` and collect events up to the first PAUSED or NEED_DATA."""
    if data:
        conn.receive_data(data)
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)


def logged_in(**settings: Any) -> ServerConnection:
    """EHLO and AUTH done on an implicit-TLS connection."""
    settings.setdefault("tls_active", True)
    conn = connect(**settings)
    talk(conn, b"EHLO client.example\r\nAUTH PLAIN " + b64(b"\0user\0pw").encode() + b"\r\n")
    assert conn.authenticated
    return conn


def in_transaction(**settings: Any) -> ServerConnection:
    conn = logged_in(**settings)
    talk(conn, b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
    assert conn.in_transaction
    return conn


def in_data(**settings: Any) -> ServerConnection:
    conn = in_transaction(**settings)
    _, lines = talk(conn, b"DATA\r\n")
    assert lines == ["354 End data with <CR><LF>.<CR><LF>"]
    return conn


def message_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, MessageData))


def kinds(events: list[Event]) -> list[str]:
    return merged_event_names(events)


# ---------------------------------------------------------------- Reply


class TestReply:
    def test_single_line(self) -> None:
        assert Reply(250, "2.1.0", "Sender OK").to_bytes() == b"250 2.1.0 Sender OK\r\n"

    def test_multi_line(self) -> None:
        reply = Reply(250, "2.0.0", ["first", "second", "third"])
        assert reply.to_bytes() == b"250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 third\r\n"

    def test_without_enhanced_code(self) -> None:
        assert Reply(220, "", "mx ESMTP").to_bytes() == b"220 mx ESMTP\r\n"
        assert Reply(250, "", ["a", "b"]).to_bytes() == b"250-a\r\n250 b\r\n"

    def test_empty_challenge_keeps_the_space(self) -> None:
        assert Reply(334, "", "").to_bytes() == b"334 \r\n"

    def test_line_breaks_in_text_cannot_inject_replies(self) -> None:
        reply = Reply(550, "5.0.0", "bad\r\n250 2.0.0 fake")
        assert reply.to_bytes() == b"550 5.0.0 bad  250 2.0.0 fake\r\n"

    def test_sequence_text_is_frozen_and_hashable(self) -> None:
        reply = Reply(250, "", ["a", "b"])
        assert reply.text == ("a", "b")
        assert hash(reply) == hash(Reply(250, "", ("a", "b")))

    @pytest.mark.parametrize(
        ("code", "enhanced"), [(199, ""), (600, ""), (250, "5.0.0"), (550, "5.0"), (550, "x.y.z")]
    )
    def test_invalid_replies_are_refused(self, code: int, enhanced: str) -> None:
        with pytest.raises(ValueError):
            Reply(code, enhanced, "text")

    def test_with_text(self) -> None:
        assert Reply(250, "2.0.0", "a").with_text("b") == Reply(250, "2.0.0", "b")
        assert Reply(250, "2.0.0", "a").with_text(None) == Reply(250, "2.0.0", "a")


# ----------------------------------------------------------- greeting


class TestGreeting:
    def test_start_sends_220(self) -> None:
        conn = ServerConnection(ServerFeatures(HOST))
        assert conn.state is State.NEW
        conn.start()
        assert conn.data_to_send() == b"220 mx.example.test ESMTP smtpgate\r\n"
        assert conn.state is State.COMMAND

    def test_custom_greeting_text(self) -> None:
        conn = ServerConnection(ServerFeatures(HOST, greeting_text="ESMTP ready"))
        conn.start()
        assert conn.data_to_send() == b"220 mx.example.test ESMTP ready\r\n"

    def test_start_twice_is_a_usage_error(self) -> None:
        conn = connect()
        with pytest.raises(ProtocolUsageError):
            conn.start()

    def test_refuse_sends_reply_and_closes(self) -> None:
        conn = ServerConnection(ServerFeatures(HOST))
        conn.refuse(Reply(421, "4.7.0", "Too busy"))
        assert conn.data_to_send() == b"421 4.7.0 Too busy\r\n"
        assert conn.closed and conn.close_after_send()
        conn.receive_data(b"EHLO x\r\n")
        assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b""

    def test_no_processing_before_start(self) -> None:
        conn = ServerConnection(ServerFeatures(HOST))
        conn.receive_data(b"NOOP\r\n")
        assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b""
        conn.start()
        assert talk(conn)[1] == ["220 mx.example.test ESMTP smtpgate", "250 2.0.0 OK"]


# --------------------------------------------------------- line framing


class TestFraming:
    def test_bare_lf_terminated_command_is_refused(self) -> None:
        _events, lines = talk(connect(), b"NOOP\n")
        assert lines == ["500 5.5.2 Bare CR or LF not allowed"]

    def test_bare_cr_inside_command_is_refused(self) -> None:
        _, lines = talk(connect(), b"NO\rOP\r\n")
        assert lines == ["500 5.5.2 Bare CR or LF not allowed"]

    def test_command_split_across_reads(self) -> None:
        conn = connect()
        assert talk(conn, b"NO")[1] == []
        assert talk(conn, b"OP\r")[1] == []
        assert talk(conn, b"\n")[1] == ["250 2.0.0 OK"]

    def test_command_of_exactly_the_limit_is_accepted(self) -> None:
        line = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
        assert len(line) == 512
        assert talk(connect(), line)[1] == ["250 2.0.0 OK"]

    def test_command_over_the_limit_is_refused(self) -> None:
        line = b"NOOP " + b"x" * (513 - 7) + b"\r\n"
        _, lines = talk(connect(), line + b"NOOP\r\n")
        assert lines == ["500 5.5.2 Line too long", "250 2.0.0 OK"]

    def test_overlong_line_is_never_buffered(self) -> None:
        conn = connect()
        for _ in range(100):
            conn.receive_data(b"x" * 1000)
            assert conn.next_event() is NEED_DATA
            assert conn.buffered_bytes <= 512
        _, lines = talk(conn, b"yyy\r\nNOOP\r\n")
        assert lines == ["500 5.5.2 Line too long", "250 2.0.0 OK"]

    def test_auth_line_may_carry_a_large_token(self) -> None:
        secret = "t" * 1400
        line = b"AUTH PLAIN " + b64(b"\0user\0" + secret.encode()).encode() + b"\r\n"
        assert 1400 < len(line) <= 16384
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        events = until_pause(conn, line)
        assert isinstance(events[-1], AuthAttempt)
        assert events[-1].secret == secret

    def test_auth_line_over_its_limit_is_refused(self) -> None:
        conn = connect(tls_active=True, max_auth_line=100)
        talk(conn, b"EHLO c\r\n")
        _, lines = talk(conn, b"AUTH PLAIN " + b"A" * 100 + b"\r\n")
        assert lines == ["500 5.5.2 Line too long"]

    def test_sasl_response_may_be_long(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"AUTH PLAIN\r\n")[1] == ["334 "]
        token = b64(b"\0user\0" + b"s" * 3000).encode()
        events = until_pause(conn, token + b"\r\n")
        assert isinstance(events[-1], AuthAttempt)

    def test_sasl_response_over_limit_aborts_exchange(self) -> None:
        conn = connect(tls_active=True, max_auth_line=64)
        talk(conn, b"EHLO c\r\n")
        talk(conn, b"AUTH LOGIN\r\n")
        _, lines = talk(conn, b"A" * 200 + b"\r\nNOOP\r\n")
        assert lines == ["500 5.5.2 Line too long", "250 2.0.0 OK"]
        assert conn.state is State.COMMAND

    def test_invalid_utf8_command(self) -> None:
        assert talk(connect(), b"NOOP \xff\r\n")[1] == ["500 5.5.2 Invalid UTF-8 in command"]

    def test_commands_are_case_insensitive(self) -> None:
        conn = connect(tls_active=True, require_auth_for_mail=False)
        _, lines = talk(conn, b"ehlo c\r\nmail from:<a@b.example>\r\nrCpT tO:<c@d.example>\r\n")
        assert lines[-2:] == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK"]

    def test_unknown_and_empty_commands(self) -> None:
        _, lines = talk(connect(), b"FOO\r\n\r\n")
        assert lines == ["500 5.5.2 Command not recognized"] * 2


# ------------------------------------------------------- EHLO and HELO


class TestHello:
    def test_ehlo_plaintext_with_starttls(self) -> None:
        events, lines = talk(connect(), b"EHLO client.example\r\n")
        assert lines == [
            "250-mx.example.test",
            "250-PIPELINING",
            "250-SIZE 26214400",
            "250-8BITMIME",
            "250-ENHANCEDSTATUSCODES",
            "250-SMTPUTF8",
            "250-CHUNKING",
            "250 STARTTLS",
        ]
        assert events == [Hello("client.example", True)]

    def test_ehlo_with_tls_advertises_auth_not_starttls(self) -> None:
        _, lines = talk(connect(tls_active=True), b"EHLO c\r\n")
        assert "250-STARTTLS" not in lines and "250 STARTTLS" not in lines
        assert lines[-1] == "250 AUTH PLAIN LOGIN"

    def test_ehlo_auth_in_plaintext_when_tls_not_required(self) -> None:
        _, lines = talk(connect(require_tls_for_auth=False), b"EHLO c\r\n")
        assert lines[-2:] == ["250-STARTTLS", "250 AUTH PLAIN LOGIN"]

    def test_ehlo_without_starttls_support(self) -> None:
        _, lines = talk(connect(starttls_available=False), b"EHLO c\r\n")
        assert lines[-1] == "250 CHUNKING"

    def test_ehlo_size_follows_limit(self) -> None:
        _, lines = talk(connect(max_message_size=1000), b"EHLO c\r\n")
        assert "250-SIZE 1000" in lines

    def test_ehlo_lists_only_configured_known_mechanisms(self) -> None:
        conn = connect(tls_active=True, auth_mechanisms=("login", "CRAM-MD5"))
        assert talk(conn, b"EHLO c\r\n")[1][-1] == "250 AUTH LOGIN"

    def test_ehlo_without_mechanisms_has_no_auth_line(self) -> None:
        conn = connect(tls_active=True, auth_mechanisms=())
        assert talk(conn, b"EHLO c\r\n")[1][-1] == "250 CHUNKING"

    def test_helo(self) -> None:
        conn = connect()
        events, lines = talk(conn, b"HELO client.example\r\n")
        assert lines == ["250 mx.example.test"]
        assert events == [Hello("client.example", False)]
        assert conn.helo_name == "client.example"

    @pytest.mark.parametrize("command", [b"EHLO", b"EHLO ", b"EHLO \x01"])
    def test_ehlo_needs_a_name(self, command: bytes) -> None:
        assert talk(connect(), command + b"\r\n")[1] == ["501 5.5.4 Syntax: EHLO hostname"]

    def test_helo_needs_a_name(self) -> None:
        assert talk(connect(), b"HELO\r\n")[1] == ["501 5.5.4 Syntax: HELO hostname"]

    def test_ehlo_mid_transaction_resets_it(self) -> None:
        conn = in_transaction()
        events, _lines = talk(conn, b"EHLO again\r\n")
        assert kinds(events) == ["Reset", "Hello"]
        assert not conn.in_transaction
        assert conn.authenticated


# ------------------------------------------------------------ STARTTLS


class TestStartTLS:
    def test_starttls_discards_pipelined_plaintext(self) -> None:
        conn = connect()
        events, lines = talk(conn, b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        assert lines[-1] == "220 2.0.0 Ready to start TLS"
        assert events[-1] == StartTLS()
        assert conn.state is State.TLS_PENDING
        assert conn.discarded_after_starttls == len(b"MAIL FROM:<evil@example.org>\r\n")
        conn.receive_data(b"RCPT TO:<victim@example.net>\r\n")
        assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b""
        conn.tls_established()
        assert conn.tls_active and conn.state is State.COMMAND
        assert conn.helo_name is None and not conn.authenticated
        assert talk(conn, b"MAIL FROM:<a@example.org>\r\n")[1] == [
            "503 5.5.1 Send HELO/EHLO first"
        ]

    def test_starttls_before_ehlo_is_fine(self) -> None:
        conn = connect()
        events, lines = talk(conn, b"STARTTLS\r\n")
        assert lines == ["220 2.0.0 Ready to start TLS"] and events == [StartTLS()]

    def test_starttls_resets_authentication_and_transaction(self) -> None:
        conn = in_transaction(tls_active=False, require_tls_for_auth=False)
        events, _ = talk(conn, b"STARTTLS\r\n")
        assert kinds(events) == ["Reset", "StartTLS"]
        conn.tls_established()
        assert not conn.authenticated and not conn.in_transaction

    def test_starttls_when_active(self) -> None:
        assert talk(connect(tls_active=True), b"STARTTLS\r\n")[1] == [
            "503 5.5.1 TLS already active"
        ]

    def test_starttls_not_available(self) -> None:
        assert talk(connect(starttls_available=False), b"STARTTLS\r\n")[1] == [
            "454 4.7.0 TLS not available"
        ]

    def test_starttls_with_parameters(self) -> None:
        assert talk(connect(), b"STARTTLS now\r\n")[1] == ["501 5.5.4 Syntax: STARTTLS"]

    def test_tls_established_out_of_order(self) -> None:
        with pytest.raises(ProtocolUsageError):
            connect().tls_established()

    def test_eof_while_waiting_for_handshake(self) -> None:
        conn = connect()
        talk(conn, b"STARTTLS\r\n")
        conn.receive_data(b"")
        assert talk(conn)[0] == [ConnectionLost()]
        assert conn.closed


# ---------------------------------------------------------------- AUTH


PLAIN_OK = b"AUTH PLAIN " + b64(b"\0user\0pw").encode() + b"\r\n"


class TestAuth:
    def test_before_ehlo(self) -> None:
        assert talk(connect(tls_active=True), PLAIN_OK)[1] == ["503 5.5.1 Send EHLO first"]

    def test_after_helo_only(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"HELO c\r\n")
        assert talk(conn, PLAIN_OK)[1] == ["503 5.5.1 Send EHLO first"]

    def test_before_tls(self) -> None:
        conn = connect()
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, PLAIN_OK)[1] == ["530 5.7.0 Must issue a STARTTLS command first"]

    def test_plaintext_allowed_when_configured(self) -> None:
        conn = connect(require_tls_for_auth=False)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, PLAIN_OK)[1] == ["235 2.7.0 Authentication successful"]

    def test_success(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        events = until_pause(conn, PLAIN_OK)
        assert events == [AuthAttempt("PLAIN", "", "user", "pw")]
        assert conn.next_event() is PAUSED
        assert not conn.authenticated
        conn.accept()
        assert replies(conn) == ["235 2.7.0 Authentication successful"]
        assert conn.authenticated

    def test_accept_text_override(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        until_pause(conn, PLAIN_OK)
        conn.accept("Welcome")
        assert replies(conn) == ["235 2.7.0 Welcome"]

    @pytest.mark.parametrize(
        "reply",
        [
            AUTH_CREDENTIALS_INVALID,
            Reply(534, "5.7.9", "Authentication mechanism is too weak"),
            Reply(454, "4.7.0", "Temporary authentication failure"),
        ],
    )
    def test_rejected(self, reply: Reply) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        _, lines = talk(conn, PLAIN_OK, decide=lambda event: reply)
        assert lines == [reply.to_bytes().decode().rstrip("\r\n")]
        assert not conn.authenticated
        assert conn.error_count == 0

    def test_authzid_is_passed_through(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        line = b"AUTH PLAIN " + b64(b"admin\0user\0pw").encode() + b"\r\n"
        assert until_pause(conn, line)[-1] == AuthAttempt("PLAIN", "admin", "user", "pw")

    def test_utf8_credentials(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        line = b"AUTH PLAIN " + b64("\0jos\u00e9\0p\u00e4ss".encode()).encode() + b"\r\n"
        assert until_pause(conn, line)[-1] == AuthAttempt("PLAIN", "", "jos\u00e9", "p\u00e4ss")

    def test_already_authenticated(self) -> None:
        assert talk(logged_in(), PLAIN_OK)[1] == ["503 5.5.1 Already authenticated"]

    def test_during_transaction(self) -> None:
        conn = connect(tls_active=True, require_auth_for_mail=False)
        talk(conn, b"EHLO c\r\nMAIL FROM:<a@example.org>\r\n")
        assert talk(conn, PLAIN_OK)[1] == ["503 5.5.1 AUTH not allowed during a mail transaction"]

    @pytest.mark.parametrize("command", [b"AUTH CRAM-MD5", b"AUTH XOAUTH2 dG9rZW4="])
    def test_unknown_mechanism(self, command: bytes) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, command + b"\r\n")[1] == ["504 5.5.4 Unrecognized authentication type"]

    def test_mechanism_not_enabled(self) -> None:
        conn = connect(tls_active=True, auth_mechanisms=("PLAIN",))
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"AUTH LOGIN\r\n")[1] == ["504 5.5.4 Unrecognized authentication type"]

    @pytest.mark.parametrize("command", [b"AUTH", b"AUTH ", b"AUTH PLAIN a b"])
    def test_syntax(self, command: bytes) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, command + b"\r\n")[1] == [
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]"
        ]

    def test_mechanism_name_is_case_insensitive(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"auth login\r\n")[1] == ["334 VXNlcm5hbWU6"]

    @pytest.mark.parametrize("response", [b"!!!!", b"QQ", b"QQ==QQ==", b"QQ=", b"="])
    def test_undecodable_initial_response(self, response: bytes) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        expected = "501 5.5.2 Invalid PLAIN response" if response == b"=" else (
            "501 5.5.2 Cannot decode response"
        )
        assert talk(conn, b"AUTH PLAIN " + response + b"\r\n")[1] == [expected]

    def test_undecodable_response(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\nAUTH PLAIN\r\n")
        assert talk(conn, b"%%%\r\n")[1] == ["501 5.5.2 Cannot decode response"]
        assert conn.state is State.COMMAND

    def test_cancel(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"AUTH PLAIN\r\n")[1] == ["334 "]
        assert talk(conn, b"*\r\n")[1] == ["501 5.0.0 Authentication cancelled"]
        assert conn.state is State.COMMAND and not conn.authenticated

    def test_plain_without_initial_response(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        conn.receive_data(b"AUTH PLAIN\r\n")
        assert conn.next_event() is NEED_DATA
        assert conn.data_to_send() == b"334 \r\n"
        assert conn.state is State.AUTH
        events = until_pause(conn, b64(b"\0user\0pw").encode() + b"\r\n")
        assert events == [AuthAttempt("PLAIN", "", "user", "pw")]

    @pytest.mark.parametrize(
        "message",
        [b"", b"user\0pw", b"\0\0pw", b"\0user\0", b"a\0b\0c\0d", b"\0us\xffer\0pw"],
        ids=["empty", "two-fields", "empty-login", "empty-password", "four-fields", "bad-utf8"],
    )
    def test_malformed_plain(self, message: bytes) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        line = b"AUTH PLAIN " + (b64(message).encode() if message else b"=") + b"\r\n"
        (reply,) = talk(conn, line)[1]
        assert reply.startswith("501 5.5.2 ")
        assert not conn.authenticated

    def test_login_flow(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"AUTH LOGIN\r\n")[1] == ["334 VXNlcm5hbWU6"]
        assert talk(conn, b64(b"user").encode() + b"\r\n")[1] == ["334 UGFzc3dvcmQ6"]
        events = until_pause(conn, b64(b"pw").encode() + b"\r\n")
        assert events == [AuthAttempt("LOGIN", "", "user", "pw")]

    def test_login_with_initial_response(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"AUTH LOGIN " + b64(b"user").encode() + b"\r\n")[1] == [
            "334 UGFzc3dvcmQ6"
        ]

    def test_login_empty_username(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\nAUTH LOGIN\r\n")
        assert talk(conn, b"\r\n")[1] == ["501 5.5.2 Invalid LOGIN username"]

    def test_reject_with_challenge(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        until_pause(conn, PLAIN_OK)
        conn.reject(AUTH_CREDENTIALS_INVALID, challenge=b'{"status":"401"}')
        assert replies(conn) == ["334 " + b64(b'{"status":"401"}')]
        assert conn.state is State.AUTH_FAILURE
        assert talk(conn, b"AQ==\r\n")[1] == ["535 5.7.8 Authentication credentials invalid"]
        assert conn.state is State.COMMAND and not conn.authenticated

    def test_reject_with_challenge_any_line_ends_it(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        until_pause(conn, PLAIN_OK)
        conn.reject(AUTH_CREDENTIALS_INVALID, challenge=b"x")
        replies(conn)
        assert talk(conn, b"*\r\nNOOP\r\n")[1] == [
            "535 5.7.8 Authentication credentials invalid",
            "250 2.0.0 OK",
        ]

    def test_secret_never_shown(self) -> None:
        attempt = AuthAttempt("PLAIN", "", "user", "hunter2")
        assert "hunter2" not in repr(attempt) and "hunter2" not in str(attempt)
        assert "redacted" in repr(attempt)
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        _, lines = talk(conn, b"AUTH PLAIN " + b64(b"\0user\0hunter2").encode() + b"\r\n",
                        decide=lambda event: AUTH_CREDENTIALS_INVALID)
        assert not any("hunter2" in line or b64(b"\0user\0hunter2") in line for line in lines)

    def test_pipelined_commands_wait_for_the_decision(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        events = until_pause(conn, PLAIN_OK + b"MAIL FROM:<a@example.org>\r\n")
        assert isinstance(events[-1], AuthAttempt)
        assert conn.next_event() is PAUSED
        assert conn.data_to_send() == b""
        conn.accept()
        events = until_pause(conn)
        assert events == [MailFrom("a@example.org", {})]
        assert replies(conn) == ["235 2.7.0 Authentication successful"]


# ---------------------------------------------------------------- MAIL


class TestMail:
    def test_before_helo(self) -> None:
        conn = connect(tls_active=True)
        assert talk(conn, b"MAIL FROM:<a@example.org>\r\n")[1] == [
            "503 5.5.1 Send HELO/EHLO first"
        ]

    def test_before_tls(self) -> None:
        conn = connect()
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"MAIL FROM:<a@example.org>\r\n")[1] == [
            "530 5.7.0 Must issue a STARTTLS command first"
        ]

    def test_without_auth(self) -> None:
        conn = connect(tls_active=True)
        talk(conn, b"EHLO c\r\n")
        assert talk(conn, b"MAIL FROM:<a@example.org>\r\n")[1] == [
            "530 5.7.0 Authentication required"
        ]

    def test_without_auth_when_not_required(self) -> None:
        conn = connect(require_auth_for_mail=False)
        _events, lines = talk(conn, b"HELO c\r\nMAIL FROM:<a@example.org>\r\n")
        assert lines[-1] == "250 2.1.0 Sender OK" and conn.in_transaction

    def test_nested(self) -> None:
        conn = in_transaction()
        assert talk(conn, b"MAIL FROM:<a@example.org>\r\n")[1] == [
            "503 5.5.1 Sender already specified"
        ]

    @pytest.mark.parametrize(
        ("argument", "address"),
        [
            (b"FROM:<a@example.org>", "a@example.org"),
            (b"FROM: <a@example.org>", "a@example.org"),
            (b"from:<A.B+tag@Example.ORG>", "A.B+tag@Example.ORG"),
            (b"FROM:<>", ""),
            (b'FROM:<"john doe"@example.org>', '"john doe"@example.org'),
            (b'FROM:<"odd>char\\"s"@example.org>', '"odd>char\\"s"@example.org'),
            (b"FROM:<user@[192.0.2.1]>", "user@[192.0.2.1]"),
            (b"FROM:<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
            (b"FROM:<@relay.example,@other.example:a@example.org>", "a@example.org"),
        ],
    )
    def test_accepted_syntax(self, argument: bytes, address: str) -> None:
        conn = logged_in()
        events = until_pause(conn, b"MAIL " + argument + b"\r\n")
        assert events == [MailFrom(address, {})]

    @pytest.mark.parametrize(
        "argument",
        [
            b"",
            b"FROM:",
            b"FROM:a@example.org",
            b"TO:<a@example.org>",
            b"FROM:<a@example.org",
            b"FROM:<a@example.org>SIZE=10",
            b"FROM:  <a@example.org>",
            b"FROM:<a@example.org> SIZE=",
            b"FROM:<a@example.org> =1",
            b"FROM:<a@example.org> SIZE=1 SIZE=2",
        ],
    )
    def test_syntax_errors(self, argument: bytes) -> None:
        assert talk(logged_in(), b"MAIL " + argument + b"\r\n")[1] == [
            "501 5.5.4 Syntax: MAIL FROM:<address>"
        ]

    @pytest.mark.parametrize(
        "address",
        [b"nobody", b"a b@example.org", b"a@b@example.org", b"a\x01@example.org",
         b"@example.org", b"a@", b"a@exa mple.org", b"a@.example.org", b"postmaster"],
    )
    def test_bad_sender_address(self, address: bytes) -> None:
        assert talk(logged_in(), b"MAIL FROM:<" + address + b">\r\n")[1] == [
            "501 5.1.7 Bad sender address syntax"
        ]

    def test_params_are_upper_cased(self) -> None:
        events = until_pause(
            logged_in(), b"MAIL FROM:<a@example.org> size=100 body=8bitmime  auth=<>\r\n"
        )
        assert events == [
            MailFrom("a@example.org", {"SIZE": "100", "BODY": "8bitmime", "AUTH": "<>"})
        ]

    def test_utf8_sender_with_smtputf8(self) -> None:
        line = "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\n".encode()
        events = until_pause(logged_in(), line)
        assert events == [MailFrom("j\u00f6rg@b\u00fccher.example", {"SMTPUTF8": None})]

    def test_utf8_sender_without_smtputf8(self) -> None:
        line = "MAIL FROM:<j\u00f6rg@example.org>\r\n".encode()
        assert talk(logged_in(), line)[1] == ["553 5.6.7 Non-ASCII address requires SMTPUTF8"]

    def test_size_over_the_maximum(self) -> None:
        conn = logged_in(max_message_size=1000)
        assert talk(conn, b"MAIL FROM:<a@example.org> SIZE=1001\r\n")[1] == [
            "552 5.3.4 Message size exceeds fixed maximum message size"
        ]
        assert talk(conn, b"MAIL FROM:<a@example.org> SIZE=1000\r\n")[1] == [
            "250 2.1.0 Sender OK"
        ]

    @pytest.mark.parametrize(
        ("param", "reply"),
        [
            (b"SIZE=abc", "501 5.5.4 Syntax: SIZE=<octets>"),
            (b"SIZE", "501 5.5.4 Syntax: SIZE=<octets>"),
            (b"BODY=BINARYMIME", "501 5.5.4 Syntax: BODY=7BIT|8BITMIME"),
            (b"SMTPUTF8=yes", "501 5.5.4 Syntax: SMTPUTF8 takes no value"),
            (b"RET=FULL", "555 5.5.4 Unsupported parameter"),
            (b"XFOO", "555 5.5.4 Unsupported parameter"),
        ],
    )
    def test_bad_params(self, param: bytes, reply: str) -> None:
        assert talk(logged_in(), b"MAIL FROM:<a@example.org> " + param + b"\r\n")[1] == [reply]

    def test_rejected_by_application(self) -> None:
        conn = logged_in()
        reply = Reply(550, "5.7.1", "Sender not allowed for this login")
        _, lines = talk(conn, b"MAIL FROM:<a@example.org>\r\n", decide=lambda event: reply)
        assert lines == ["550 5.7.1 Sender not allowed for this login"]
        assert not conn.in_transaction and conn.error_count == 0

    def test_accept_text_override(self) -> None:
        conn = logged_in()
        until_pause(conn, b"MAIL FROM:<a@example.org>\r\n")
        conn.accept("Sender looks fine")
        assert replies(conn) == ["250 2.1.0 Sender looks fine"]


# ---------------------------------------------------------------- RCPT


class TestRcpt:
    def test_without_mail(self) -> None:
        assert talk(logged_in(), b"RCPT TO:<b@example.net>\r\n")[1] == [
            "503 5.5.1 Need MAIL before RCPT"
        ]

    @pytest.mark.parametrize(
        "argument", [b"TO:b@example.net", b"FROM:<b@example.net>", b"TO:<b@example.net", b""]
    )
    def test_syntax(self, argument: bytes) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        assert talk(conn, b"RCPT " + argument + b"\r\n")[1] == [
            "501 5.5.4 Syntax: RCPT TO:<address>"
        ]

    @pytest.mark.parametrize("address", [b"", b"nobody", b"a b@example.net", b"a@"])
    def test_bad_recipient_address(self, address: bytes) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        assert talk(conn, b"RCPT TO:<" + address + b">\r\n")[1] == [
            "501 5.1.3 Bad recipient address syntax"
        ]

    @pytest.mark.parametrize("address", ["postmaster", "PostMaster"])
    def test_postmaster_without_domain(self, address: str) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        events = until_pause(conn, f"RCPT TO:<{address}>\r\n".encode())
        assert events == [RcptTo(address, {})]

    def test_params_unsupported(self) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        assert talk(conn, b"RCPT TO:<b@example.net> NOTIFY=NEVER\r\n")[1] == [
            "555 5.5.4 Unsupported parameter"
        ]

    def test_utf8_recipient_needs_smtputf8_transaction(self) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        line = "RCPT TO:<\u00fcser@example.net>\r\n".encode()
        assert talk(conn, line)[1] == ["553 5.6.7 Non-ASCII address requires SMTPUTF8"]
        talk(conn, b"RSET\r\nMAIL FROM:<a@example.org> SMTPUTF8\r\n")
        assert until_pause(conn, line) == [RcptTo("\u00fcser@example.net", {})]

    def test_too_many_recipients(self) -> None:
        conn = logged_in(max_recipients=2)
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        rejected = Reply(550, "5.1.1", "No such user")

        def decide(event: DecisionEvent) -> Reply | None:
            return rejected if isinstance(event, RcptTo) and event.address.startswith("x") else None

        events, lines = talk(
            conn,
            b"RCPT TO:<x@example.net>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
            b"RCPT TO:<d@example.net>\r\n",
            decide=decide,
        )
        assert lines == [
            "550 5.1.1 No such user",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "452 4.5.3 Too many recipients",
        ]
        assert [e.address for e in events if isinstance(e, RcptTo)] == [
            "x@example.net", "b@example.net", "c@example.net",
        ]


# ---------------------------------------------------------------- DATA


class TestData:
    def test_without_mail(self) -> None:
        assert talk(logged_in(), b"DATA\r\n")[1] == ["503 5.5.1 Need MAIL command"]

    def test_without_recipients(self) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        assert talk(conn, b"DATA\r\n")[1] == ["554 5.5.1 No valid recipients"]

    def test_with_argument(self) -> None:
        assert talk(in_transaction(), b"DATA now\r\n")[1] == ["501 5.5.4 Syntax: DATA"]

    def test_data_start_is_a_decision(self) -> None:
        conn = in_transaction()
        assert until_pause(conn, b"DATA\r\n") == [DataStart("DATA")]
        assert conn.next_event() is PAUSED
        conn.accept()
        assert replies(conn) == ["354 End data with <CR><LF>.<CR><LF>"]
        assert conn.state is State.DATA

    def test_data_start_rejected_keeps_transaction(self) -> None:
        conn = in_transaction()
        reply = Reply(451, "4.7.1", "Rate limited")
        _, lines = talk(conn, b"DATA\r\n", decide=lambda event: reply)
        assert lines == ["451 4.7.1 Rate limited"]
        assert conn.in_transaction and conn.state is State.COMMAND

    def test_message_complete(self) -> None:
        conn = in_data()
        events = until_pause(conn, b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert events == [MessageData(b"Subject: x\r\n\r\nbody\r\n"), MessageComplete()]
        assert conn.in_transaction
        conn.accept()
        assert replies(conn) == ["250 2.0.0 Ok: queued"]
        assert not conn.in_transaction

    def test_message_complete_text_override(self) -> None:
        conn = in_data()
        until_pause(conn, b"x\r\n.\r\n")
        conn.accept("Ok: queued as 1234")
        assert replies(conn) == ["250 2.0.0 Ok: queued as 1234"]

    def test_message_rejected_by_application(self) -> None:
        conn = in_data()
        reply = Reply(554, "5.7.1", "Spam")
        _, lines = talk(conn, b"x\r\n.\r\n", decide=lambda event: reply)
        assert lines == ["554 5.7.1 Spam"]
        assert not conn.in_transaction and conn.error_count == 0

    def test_empty_message(self) -> None:
        conn = in_data()
        events = until_pause(conn, b".\r\n")
        assert events == [MessageComplete()]

    def test_first_line_may_follow_354_in_the_same_packet(self) -> None:
        conn = in_transaction()
        events, lines = talk(conn, b"DATA\r\nhello\r\n.\r\nNOOP\r\n")
        assert message_of(events) == b"hello\r\n"
        assert lines == [
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued",
            "250 2.0.0 OK",
        ]

    def test_dot_unstuffing(self) -> None:
        events, _ = talk(in_data(), b"..\r\n...x\r\n.y\r\na.b\r\n\r\n..\r\n.\r\n")
        assert message_of(events) == b".\r\n..x\r\ny\r\na.b\r\n\r\n.\r\n"

    def test_complete_lines_of_one_read_are_merged(self) -> None:
        conn = in_data()
        events = until_pause(conn, b"a\r\nb\r\nc\r\npartial")
        assert events == [MessageData(b"a\r\nb\r\nc\r\n")]
        events = until_pause(conn, b" line\r\n.\r\n")
        assert events == [MessageData(b"partial line\r\n"), MessageComplete()]

    @pytest.mark.parametrize("split", range(1, 12))
    def test_terminator_split_anywhere(self, split: int) -> None:
        data = b"line\r\n.\r\nNOOP\r\n"
        conn = in_data()
        events, lines = talk(conn, data[:split])
        more, more_lines = talk(conn, data[split:])
        events += more
        assert message_of(events) == b"line\r\n"
        assert [e for e in events if isinstance(e, MessageComplete)] == [MessageComplete()]
        assert lines + more_lines == ["250 2.0.0 Ok: queued", "250 2.0.0 OK"]

    @pytest.mark.parametrize(
        "content",
        [b"a\n.\nb\r\n", b"a\r.\rb\r\n", b"a\r\n.\nb\r\n", b"a\n.\r\nb\r\n", b"a\rb\r\n",
         b"a\nb\r\n", b"\n", b"\r\r\n", b"end\r"],
        ids=["lf-dot-lf", "cr-dot-cr", "crlf-dot-lf", "lf-dot-crlf", "cr", "lf", "lf-only",
             "cr-crlf", "trailing-cr"],
    )
    def test_bare_cr_or_lf_is_refused(self, content: bytes) -> None:
        conn = in_data()
        events, lines = talk(conn, content + b"\r\n.\r\nNOOP\r\n")
        reply = Reply(550, "5.6.0", "Message contains a bare CR or LF, refused (SMTP smuggling "
                      "defence)")
        assert events[-1] == MessageRejected(reply)
        assert MessageComplete() not in events
        assert lines == [reply.to_bytes().decode().rstrip("\r\n"), "250 2.0.0 OK"]
        assert not conn.in_transaction

    @pytest.mark.parametrize(
        "content",
        [b"a\x00b\r\n", b"\x00\r\n", b"\r\n\x00\r\n", b"ok\r\nend\x00"],
        ids=["inside", "alone", "the-smuggling-form", "unterminated"],
    )
    def test_nul_is_refused(self, content: bytes) -> None:
        """A hop that strips NULs would turn CRLF NUL . CRLF into an end of data."""
        conn = in_data()
        events, lines = talk(conn, content + b"\r\n.\r\nNOOP\r\n")
        reply = Reply(550, "5.6.0", "Message contains a NUL octet, refused")
        assert events[-1] == MessageRejected(reply)
        assert MessageComplete() not in events
        assert lines == ["550 5.6.0 Message contains a NUL octet, refused", "250 2.0.0 OK"]

    def test_nul_inside_a_skipped_long_line_is_found(self) -> None:
        conn = in_data()
        talk(conn, b"x" * 1500)
        _events, lines = talk(conn, b"x\x00x\r\n.\r\n")
        assert lines == ["550 5.6.0 Message contains a NUL octet, refused"]

    def test_bare_lf_outranks_nul(self) -> None:
        _events, lines = talk(in_data(), b"a\x00\r\nb\nc\r\n.\r\n")
        assert lines[0].startswith("550 5.6.0 Message contains a bare CR or LF")

    def test_no_message_data_after_a_violation(self) -> None:
        conn = in_data()
        events, _ = talk(conn, b"good\r\n")
        assert events == [MessageData(b"good\r\n")]
        events, _ = talk(conn, b"bad\n")
        events2, _ = talk(conn, b"more good\r\n")
        events3, lines = talk(conn, b".\r\n")
        assert events == [] and events2 == []
        assert isinstance(events3[0], MessageRejected)
        assert lines[0].startswith("550 5.6.0 ")

    def test_line_of_998_octets_is_fine(self) -> None:
        events, _ = talk(in_data(), b"x" * 998 + b"\r\n." + b"y" * 998 + b"\r\n.\r\n")
        assert message_of(events) == b"x" * 998 + b"\r\n" + b"y" * 998 + b"\r\n"

    def test_line_of_999_octets_is_refused(self) -> None:
        events, lines = talk(in_data(), b"x" * 999 + b"\r\n.\r\n")
        assert events == [MessageRejected(Reply(550, "5.6.0",
                                                 "Line too long (RFC 5322 limit is 998 octets)"))]
        assert lines == ["550 5.6.0 Line too long (RFC 5322 limit is 998 octets)"]

    def test_very_long_line_is_streamed_away(self) -> None:
        conn = in_data()
        talk(conn, b"ok\r\n")
        for _ in range(50):
            events, lines = talk(conn, b"z" * 4000)
            assert events == [] and lines == []
            assert conn.buffered_bytes <= 1001
        events, lines = talk(conn, b"\r\nafter\r\n.\r\n")
        assert [type(e) for e in events] == [MessageRejected]
        assert lines == ["550 5.6.0 Line too long (RFC 5322 limit is 998 octets)"]

    def test_long_line_ending_exactly_at_a_read_boundary(self) -> None:
        conn = in_data()
        talk(conn, b"z" * 3000 + b"\r")
        events, _lines = talk(conn, b"\n.\r\n")
        assert [type(e) for e in events] == [MessageRejected]

    def test_message_too_big(self) -> None:
        conn = in_data(max_message_size=100)
        events, lines = talk(conn, b"a" * 50 + b"\r\n")
        assert message_of(events) == b"a" * 50 + b"\r\n"
        events, lines = talk(conn, b"b" * 50 + b"\r\n")
        assert events == [] and lines == []
        events, lines = talk(conn, b".\r\n")
        assert events == [MessageRejected(Reply(552, "5.3.4", "Message too big for system"))]
        assert lines == ["552 5.3.4 Message too big for system"]

    def test_size_counts_after_unstuffing(self) -> None:
        conn = in_data(max_message_size=6)
        events, lines = talk(conn, b"..abc\r\n.\r\n")
        assert message_of(events) == b".abc\r\n"
        assert lines == ["250 2.0.0 Ok: queued"]

    def test_bare_lf_inside_a_skipped_long_line_wins(self) -> None:
        conn = in_data()
        talk(conn, b"x" * 1500)
        _events, lines = talk(conn, b"x\nx\r\n.\r\n")
        assert lines == [
            "550 5.6.0 Message contains a bare CR or LF, refused (SMTP smuggling defence)"
        ]

    def test_bare_lf_after_size_violation_wins(self) -> None:
        conn = in_data(max_message_size=10)
        talk(conn, b"a" * 20 + b"\r\n")
        _, lines = talk(conn, b"b\nc\r\n.\r\n")
        assert lines[0].startswith("550 5.6.0 Message contains a bare CR or LF")

    def test_long_line_after_size_violation_wins(self) -> None:
        conn = in_data(max_message_size=10)
        talk(conn, b"a" * 20 + b"\r\n")
        _, lines = talk(conn, b"b" * 1200 + b"\r\n.\r\n")
        assert lines == ["550 5.6.0 Line too long (RFC 5322 limit is 998 octets)"]

    def test_bare_lf_is_not_downgraded_by_a_later_long_line(self) -> None:
        conn = in_data()
        talk(conn, b"a\nb\r\n")
        talk(conn, b"x" * 1500)
        _, lines = talk(conn, b"\r\n.\r\n")
        assert lines[0].startswith("550 5.6.0 Message contains a bare CR or LF")

    def test_session_continues_after_a_refused_message(self) -> None:
        conn = in_data()
        talk(conn, b"bad\rline\r\n.\r\n")
        _events, lines = talk(conn, b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n")
        assert lines == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK"]

    def test_eof_during_data(self) -> None:
        conn = in_data()
        talk(conn, b"partial")
        conn.receive_data(b"")
        assert talk(conn)[0] == [ConnectionLost()]
        assert conn.closed


# ---------------------------------------------------------------- BDAT


class TestBdat:
    def test_single_last_chunk(self) -> None:
        conn = in_transaction()
        events = until_pause(conn, b"BDAT 4 LAST\r\nhi\r\n")
        assert events == [DataStart("BDAT")]
        conn.accept()
        events = until_pause(conn)
        assert events == [MessageData(b"hi\r\n"), MessageComplete()]
        assert conn.data_to_send() == b""
        conn.accept()
        assert replies(conn) == ["250 2.0.0 Ok: queued"]

    def test_chunk_size_includes_the_crlf(self) -> None:
        conn = in_transaction()
        events, _lines = talk(conn, b"BDAT 4 LAST\r\nhi\r\n")
        assert message_of(events) == b"hi\r\n"

    def test_chunks_across_reads_and_no_unstuffing(self) -> None:
        conn = in_transaction()
        events, lines = talk(conn, b"BDAT 9\r\n.a\r\n")
        assert lines == []
        more, lines = talk(conn, b"..b\r\n")
        events += more
        assert lines == ["250 2.0.0 9 octets received"]
        more, lines = talk(conn, b"bdat 3 last\r\nc\r\n")
        events += more
        assert message_of(events) == b".a\r\n..b\r\nc\r\n"
        assert kinds(events) == ["DataStart", "MessageData", "MessageComplete"]
        assert lines == ["250 2.0.0 Ok: queued"]

    def test_line_split_between_chunks(self) -> None:
        conn = in_transaction()
        events, lines = talk(conn, b"BDAT 3\r\nab\rBDAT 3 LAST\r\n\ncd")
        assert message_of(events) == b"ab\r\ncd"
        assert lines == ["250 2.0.0 3 octets received", "250 2.0.0 Ok: queued"]

    def test_chunk_content_is_never_a_command(self) -> None:
        conn = logged_in()
        _events, lines = talk(conn, b"BDAT 6\r\nQUIT\r\nNOOP\r\n")
        assert lines == ["503 5.5.1 Need MAIL command", "250 2.0.0 OK"]
        assert not conn.closed

    def test_without_recipients(self) -> None:
        conn = logged_in()
        talk(conn, b"MAIL FROM:<a@example.org>\r\n")
        assert talk(conn, b"BDAT 2\r\nab")[1] == ["503 5.5.1 Need RCPT command"]

    @pytest.mark.parametrize("argument", [b"", b" x", b" -1", b" 5 MORE", b" 5 LAST x", b" 1e3"])
    def test_bad_size(self, argument: bytes) -> None:
        assert talk(in_transaction(), b"BDAT" + argument + b"\r\n")[1] == [
            "501 5.5.4 Syntax: BDAT size [LAST]"
        ]

    def test_data_start_only_for_the_first_chunk(self) -> None:
        conn = in_transaction()
        events, _ = talk(conn, b"BDAT 1\r\naBDAT 1\r\nbBDAT 1 LAST\r\nc")
        assert kinds(events) == ["DataStart", "MessageData", "MessageComplete"]

    def test_rejected_chunk_is_consumed_and_transaction_ends(self) -> None:
        conn = in_transaction()
        reply = Reply(452, "4.3.1", "Insufficient storage")
        events, lines = talk(conn, b"BDAT 6\r\nQUIT\r\nNOOP\r\n", decide=lambda event: reply)
        assert lines == ["452 4.3.1 Insufficient storage", "250 2.0.0 OK"]
        assert kinds(events) == ["DataStart"]
        assert not conn.in_transaction and conn.error_count == 0

    def test_data_after_bdat(self) -> None:
        conn = in_transaction()
        talk(conn, b"BDAT 2\r\nab")
        assert talk(conn, b"DATA\r\n")[1] == ["503 5.5.1 DATA not allowed after BDAT"]

    def test_rcpt_after_bdat(self) -> None:
        conn = in_transaction()
        talk(conn, b"BDAT 2\r\nab")
        assert talk(conn, b"RCPT TO:<c@example.net>\r\n")[1] == [
            "503 5.5.1 RCPT not allowed after BDAT"
        ]

    def test_bare_lf_refused_at_last(self) -> None:
        conn = in_transaction()
        events, lines = talk(conn, b"BDAT 4\r\na\nb\n")
        assert lines == ["250 2.0.0 4 octets received"]
        events, lines = talk(conn, b"BDAT 0 LAST\r\n")
        assert kinds(events) == ["MessageRejected"]
        assert lines == [
            "550 5.6.0 Message contains a bare CR or LF, refused (SMTP smuggling defence)"
        ]
        assert not conn.in_transaction

    def test_trailing_cr_at_last_is_bare(self) -> None:
        events, _lines = talk(in_transaction(), b"BDAT 3 LAST\r\nab\r")
        assert kinds(events) == ["DataStart", "MessageRejected"]

    def test_too_big(self) -> None:
        conn = in_transaction(max_message_size=10)
        events, lines = talk(conn, b"BDAT 8\r\n123456\r\nBDAT 8 LAST\r\n123456\r\n")
        assert kinds(events) == ["DataStart", "MessageData", "MessageRejected"]
        assert lines == ["250 2.0.0 8 octets received", "552 5.3.4 Message too big for system"]

    def test_long_line(self) -> None:
        events, lines = talk(in_transaction(), b"BDAT 2000 LAST\r\n" + b"x" * 2000)
        assert kinds(events) == ["DataStart", "MessageRejected"]
        assert lines == ["550 5.6.0 Line too long (RFC 5322 limit is 998 octets)"]

    def test_long_line_spanning_reads_then_normal_lines(self) -> None:
        conn = in_transaction()
        events, _ = talk(conn, b"BDAT 3008 LAST\r\n" + b"x" * 1500)
        events2, _ = talk(conn, b"x" * 1500)
        events3, lines = talk(conn, b"\r\nok\r\n\r\n")
        assert kinds(events + events2 + events3) == ["DataStart", "MessageRejected"]
        assert lines == ["550 5.6.0 Line too long (RFC 5322 limit is 998 octets)"]

    def test_bare_cr_inside_a_skipped_long_line(self) -> None:
        conn = in_transaction()
        talk(conn, b"BDAT 3004 LAST\r\n" + b"x" * 1500)
        _, lines = talk(conn, b"x\rx" + b"x" * 1497 + b"\r\nok")
        assert lines == [
            "550 5.6.0 Message contains a bare CR or LF, refused (SMTP smuggling defence)"
        ]

    def test_long_line_ending_with_a_lone_cr(self) -> None:
        _, lines = talk(in_transaction(), b"BDAT 1501 LAST\r\n" + b"x" * 1500 + b"\r")
        assert lines[0].startswith("550 5.6.0 Message contains a bare CR or LF")

    @pytest.mark.parametrize("chunks", [b"BDAT 5 LAST\r\na\x00b\r\n", b"BDAT 4\r\nab\r\nBDAT 2 LAST\r\nc\x00"])
    def test_nul_is_refused(self, chunks: bytes) -> None:
        events, lines = talk(in_transaction(), chunks)
        assert kinds(events)[-1] == "MessageRejected"
        assert lines[-1] == "550 5.6.0 Message contains a NUL octet, refused"

    def test_final_fragment_without_crlf_is_delivered(self) -> None:
        events, _ = talk(in_transaction(), b"BDAT 7 LAST\r\nab\r\ncde")
        assert message_of(events) == b"ab\r\ncde"

    def test_rset_mid_bdat(self) -> None:
        conn = in_transaction()
        talk(conn, b"BDAT 2\r\nab")
        events, lines = talk(conn, b"RSET\r\nBDAT 1 LAST\r\nx")
        assert lines == ["250 2.0.0 Reset OK", "503 5.5.1 Need MAIL command"]
        assert kinds(events) == ["Reset"]


# ---------------------------------------------------------------- misc


class TestSimpleCommands:
    def test_rset(self) -> None:
        conn = in_transaction()
        events, lines = talk(conn, b"RSET\r\n")
        assert events == [Reset()] and lines == ["250 2.0.0 Reset OK"]
        assert not conn.in_transaction and conn.authenticated

    def test_rset_with_argument(self) -> None:
        assert talk(connect(), b"RSET x\r\n")[1] == ["501 5.5.4 Syntax: RSET"]

    def test_noop_vrfy_help_expn(self) -> None:
        _, lines = talk(connect(), b"NOOP\r\nNOOP hi\r\nVRFY root\r\nHELP\r\nEXPN staff\r\n")
        assert lines == [
            "250 2.0.0 OK",
            "250 2.0.0 OK",
            "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
            "214 2.0.0 See RFC 5321",
            "502 5.5.1 EXPN not supported",
        ]

    def test_quit(self) -> None:
        conn = connect()
        events, lines = talk(conn, b"QUIT\r\nNOOP\r\n")
        assert events == [Quit()] and lines == ["221 2.0.0 Bye"]
        assert conn.closed and conn.close_after_send()
        conn.receive_data(b"NOOP\r\n")
        assert talk(conn) == ([], [])


class TestErrorsAndLifecycle:
    def test_too_many_errors(self) -> None:
        conn = connect(max_errors=3)
        events, lines = talk(conn, b"X\r\nY\r\nZ\r\nNOOP\r\n")
        assert lines == ["500 5.5.2 Command not recognized"] * 3 + [
            "421 4.7.0 Too many errors, closing connection"
        ]
        assert conn.closed and events == []

    def test_4xx_and_application_rejections_do_not_count(self) -> None:
        conn = in_transaction(max_errors=2, max_recipients=1)
        _, lines = talk(conn, b"RCPT TO:<c@example.net>\r\n" * 3)
        assert lines == ["452 4.5.3 Too many recipients"] * 3
        talk(conn, b"RSET\r\n")
        reply = Reply(550, "5.7.1", "No")
        _, lines = talk(conn, b"MAIL FROM:<a@example.org>\r\n" * 3, decide=lambda e: reply)
        assert lines == ["550 5.7.1 No"] * 3
        assert conn.error_count == 0 and not conn.closed

    def test_eof(self) -> None:
        conn = connect()
        conn.receive_data(b"NOOP\r\nNO")
        conn.receive_data(b"")
        events, lines = talk(conn)
        assert events == [ConnectionLost()] and lines == ["250 2.0.0 OK"]
        assert conn.closed
        assert conn.next_event() is NEED_DATA

    def test_shutdown_after_close_does_nothing(self) -> None:
        conn = connect()
        talk(conn, b"QUIT\r\n")
        conn.shutdown()
        conn.refuse(Reply(421, "4.3.2", "Again"))
        assert conn.data_to_send() == b""

    def test_sentinels(self) -> None:
        assert repr(NEED_DATA) == "NEED_DATA" and repr(PAUSED) == "PAUSED"
        assert NEED_DATA is not PAUSED

    def test_shutdown_when_idle(self) -> None:
        conn = logged_in()
        conn.shutdown()
        assert replies(conn) == ["421 4.3.2 Service shutting down"]
        assert conn.closed

    def test_shutdown_lets_a_transaction_finish(self) -> None:
        conn = in_data()
        conn.shutdown()
        assert not conn.closed and conn.data_to_send() == b""
        events, lines = talk(conn, b"body\r\n.\r\nNOOP\r\n")
        assert kinds(events) == ["MessageData", "MessageComplete"]
        assert lines == ["250 2.0.0 Ok: queued", "421 4.3.2 Service shutting down"]
        assert conn.closed

    def test_shutdown_before_envelope_is_complete(self) -> None:
        conn = in_transaction()
        conn.shutdown()
        _, lines = talk(conn, b"RCPT TO:<c@example.net>\r\nRSET\r\nNOOP\r\n")
        assert lines == ["250 2.1.5 Recipient OK", "250 2.0.0 Reset OK",
                         "421 4.3.2 Service shutting down"]

    def test_quit_during_shutdown_is_answered_normally(self) -> None:
        conn = in_transaction()
        conn.shutdown()
        talk(conn, b"RSET\r\n")
        assert talk(conn, b"QUIT\r\n")[1] == ["221 2.0.0 Bye"]


class TestDecisionApi:
    def test_accept_without_pending(self) -> None:
        with pytest.raises(ProtocolUsageError):
            connect().accept()

    def test_reject_without_pending(self) -> None:
        with pytest.raises(ProtocolUsageError):
            connect().reject(AUTH_CREDENTIALS_INVALID)

    def test_reject_needs_an_error_reply(self) -> None:
        conn = in_transaction()
        until_pause(conn, b"DATA\r\n")
        with pytest.raises(ProtocolUsageError):
            conn.reject(Reply(250, "2.0.0", "OK"))
        assert conn.pending_decision == DataStart("DATA")

    def test_challenge_only_for_auth(self) -> None:
        conn = in_transaction()
        until_pause(conn, b"DATA\r\n")
        with pytest.raises(ProtocolUsageError):
            conn.reject(Reply(554, "5.0.0", "No"), challenge=b"x")

    def test_paused_until_answered(self) -> None:
        conn = logged_in()
        until_pause(conn, b"MAIL FROM:<a@example.org>\r\nNOOP\r\n")
        for _ in range(3):
            assert conn.next_event() is PAUSED
        conn.accept()
        assert talk(conn)[1] == ["250 2.1.0 Sender OK", "250 2.0.0 OK"]
        with pytest.raises(ProtocolUsageError):
            conn.accept()

    def test_decision_events_are_marked(self) -> None:
        for event in (AuthAttempt("PLAIN", "", "u", "p"), MailFrom("", {}), RcptTo("a@b", {}),
                      DataStart("DATA"), MessageComplete()):
            assert isinstance(event, DecisionEvent)
        for info in (Hello("x", True), StartTLS(), MessageData(b""), Reset(), Quit(),
                     ConnectionLost(), MessageRejected(AUTH_CREDENTIALS_INVALID)):
            assert not isinstance(info, DecisionEvent)


# ------------------------------------------------------------- dialogs


@pytest.mark.parametrize("chunking", ["whole", "bytes"])
@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(path: Path, chunking: str) -> None:
    run_dialog(path.read_text(encoding="utf-8"), chunking)  # type: ignore[arg-type]


def test_dialog_files_exist() -> None:
    assert len(DIALOGS) >= 12


class TestDialogFormat:
    def test_parse_dialog(self) -> None:
        steps = parse_dialog("# comment\nfeatures: tls_active=true\n\nc: EHLO x\n"
                             "raw: a\\r\\nb\ns: 250 ...\napp: accept\neof\nclosed\n")
        assert [s.kind for s in steps] == ["features", "client", "raw", "server", "app", "eof",
                                           "closed"]
        assert steps[1].data == b"EHLO x\r\n"
        assert steps[2].data == b"a\r\nb"
        assert steps[3].text == "250 ..."

    def test_unknown_directive(self) -> None:
        with pytest.raises(DialogError, match="line 1"):
            parse_dialog("x: what")

    def test_mismatch_is_reported(self) -> None:
        with pytest.raises(DialogError, match="expected"):
            run_dialog("s: 220 wrong greeting\n")

    def test_unread_output_is_reported(self) -> None:
        with pytest.raises(DialogError, match="unexpected server output"):
            run_dialog("c: NOOP\n")

    def test_optional_event_names(self) -> None:
        assert names_match(["A", "C"], ["A", "B?", "C"])
        assert names_match(["A", "B", "C"], ["A", "B?", "C"])
        assert not names_match(["A", "D"], ["A", "B?", "C"])
