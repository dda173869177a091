"""Coverage-guided fuzz target for the SMTP protocol machine (atheris/libFuzzer).

Why: the hypothesis tests explore inputs built from SMTP tokens; libFuzzer
mutates raw bytes guided by coverage and finds paths nobody listed.  Each
input is run twice -- in one read and split into reads -- and must behave
the same, never raise, always produce well-formed replies, and never let
MAIL through unauthenticated or message data through without DataStart.

    pip install atheris
    python fuzz/fuzz_protocol.py -max_total_time=60 [corpus_dir]
    python fuzz/fuzz_protocol.py crash-file ...   # replay, works without atheris
"""

from __future__ import annotations

import base64
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

try:
    import atheris
except ImportError:  # replaying inputs still works without it
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from smtpgate.smtp import protocol as smtp
else:
    from smtpgate.smtp import protocol as smtp

REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*")
REJECTION = smtp.Reply(550, "5.7.1", "Policy says no")
DICTIONARY = [
    b"EHLO x\r\n", b"HELO x\r\n", b"STARTTLS\r\n", b"AUTH PLAIN ", b"AUTH LOGIN\r\n",
    base64.b64encode(b"\0user\0pw"), base64.b64encode(b"\0user\0tok"), b"MAIL FROM:<",
    b"RCPT TO:<", b"a@example.org>", b"<>", b" SIZE=", b" BODY=8BITMIME", b" SMTPUTF8",
    b"DATA\r\n", b"BDAT ", b" LAST", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"\r\n.\r\n",
    b"\n.\n", b"\r.\r", b"..", b"*\r\n", b"=",
]


def features_from(flags: int) -> smtp.ServerFeatures:
    return smtp.ServerFeatures(
        hostname="mx.example.test",
        tls_active=bool(flags & 1),
        starttls_available=bool(flags & 2),
        require_tls_for_auth=bool(flags & 4),
        require_auth_for_mail=bool(flags & 8),
    )


def limits_from(flags: int) -> smtp.ProtocolLimits:
    small = bool(flags & 16)
    return smtp.ProtocolLimits(
        max_command_line=64 if small else 512,
        max_auth_line=80 if small else 16384,
        max_text_line=40 if small else 1000,
        max_message_size=200 if small else 26214400,
        max_recipients=2 if small else 100,
        max_errors=5 if small else 20,
    )


class Driver:
    """One connection, a deterministic fake application, invariant checks."""

    def __init__(self, flags: int, policy: int) -> None:
        self.features = features_from(flags)
        self.conn = smtp.ServerConnection(self.features, limits_from(flags))
        self.policy = policy
        self.decisions = 0
        self.data_allowed = False
        self.events: list[str] = []
        self.output = bytearray()
        self.conn.start()
        self.collect()

    def run(self, chunks: list[bytes]) -> tuple[list[str], bytes]:
        for chunk in chunks:
            self.conn.receive_data(chunk)
            self.drain()
        if self.conn.state is smtp.State.TLS_PENDING:
            self.conn.tls_established()
        self.conn.receive_data(b"")
        self.drain()
        assert self.conn.closed
        return self.events, bytes(self.output)

    def drain(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is smtp.NEED_DATA:
                break
            if event is smtp.PAUSED:
                pending = self.conn.pending_decision
                assert pending is not None
                self.decide(pending)
                continue
            self.check(event)
        self.collect()

    def collect(self) -> None:
        data = self.conn.data_to_send()
        assert not data or data.endswith(b"\r\n")
        for line in data.split(b"\r\n")[:-1]:
            assert REPLY_LINE.fullmatch(line), line
        self.output += data

    def decide(self, event: smtp.DecisionEvent) -> None:
        self.decisions += 1
        if isinstance(event, smtp.AuthAttempt):
            if event.secret == "pw":
                self.conn.accept()
            elif event.secret == "tok":
                self.conn.reject(smtp.AUTH_CREDENTIALS_INVALID, challenge=b"{}")
            else:
                self.conn.reject(smtp.AUTH_CREDENTIALS_INVALID)
            return
        accept = bool(self.policy >> (self.decisions % 8) & 1)
        if isinstance(event, smtp.DataStart):
            self.data_allowed = accept
        elif isinstance(event, smtp.MessageComplete):
            self.data_allowed = False
        if accept:
            self.conn.accept()
        else:
            self.conn.reject(REJECTION)

    def check(self, event: smtp.Event) -> None:
        if isinstance(event, smtp.MailFrom) and self.features.require_auth_for_mail:
            assert self.conn.authenticated, "MAIL accepted without AUTH"
        if isinstance(event, smtp.MessageData):
            assert self.data_allowed, "message data without an accepted DataStart"
            return  # how data is chunked depends on the reads; outcomes must not
        if isinstance(event, (smtp.MessageRejected, smtp.Reset, smtp.StartTLS, smtp.Quit,
                              smtp.ConnectionLost)):
            self.data_allowed = False
        self.events.append(repr(event))


def split(body: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, position = [], 0
    while position < len(body):
        size = rng.choice((1, 2, 3, 7, 64, 1000))
        chunks.append(body[position : position + size])
        position += size
    return chunks


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    flags, policy, seed, body = data[0], data[1], data[2], data[3:]
    whole = Driver(flags, policy).run([body])
    pieces = Driver(flags, policy).run(split(body, seed))
    assert whole == pieces, "behaviour depends on how the input was split"


def _dictionary_argument() -> str:
    """Write the SMTP token dictionary libFuzzer splices into inputs."""
    path = Path(tempfile.gettempdir()) / "smtpgate-fuzz-protocol.dict"
    lines = ("\"" + "".join(f"\\x{byte:02x}" for byte in token) + "\"\n" for token in DICTIONARY)
    path.write_text("".join(lines))
    return f"-dict={path}"


def replay(paths: list[str]) -> None:
    for path in paths:
        test_one_input(Path(path).read_bytes())
        print(f"ok {path}")


def main() -> None:
    if atheris is None:
        print("atheris is not installed (pip install atheris); replaying the given files only",
              file=sys.stderr)
        replay([arg for arg in sys.argv[1:] if not arg.startswith("-")])
        return
    argv = list(sys.argv)
    if not any(arg.startswith("-dict=") for arg in argv):
        argv.append(_dictionary_argument())
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
