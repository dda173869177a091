"""Command syntax: addresses, ESMTP parameters, BDAT sizes and AUTH initial responses
(RFC 5321 section 4.1.2, RFC 6531), as pure functions from text to values or replies.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from .replies import (
    _BAD_RECIPIENT,
    _NON_ASCII_ADDRESS,
    _SIZE_EXCEEDED,
    _SYNTAX_BODY,
    _SYNTAX_MAIL,
    _SYNTAX_SIZE,
    _SYNTAX_SMTPUTF8,
    _UNSUPPORTED_PARAMETER,
    Reply,
)
from .sasl import Malformed, decode_response

# --------------------------------------------------------------------------
# Address and parameter syntax (RFC 5321 section 4.1.2, RFC 6531)
# --------------------------------------------------------------------------

_LOCAL_DOT_STRING = r'[^\x00-\x20\x7f-\x9f"(),:;<>@\[\\\]]+'
_QUOTED_STRING = r'"(?:[^"\\\x00-\x1f\x7f-\x9f]|\\[\x20-\x7e])*"'
_LABEL = r"[0-9A-Za-z_\u00a0-\ud7ff\ue000-\U0010ffff-]+"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX_RE = re.compile(
    rf"(?:{_LOCAL_DOT_STRING}|{_QUOTED_STRING})@(?:{_DOMAIN}|{_ADDRESS_LITERAL})"
)
_SOURCE_ROUTE_RE = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")
_PARAM_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([^\x00-\x20=\x7f]+))?")
_BDAT_RE = re.compile(r"(\d{1,20})(?: +(LAST))? *", re.IGNORECASE)
_BODY_VALUES = frozenset({"7BIT", "8BITMIME"})

Params: TypeAlias = dict[str, "str | None"]


def _closing_bracket(text: str) -> int:
    """Index of the ``>`` closing ``text[0] == "<"``, honouring quotes; -1 if none."""
    quoted = escaped = False
    for index in range(1, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def _split_path_argument(argument: str, keyword: str) -> tuple[str, str] | None:
    """Split ``FROM:<path> params`` into (path, params); ``None`` on bad syntax."""
    prefix = keyword + ":"
    if argument[: len(prefix)].upper() != prefix:
        return None
    rest = argument[len(prefix) :]
    if rest.startswith(" "):
        rest = rest[1:]
    if not rest.startswith("<"):
        return None
    end = _closing_bracket(rest)
    if end < 0:
        return None
    path, params = rest[1:end], rest[end + 1 :]
    if params and not params.startswith(" "):
        return None
    return path, params


def _mailbox_from_path(path: str) -> str | None:
    """The mailbox of a non-empty path with any source route dropped."""
    route = _SOURCE_ROUTE_RE.match(path)
    mailbox = path[route.end() :] if route else path
    return mailbox if _MAILBOX_RE.fullmatch(mailbox) else None


def _parse_params(text: str) -> Params | None:
    """``KEY[=value]`` words, keys upper-cased; ``None`` on bad syntax or repeats."""
    params: Params = {}
    for word in text.split(" "):
        if not word:
            continue
        match = _PARAM_RE.fullmatch(word)
        if match is None:
            return None
        key = match.group(1).upper()
        if key in params:
            return None
        params[key] = match.group(2)
    return params


def _check_mail_params(params: Params, max_size: int) -> Reply | None:
    """Validate MAIL parameters; the reply to send when one is unacceptable."""
    for key, value in params.items():
        problem = _check_mail_param(key, value, max_size)
        if problem is not None:
            return problem
    return None


def _check_mail_param(key: str, value: str | None, max_size: int) -> Reply | None:
    if key == "SIZE":
        if value is None or not value.isascii() or not value.isdigit():
            return _SYNTAX_SIZE
        return _SIZE_EXCEEDED if int(value) > max_size else None
    if key == "BODY":
        return None if value is not None and value.upper() in _BODY_VALUES else _SYNTAX_BODY
    if key == "SMTPUTF8":
        return None if value is None else _SYNTAX_SMTPUTF8
    if key == "AUTH":
        return None if value is not None else _SYNTAX_MAIL
    return _UNSUPPORTED_PARAMETER


def _recipient_address(path: str) -> str | None:
    """The recipient mailbox; a bare ``postmaster`` is allowed (RFC 5321 4.5.1)."""
    if path.lower() == "postmaster":
        return path
    return _mailbox_from_path(path)


def _check_recipient(address: str | None, params: Params, smtputf8: bool) -> Reply | None:
    if address is None:
        return _BAD_RECIPIENT
    if params:
        return _UNSUPPORTED_PARAMETER
    if not address.isascii() and not smtputf8:
        return _NON_ASCII_ADDRESS
    return None


def _initial_response(text: str) -> bytes | None:
    """Decode an AUTH initial response; ``=`` stands for an empty one (RFC 4954)."""
    if text == "=":
        return b""
    return decode_response(text.encode("ascii", "replace"))


def _malformed_reply(step: Malformed) -> Reply:
    return Reply(501, "5.5.2", step.text)
