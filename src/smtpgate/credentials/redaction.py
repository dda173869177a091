"""Our secrets never leave the process by mistake: what looks like one is replaced first.

People paste secrets into the wrong field: an app password into the login field, a
client secret as the `client_id`. Everything that records or logs a value from the
network (the audit events, the log formatter, the token endpoint) passes it through
`redact()` or `redact_login()`, so such a secret reaches no log line, audit row, alert
or JSON output; what remains is its prefix and a keyed hash, enough to tell two pastes
of the same secret apart and no more.

A secret format is registered once, by its prefix and its body's alphabet; a new format
(API tokens, say) only calls `register()`. A value is redacted when it has a registered
prefix followed by at least `MIN_BODY` characters of that alphabet, whether its checksum
is right or not: a paste cut short by a few characters is still most of a secret.

Logins that are not addresses (a password typed as a login) are cut to `MAX_OTHER`
characters. Escaping for output is the log formatter's job (`smtpgate.logformat`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from smtpgate.credentials import app_passwords

__all__ = ["MAX_ADDRESS", "MAX_OTHER", "SecretFormat", "formats", "redact", "redact_login", "register", "set_key"]

MIN_BODY = 12      # characters of the body alphabet after the prefix that make a value a secret
MAX_ADDRESS = 320  # what an address may be (RFC 5321 path limits); the guard keys logins the same
MAX_OTHER = 64     # a login that is not an address is kept this short
_BASE32 = "a-z2-7"


@dataclass(frozen=True)
class SecretFormat:
    prefix: str      # e.g. "sgp_"
    alphabet: str    # a regex character class body, e.g. "a-z2-7"
    name: str        # what it is, for the docs and for tests

    @property
    def pattern(self) -> str:
        return f"{re.escape(self.prefix)}[{self.alphabet}]{{{MIN_BODY},}}"


_formats: list[SecretFormat] = []
_pattern: re.Pattern[str] = re.compile(r"(?!x)x")  # matches nothing until a format is registered
_key = secrets.token_bytes(32)  # replaced by the server key's derivative: the same hash in every process


def register(prefix: str, alphabet: str, name: str) -> SecretFormat:
    """Add a secret format (idempotent): from now on it is redacted everywhere."""
    global _pattern
    fmt = SecretFormat(prefix, alphabet, name)
    if fmt not in _formats:
        _formats.append(fmt)
        _pattern = re.compile("|".join(f"(?:{f.pattern})" for f in _formats), re.IGNORECASE)
    return fmt


def formats() -> tuple[SecretFormat, ...]:
    return tuple(_formats)


def set_key(server_key: bytes) -> None:
    """Key the hashes with (a derivative of) the server's key, so all processes agree."""
    global _key
    _key = hmac.new(server_key, b"smtpgate log redaction", hashlib.sha256).digest()


def _replacement(match: re.Match[str]) -> str:
    value = match.group(0)
    prefix = next((f.prefix for f in _formats if value.lower().startswith(f.prefix.lower())), value[:4])
    digest = hmac.new(_key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:12]
    return f"{prefix}[redacted:{digest}]"


def redact(text: str) -> str:
    """`text` with every value that looks like one of our secrets replaced by prefix and hash."""
    return _pattern.sub(_replacement, text) if text else text


def redact_login(login: str) -> str:
    """A login as it may be recorded: secrets redacted, an address kept, anything else cut short."""
    value = redact(login)
    local, at, domain = value.rpartition("@")
    if at and local and domain and not any(c.isspace() for c in value):
        return value[:MAX_ADDRESS]
    return value if len(value) <= MAX_OTHER else value[: MAX_OTHER - 1] + "…"


register(app_passwords.PREFIX, _BASE32, "app password")
register("sgc_", _BASE32, "service-account client secret")  # credentials/service_accounts.py
register("sga_", _BASE32, "operator API token")  # credentials/api_tokens.py
register("sgi_", _BASE32, "account invitation")  # credentials/invites.py
