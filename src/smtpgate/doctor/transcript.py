"""A record of what crossed the wire, safe to show: AUTH payloads never appear in it.

Two layers: the client marks what it sends during AUTH as secret (the line is recorded as
`AUTH PLAIN <redacted>`), and every line is also scrubbed of the known secrets in any form
they travel in (plain, base64, and the PLAIN blob), so a mistake in the first layer still
cannot leak a password into a --verbose transcript.
"""

from __future__ import annotations

import base64

REDACTED = "<redacted>"


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._secrets: set[str] = set()

    def add_secret(self, secret: str, login: str = "") -> None:
        """Remember a secret and the encodings it can take on the wire."""
        if not secret:
            return
        forms = {secret, _b64(secret)}
        if login:
            forms |= {_b64(f"\0{login}\0{secret}"), _b64(f"{login}\0{login}\0{secret}")}
        self._secrets |= {f for f in forms if len(f) >= 4}

    def note(self, text: str, label: str = "") -> None:
        self.lines.append(f"{label:>5} ** {self.scrub(text)}")

    def sent(self, line: str, *, shown: str | None = None, label: str = "") -> None:
        self.lines.append(f"{label:>5} C: {self.scrub(shown if shown is not None else line)}")

    def received(self, line: str, label: str = "") -> None:
        self.lines.append(f"{label:>5} S: {self.scrub(line)}")

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def redact_auth_command(line: str) -> str:
    """`AUTH PLAIN dGVzdA==` -> `AUTH PLAIN <redacted>`: keep the mechanism, drop the payload."""
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[0].upper() == "AUTH":
        return f"{parts[0]} {parts[1]} {REDACTED}"
    return line


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
