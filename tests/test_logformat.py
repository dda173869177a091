"""The log formatter: a value from the network cannot forge a line, carry a secret, or drive a terminal."""

from __future__ import annotations

import json
import logging

from smtpgate.credentials import app_passwords
from smtpgate.logformat import SafeFormatter, escape, json_line

FORGED = "alice@example.com\r\n2026-01-01 00:00:00,000 INFO [1] smtpgate.session: auth ok login=ceo\x1b[2J"


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line " + app_passwords.generate())
        except ValueError:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord("smtpgate.session", logging.INFO, __file__, 1, msg, args, exc_info)


def test_arguments_cannot_break_the_line_or_carry_controls() -> None:
    line = SafeFormatter("%(levelname)s %(message)s").format(record("auth failed login=%s ip=%s", FORGED, "127.0.0.1"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "INFO auth failed login=alice@example.com\\x0d\\x0a2026-01-01 00:00:00,000 INFO [1] " \
                   "smtpgate.session: auth ok login=ceo\\x1b[2J ip=127.0.0.1"


def test_backslashes_are_doubled_so_an_escape_cannot_be_faked() -> None:
    assert escape("a\\x0ab") == "a\\\\x0ab"
    assert escape("a\nb") == "a\\x0ab"


def test_line_separators_c1_and_bidi_overrides_are_escaped() -> None:
    assert escape("a\u2028b\x85c\u202ed") == "a\\u2028b\\x85c\\u202ed"


def test_numbers_keep_their_format_and_messages_without_arguments_are_checked_too() -> None:
    fmt = SafeFormatter("%(message)s")
    assert fmt.format(record("rcpts=%d size=%.1f", 3, 2.25)) == "rcpts=3 size=2.2"
    assert fmt.format(record("pre-formatted " + FORGED)).count("\n") == 0


def test_secrets_are_redacted_in_arguments_messages_and_tracebacks() -> None:
    secret = app_passwords.generate()
    fmt = SafeFormatter("%(message)s")
    assert secret not in fmt.format(record("login=%s", secret))
    assert secret not in fmt.format(record(f"login={secret}"))
    text = fmt.format(record("failed", exc=True))
    assert "sgp_[redacted:" in text and "Traceback" in text and "boom\\x0asecond line" not in text


def test_json_lines_stay_one_line_and_valid() -> None:
    secret = app_passwords.generate()
    line = json_line({"login": FORGED + "\u2028\x85", "other": secret})
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x85" not in line
    assert len(line.splitlines()) == 1
    decoded = json.loads(line)
    assert decoded["login"] == FORGED + "\u2028\x85" and secret not in line
