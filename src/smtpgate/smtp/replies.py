"""SMTP replies: the `Reply` value (code, enhanced status, text) and every reply the machine sends.

Part of the sans-I/O protocol (`protocol.py` is the connection that uses them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------

_ENHANCED_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply; a sequence ``text`` gives a multi-line reply."""

    code: int
    enhanced: str
    text: str | Sequence[str]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code out of range: {self.code}")
        if self.enhanced and (
            not _ENHANCED_RE.fullmatch(self.enhanced)
            or self.enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"bad enhanced status code {self.enhanced!r} for {self.code}")
        if not isinstance(self.text, str):
            object.__setattr__(self, "text", tuple(self.text))

    @property
    def lines(self) -> tuple[str, ...]:
        """The human text, one entry per reply line."""
        if isinstance(self.text, str):
            return (self.text,)
        return tuple(self.text) or ("",)

    def to_bytes(self) -> bytes:
        lines = self.lines
        last = len(lines) - 1
        out = []
        for index, line in enumerate(lines):
            separator = " " if index == last else "-"
            out.append(f"{self.code}{separator}{self._body(line)}\r\n")
        return "".join(out).encode("utf-8")

    def _body(self, line: str) -> str:
        clean = line.replace("\r", " ").replace("\n", " ")
        return f"{self.enhanced} {clean}" if self.enhanced else clean

    def with_text(self, text: str | None) -> Reply:
        """The same code with another human text (``None`` keeps it)."""
        if text is None:
            return self
        return Reply(self.code, self.enhanced, text)


# Replies an application typically uses when answering decisions.
AUTH_CREDENTIALS_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_TEMPORARY_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure")

_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
_START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
_QUEUED = Reply(250, "2.0.0", "Ok: queued")
_RESET_OK = Reply(250, "2.0.0", "Reset OK")
_OK = Reply(250, "2.0.0", "OK")
_BYE = Reply(221, "2.0.0", "Bye")
_READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
_HELP = Reply(214, "2.0.0", "See RFC 5321")
_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down")
_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
_TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available")

_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
_BARE_CR_LF = Reply(500, "5.5.2", "Bare CR or LF not allowed")
_NOT_UTF8 = Reply(500, "5.5.2", "Invalid UTF-8 in command")
_UNKNOWN_COMMAND = Reply(500, "5.5.2", "Command not recognized")
_AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
_EMPTY_RESPONSE_EXPECTED = Reply(501, "5.5.2", "Expected an empty response")
_CANNOT_DECODE = Reply(501, "5.5.2", "Cannot decode response")
_SYNTAX_EHLO = Reply(501, "5.5.4", "Syntax: EHLO hostname")
_SYNTAX_HELO = Reply(501, "5.5.4", "Syntax: HELO hostname")
_SYNTAX_STARTTLS = Reply(501, "5.5.4", "Syntax: STARTTLS")
_SYNTAX_AUTH = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
_SYNTAX_MAIL = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
_SYNTAX_RCPT = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
_SYNTAX_DATA = Reply(501, "5.5.4", "Syntax: DATA")
_SYNTAX_BDAT = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
_SYNTAX_RSET = Reply(501, "5.5.4", "Syntax: RSET")
_SYNTAX_SIZE = Reply(501, "5.5.4", "Syntax: SIZE=<octets>")
_SYNTAX_BODY = Reply(501, "5.5.4", "Syntax: BODY=7BIT|8BITMIME")
_SYNTAX_SMTPUTF8 = Reply(501, "5.5.4", "Syntax: SMTPUTF8 takes no value")
_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
_BAD_RECIPIENT = Reply(501, "5.1.3", "Bad recipient address syntax")
_NOT_IMPLEMENTED_EXPN = Reply(502, "5.5.1", "EXPN not supported")
_SEND_EHLO_FIRST = Reply(503, "5.5.1", "Send EHLO first")
_SEND_HELO_FIRST = Reply(503, "5.5.1", "Send HELO/EHLO first")
_TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")
_ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
_AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
_NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
_NEED_MAIL_FOR_RCPT = Reply(503, "5.5.1", "Need MAIL before RCPT")
_NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
_NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")
_RCPT_AFTER_BDAT = Reply(503, "5.5.1", "RCPT not allowed after BDAT")
_DATA_AFTER_BDAT = Reply(503, "5.5.1", "DATA not allowed after BDAT")
_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
_MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message too big for system")
_SIZE_EXCEEDED = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
_NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
_NO_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
_UNSUPPORTED_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter")
_DATA_LINE_TOO_LONG = Reply(550, "5.6.0", "Line too long (RFC 5322 limit is 998 octets)")
_DATA_BARE_CR_LF = Reply(
    550, "5.6.0", "Message contains a bare CR or LF, refused (SMTP smuggling defence)"
)
# A hop that strips NULs would read CRLF NUL "." CRLF as the end of the data.
_DATA_NUL = Reply(550, "5.6.0", "Message contains a NUL octet, refused")
