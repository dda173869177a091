"""Domain names as DNS holds them: checked label by label, international names as A-labels.

Every command that writes a record name or makes a key for a domain goes through
`domain_name`, so a typo never becomes a zone-file line or a key file (`x.com"` would break
the quoting of every TXT record derived from it, `a..b` is no name at all).
"""

from __future__ import annotations

import re

__all__ = ["domain_name"]

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def domain_name(text: str) -> str:
    """The name lower-cased, without the final dot, IDNA-encoded; ValueError names what is wrong."""
    value = str(text).strip().rstrip(".").lower()
    problem = f"{text!r} is not a domain name"
    try:
        value = value.encode("idna").decode("ascii") if not value.isascii() else value
    except UnicodeError:
        raise ValueError(f"{problem} (not a valid international name)") from None
    labels = value.split(".")
    if len(labels) < 2:
        raise ValueError(f"{problem}: give the full name, e.g. example.com")
    if len(value) > 253:
        raise ValueError(f"{problem}: longer than 253 characters")
    bad = next((label for label in labels if not _LABEL.fullmatch(label)), None)
    if bad is not None:
        raise ValueError(f"{problem}: the label {bad!r} must be 1 to 63 letters, digits or inner hyphens")
    if labels[-1].isdigit():
        raise ValueError(f"{problem}: an address, not a name")
    return value
