"""Leak reports from secret scanners, in the shape of GitHub's secret-scanning partner programme.

A scanner that finds one of our secrets in public code POSTs a JSON array of
`{"token", "type", "url", "source"}`, signed with ECDSA P-256 (SHA-256) over the raw body:
the key's id in `Github-Public-Key-Identifier`, the base64 DER signature in
`Github-Public-Key-Signature`. The public keys come from a file the operator configures
(`[incidents] leak_report_keys`), in the JSON shape the programme publishes them:
`{"public_keys": [{"key_identifier": "...", "key": "-----BEGIN PUBLIC KEY-----..."}]}`.

The reply names each token only by its SHA-256, with a label: `true_positive` when it is
one of our secrets (well-formed and known here), `false_positive` otherwise. A token is
never logged or kept: only its hash and the id of the credential it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from smtpgate.errors import Forbidden, Invalid, Unauthorized, Unavailable

KEY_ID_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"
MAX_BODY = 1024 * 1024
MAX_TOKENS = 1000


@dataclass(frozen=True)
class ReportedToken:
    token: str = field(repr=False)
    type: str
    url: str
    source: str

    @property
    def token_hash(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()


class ReporterKeys:
    """The public keys leak reports are checked against, read from the configured file."""

    def __init__(self, keys: dict[str, ec.EllipticCurvePublicKey]) -> None:
        self.keys = keys

    @classmethod
    def load(cls, path: Path) -> ReporterKeys:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            entries = document["public_keys"]
            keys: dict[str, ec.EllipticCurvePublicKey] = {}
            for entry in entries:
                key = load_pem_public_key(str(entry["key"]).encode())
                if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                    raise ValueError(f"key {entry['key_identifier']} is not an ECDSA P-256 key")
                keys[str(entry["key_identifier"])] = key
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"the leak reporters' keys in {path} cannot be read: {type(exc).__name__}: {exc}"[:400],
                              "Fix [incidents] leak_report_keys: a JSON file with public_keys "
                              "[{key_identifier, key (PEM)}].", code="leak-keys-unreadable", path=str(path)) from None
        return cls(keys)

    def verify(self, body: bytes, key_id: str | None, signature: str | None) -> str:
        """The key id that signed the body; Unauthorized without a signature, Forbidden for a bad one."""
        if not key_id or not signature:
            raise Unauthorized(f"a leak report must be signed ({KEY_ID_HEADER} and {SIGNATURE_HEADER})",
                               code="unauthorized")
        key = self.keys.get(key_id.strip())
        if key is None:
            raise Forbidden("the leak report is signed with an unknown key", code="leak-signature-invalid",
                            key_id=key_id[:100])
        try:
            key.verify(base64.b64decode(signature.strip(), validate=True), body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise Forbidden("the leak report's signature does not match its body", code="leak-signature-invalid",
                            key_id=key_id[:100]) from None
        return key_id.strip()


def parse_report(body: bytes) -> list[ReportedToken]:
    """The reported tokens; Invalid (naming what is wrong, never a token) for anything else."""
    if len(body) > MAX_BODY:
        raise Invalid(f"a leak report is at most {MAX_BODY} bytes", code="leak-report-too-large", field="body")
    try:
        items: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Invalid("a leak report is a JSON array", code="leak-report-malformed", field="body") from None
    if not isinstance(items, list) or len(items) > MAX_TOKENS:
        raise Invalid(f"a leak report is a JSON array of at most {MAX_TOKENS} objects", code="leak-report-malformed",
                      field="body")
    found = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("token"), str) or not item["token"]:
            raise Invalid(f"item {index}: expected an object with a token string", code="leak-report-malformed",
                          field=f"{index}.token")
        found.append(ReportedToken(item["token"][:4096], str(item.get("type", ""))[:100], str(item.get("url", ""))[:2000],
                                   str(item.get("source", ""))[:100]))
    return found
