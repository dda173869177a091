"""Fast reads of single header fields from a raw header block.

The stdlib `email` parser builds a whole message object with defect tracking; on the
accept path of every message we need only Subject and the sender fields, so we find those
fields with one regular expression and decode them with the stdlib's field-level helpers.
"""

from __future__ import annotations

import email.header
import email.utils
import re
import unicodedata
from functools import lru_cache


# A field: its name (printable ASCII but the colon, RFC 5322 ftext) at the start of a line,
# the colon, and its value with any folded continuation lines.
_ANY_FIELD = re.compile(rb"(?m)^([!-9;-~]+)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")


@lru_cache(maxsize=4)
def _fields(section: bytes) -> dict[bytes, tuple[bytes, ...]]:
    """The raw values of every field of a header section by lower-case name, in order.

    One scan per message: the checks of a message ask for six fields (From twice, Sender,
    Resent-From, Resent-Sender, Subject) of the same section, and a scan per field name
    cost three times as much. Kept for the last few sections only.
    """
    found: dict[bytes, list[bytes]] = {}
    for match in _ANY_FIELD.finditer(section):
        found.setdefault(match.group(1).lower(), []).append(match.group(2))
    return {name: tuple(values) for name, values in found.items()}


def header_values(section: bytes, name: str) -> list[str]:
    """Every occurrence of the field `name`, unfolded, as text (undecoded encoded-words)."""
    values = []
    for value in _fields(section).get(name.encode().lower(), ()):
        raw = re.sub(rb"\r?\n(?=[ \t])", b"", value).rstrip(b"\r")
        values.append(raw.decode("utf-8", "surrogateescape"))
    return values


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded; text without them is returned as it is."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def addresses(section: bytes, name: str) -> list[str]:
    """The addresses of every `name` field (From:, Sender:); "" for an unparsable one."""
    found = [address for _, address in email.utils.getaddresses(header_values(section, name))]
    return found


def mailboxes(section: bytes, name: str) -> list[tuple[str, str]]:
    """(display name, address) of every mailbox in every `name` field; names decoded.

    Encoded-words (RFC 2047) are decoded and the text NFKC-normalised, so that
    `=?utf-8?q?carol=40example.test?=` and a full-width at sign read as what they show.
    """
    pairs = email.utils.getaddresses(header_values(section, name))
    return [(unicodedata.normalize("NFKC", decode_words(display)), address) for display, address in pairs]


_SHOWN_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+\.[^\s<>()\[\]\"',;:@]+")


def shown_addresses(display: str) -> list[str]:
    """What in a display name reads as an e-mail address (`"carol@example.test" <...>`)."""
    return _SHOWN_ADDRESS.findall(display)
