"""Property tests: SMTP-ish byte streams, split anywhere, never break the machine.

Why: the protocol faces an open port.  These properties guard against
crashes, malformed replies, decision bypasses (MAIL before AUTH, message data
before DataStart) and behaviour that depends on how TCP happened to split the
input -- the root of SMTP smuggling.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpgate.smtp.protocol import (
    AUTH_CREDENTIALS_INVALID,
    NEED_DATA,
    PAUSED,
    AuthAttempt,
    ConnectionLost,
    DataStart,
    DecisionEvent,
    Event,
    MailFrom,
    MessageComplete,
    MessageData,
    MessageRejected,
    ProtocolLimits,
    Quit,
    RcptTo,
    Reply,
    Reset,
    ServerConnection,
    ServerFeatures,
    StartTLS,
    State,
    _scan_lines,  # the hot-path helper, checked directly
)


def _auth(mechanism: str, payload: bytes) -> bytes:
    return f"AUTH {mechanism} ".encode() + base64.b64encode(payload) + b"\r\n"


TOKENS = [
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"STARTTLS\r\n",
    _auth("PLAIN", b"\0user\0pw"),
    _auth("PLAIN", b"\0user\0bad"),
    _auth("PLAIN", b"\0user\0tok"),
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    base64.b64encode(b"\0user\0pw") + b"\r\n",
    base64.b64encode(b"user") + b"\r\n",
    base64.b64encode(b"pw") + b"\r\n",
    b"AQ==\r\n",
    b"*\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    b"RCPT TO:<b@example.net>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY x\r\n",
    b"Subject: hi\r\n",
    b"hello world\r\n",
    b".\r\n",
    b"..dot\r\n",
    b"\r\n.\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"\n.\n",
    b"\r.\r",
    b"\r\n\x00.\r\n",
    b"x" * 700,
    b"y" * 1200,
]

READY = (
    b"EHLO c\r\n" + _auth("PLAIN", b"\0user\0pw")
    + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
)
PREFIXES = [b"", b"EHLO c\r\n", READY, READY + b"DATA\r\n", READY + b"BDAT 40\r\n",
            b"EHLO c\r\nAUTH LOGIN\r\n"]

REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*")
REJECTION = Reply(550, "5.7.1", "Policy says no")


streams = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.binary(max_size=12)), max_size=24
).map(b"".join)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ServerFeatures, ProtocolLimits, list[bytes], list[bool]]:
    features = ServerFeatures(
        hostname="mx.example.test",
        tls_active=draw(st.booleans()),
        starttls_available=draw(st.booleans()),
        require_tls_for_auth=draw(st.booleans()),
        require_auth_for_mail=draw(st.booleans()),
    )
    limits = ProtocolLimits(
        max_command_line=draw(st.sampled_from([512, 40])),
        max_auth_line=draw(st.sampled_from([16384, 60])),
        max_text_line=draw(st.sampled_from([1000, 30])),
        max_message_size=draw(st.sampled_from([26214400, 120])),
        max_recipients=draw(st.sampled_from([100, 1])),
        max_errors=draw(st.sampled_from([20, 4])),
    )
    segments = draw(st.lists(streams, min_size=1, max_size=3))
    segments[0] = draw(st.sampled_from(PREFIXES)) + segments[0]
    policy = draw(st.lists(st.booleans(), min_size=1, max_size=8))
    return features, limits, segments, policy


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in pairwise(points)] or [b""]


@dataclass
class Run:
    """Drives one connection with a deterministic fake application."""

    features: ServerFeatures
    limits: ProtocolLimits
    policy: list[bool]
    conn: ServerConnection = field(init=False)
    events: list[Event] = field(default_factory=list)
    output: bytearray = field(default_factory=bytearray)
    decisions: int = 0
    data_allowed: bool = False
    message: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.conn = ServerConnection(self.features, self.limits)
        self.conn.start()
        self.collect_output()

    def feed_segments(self, segments: list[list[bytes]]) -> None:
        for chunks in segments:
            for chunk in chunks:
                if chunk:
                    self.conn.receive_data(chunk)
                self.drain()
            if self.conn.state is State.TLS_PENDING:
                self.conn.tls_established()
                self.drain()
        self.conn.receive_data(b"")
        self.drain()
        assert self.conn.closed

    def drain(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                pending = self.conn.pending_decision
                assert pending is not None
                self.decide(pending)
                continue
            assert isinstance(event, Event)
            self.check(event)
            self.events.append(event)
        self.collect_output()

    def collect_output(self) -> None:
        data = self.conn.data_to_send()
        assert data == b"" or data.endswith(b"\r\n")
        for line in data.split(b"\r\n")[:-1]:
            assert REPLY_LINE.fullmatch(line), line
        self.output += data

    def decide(self, event: DecisionEvent) -> None:
        self.decisions += 1
        if isinstance(event, AuthAttempt):
            self.answer_auth(event)
            return
        accept = self.policy[self.decisions % len(self.policy)]
        if isinstance(event, DataStart):
            self.data_allowed = accept
            self.message.clear()
        if isinstance(event, MessageComplete):
            self.check_complete_message()
            self.data_allowed = False
        if accept:
            self.conn.accept()
        else:
            self.conn.reject(REJECTION)

    def answer_auth(self, event: AuthAttempt) -> None:
        assert self.conn.tls_active or not self.features.require_tls_for_auth
        if event.secret == "pw":
            self.conn.accept()
        elif event.secret == "tok":
            self.conn.reject(AUTH_CREDENTIALS_INVALID, challenge=b'{"status":"401"}')
        else:
            self.conn.reject(AUTH_CREDENTIALS_INVALID)

    def check(self, event: Event) -> None:
        if isinstance(event, MailFrom) and self.features.require_auth_for_mail:
            assert self.conn.authenticated
        if isinstance(event, RcptTo):
            assert self.conn.in_transaction
        if isinstance(event, MessageData):
            assert self.data_allowed, "MessageData without an accepted DataStart"
            self.message += event.data
        if isinstance(event, (MessageRejected, Reset, StartTLS, ConnectionLost, Quit)):
            self.data_allowed = False

    def check_complete_message(self) -> None:
        content = bytes(self.message)
        assert len(content) <= self.limits.max_message_size
        pairs = content.count(b"\r\n")
        assert content.count(b"\r") == pairs and content.count(b"\n") == pairs
        assert b"\x00" not in content
        assert all(len(line) <= self.limits.max_text_line - 2 for line in content.split(b"\r\n"))

    def transcript(self) -> tuple[list[Event], bytes, int]:
        return normalise(self.events), bytes(self.output), self.conn.discarded_after_starttls


def normalise(events: list[Event]) -> list[Event]:
    """Merge MessageData runs; keep them only for messages that completed.

    How much of a refused, reset or cut-off message streams out before it
    ends depends on the read boundaries; the outcome does not.
    """
    result: list[Event] = []
    for event in events:
        previous = result[-1] if result else None
        follows_data = isinstance(previous, MessageData)
        if isinstance(event, MessageData) and isinstance(previous, MessageData):
            result[-1] = MessageData(previous.data + event.data)
        elif follows_data and not isinstance(event, MessageComplete):
            result[-1] = event
        else:
            result.append(event)
    if result and isinstance(result[-1], MessageData):
        result.pop()
    return result


# SMTPGATE_FUZZ_EXAMPLES=20000 for a longer local run.
EXAMPLES = int(os.environ.get("SMTPGATE_FUZZ_EXAMPLES", "250"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


@FUZZ_SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_split_points_do_not_change_behaviour(
    scenario: tuple[ServerFeatures, ProtocolLimits, list[bytes], list[bool]], data: st.DataObject
) -> None:
    features, limits, segments, policy = scenario
    whole = Run(features, limits, policy)
    whole.feed_segments([[segment] for segment in segments])
    cuts = data.draw(st.lists(st.lists(st.integers(0, 10_000), max_size=10),
                              min_size=len(segments), max_size=len(segments)))
    split = Run(features, limits, policy)
    split.feed_segments([split_at(s, c) for s, c in zip(segments, cuts, strict=True)])
    assert split.transcript() == whole.transcript()


@FUZZ_SETTINGS
@given(scenario=scenarios())
def test_byte_at_a_time_matches_whole(
    scenario: tuple[ServerFeatures, ProtocolLimits, list[bytes], list[bool]]
) -> None:
    features, limits, segments, policy = scenario
    whole = Run(features, limits, policy)
    whole.feed_segments([[segment] for segment in segments])
    bytewise = Run(features, limits, policy)
    bytewise.feed_segments([[s[i : i + 1] for i in range(len(s))] for s in segments])
    assert bytewise.transcript() == whole.transcript()


@settings(max_examples=EXAMPLES, deadline=None)
@given(prefix=st.sampled_from(PREFIXES), noise=st.binary(max_size=400),
       tls=st.booleans(), auth_required=st.booleans())
def test_arbitrary_bytes_never_raise(
    prefix: bytes, noise: bytes, tls: bool, auth_required: bool
) -> None:
    features = ServerFeatures("mx.example.test", tls_active=tls,
                              require_auth_for_mail=auth_required)
    run = Run(features, ProtocolLimits(), [True, False])
    run.feed_segments([[prefix + noise]])


def reference_scan(data: bytes) -> tuple[bool, int]:
    """Byte-by-byte reference for the fast line scan used on message content."""
    bare, longest, current, index = False, 0, 0, 0
    while index < len(data):
        if data[index : index + 2] == b"\r\n":
            longest, current, index = max(longest, current), 0, index + 2
        elif data[index] in b"\r\n":
            bare, longest, current, index = True, max(longest, current), 0, index + 1
        else:
            current, index = current + 1, index + 1
    return bare, max(longest, current)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"bb", b"\r", b"\n", b"\r\n", b".", b"\x0b",
                                      b"\x0c", b"\x1c", b"\x85"]), max_size=30).map(b"".join))
def test_line_scan_matches_reference(data: bytes) -> None:
    assert _scan_lines(data) == reference_scan(data)
