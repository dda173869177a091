"""Tag=value records: DKIM keys (RFC 6376 3.6.1), MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) TXT."""

from __future__ import annotations

import base64
import binascii

__all__ = ["TagError", "dkim_public_key", "parse_tags"]


class TagError(ValueError):
    pass


def parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if not key.strip():
            continue
        if not sep:
            raise TagError(f"{part.strip()!r} is not tag=value")
        tags[key.strip().lower()] = "".join(value.split())
    return tags


def dkim_public_key(text: str) -> tuple[str, str]:
    """(k=, p=) of a DKIM key record; TagError when it is not one."""
    tags = parse_tags(text)
    if tags.get("v", "DKIM1") != "DKIM1":
        raise TagError(f"v={tags['v']}: a DKIM key record has v=DKIM1")
    if "p" not in tags:
        raise TagError("the p= tag (the public key) is missing")
    if not tags["p"]:
        raise TagError("p= is empty: the key is revoked")
    try:
        base64.b64decode(tags["p"], validate=True)
    except (binascii.Error, ValueError):
        raise TagError("p= is not valid base64") from None
    return tags.get("k", "rsa").lower(), tags["p"]
