"""Log lines that a client cannot forge: every value escaped, every secret redacted.

Values from the network (logins, client ids, HELO names, addresses, exception text) go
into log lines as `%s` arguments. A login with CR, LF or ESC in it could otherwise end a
line and write a forged one (text or JSON) after it, or drive the terminal of whoever
reads the log. The fix is here, in the formatter every handler uses, not at the call
sites: each argument is passed through `escape()` (control and line-breaking characters
and backslashes become `\\xNN`, `\\uNNNN`, `\\\\`) and `redact()` (our secrets become their
prefix and a keyed hash), and the finished message is checked once more so a message
built without arguments cannot break a line either.

`json_line()` is the one way JSON log lines are written: `json.dumps` escapes C0
controls, and this escapes what it leaves raw with `ensure_ascii=False` (DEL, C1, U+2028
and U+2029, which some readers take as line ends).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from smtpgate.credentials.redaction import redact

__all__ = ["SafeFormatter", "escape", "json_line"]

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators; bidi overrides
# and isolates too (they reorder what a reader sees on the line)
_UNSAFE = re.compile("[\\x00-\\x1f\\x7f-\\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_OR_BACKSLASH = re.compile("[\\\\\\x00-\\x1f\\x7f-\\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_JSON_RAW = re.compile("[\\x7f-\\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _code(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "\\":
        return "\\\\"
    point = ord(char)
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


def escape(value: object) -> str:
    """`str(value)` safe for one log line: no line breaks, no controls, backslashes doubled."""
    return _UNSAFE_OR_BACKSLASH.sub(_code, redact(str(value)))


def json_line(obj: Any) -> str:
    """One JSON object on one line, whatever strings it holds."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", redact(text))


def _safe_arg(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # keeps %d and %.1f working
    return escape(value)


class SafeFormatter(logging.Formatter):
    """A `logging.Formatter` whose messages cannot span lines or carry our secrets."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        try:
            record.msg, record.args = _final(_message(record)), None
            return super().format(record)
        finally:
            record.msg, record.args = saved

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        """Tracebacks keep their lines (they are ours) but lose control characters and secrets."""
        return _lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return _lines(stack_info)


def _message(record: logging.LogRecord) -> str:
    """`record.getMessage()` with every argument escaped and redacted first."""
    message = str(record.msg)
    args = record.args
    if not args:
        return message
    if isinstance(args, dict):
        return message % {k: _safe_arg(v) for k, v in args.items()}
    return message % tuple(_safe_arg(a) for a in args)


def _final(message: str) -> str:
    return _UNSAFE.sub(_code, redact(message))


def _lines(text: str) -> str:
    return "\n".join(_final(line) for line in text.split("\n"))
