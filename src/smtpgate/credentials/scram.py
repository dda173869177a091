"""SCRAM-SHA-256 keys stored beside the secrets they come from (RFC 5802, RFC 7677).

scramp derives the keys (StoredKey and ServerKey from PBKDF2-SHA-256); this module
decides where they live and which salt they use. A SCRAM server sends the salt before
it sees the client's proof, so every credential of a login shares one salt, and the
proof can then be checked against each of them: a client may log in with SCRAM using
the account password or any of its app passwords. The salt is derived from the login
under the server's key: stable, different per login and per server, and an unknown
login gets one as well, so the exchange does not reveal which logins exist.

The keys are made whenever a secret is set (account password, new app password,
rotation) and, for secrets that predate this, at their next PLAIN or LOGIN
authentication, when the secret is at hand once more.

The trade-off, written down so nobody is surprised: a SCRAM verifier is PBKDF2 with
`[tokens] scram_iterations` rounds, cheaper to attack offline than the argon2id hash
beside it. Set `scram = false` to store none.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime

from scramp import ScramException, ScramMechanism
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from smtpgate.store.models import AccountRow, CredentialRow
from smtpgate.store.models_tokens import ScramVerifierRow

log = logging.getLogger("smtpgate.credentials")

MECHANISM = "SCRAM-SHA-256"
_SCRAM = ScramMechanism(MECHANISM)


@dataclass(frozen=True, repr=False)
class StoredScramKeys:
    """What the SASL layer needs mid-exchange: one salt and count, keys per credential id."""

    salt: bytes
    iterations: int
    keys: tuple[tuple[str, bytes, bytes], ...] = field(default=())  # (credential id, StoredKey, ServerKey)

    def __repr__(self) -> str:
        return f"StoredScramKeys(iterations={self.iterations}, credentials={[k[0] for k in self.keys]})"


def derive_salt(server_key: bytes, login: str) -> bytes:
    return hmac.new(server_key, b"scram-sha-256 salt\0" + login.encode("utf-8"), hashlib.sha256).digest()[:16]


def make_keys(secret: str, salt: bytes, iterations: int) -> tuple[bytes, bytes] | None:
    """(StoredKey, ServerKey); None for a secret SASLprep refuses (no SCRAM for it)."""
    try:
        _, stored_key, server_key, _ = _SCRAM.make_auth_info(secret, iteration_count=iterations, salt=salt)
    except ScramException:
        return None
    return stored_key, server_key


def store_keys(db: Session, row: CredentialRow, login: str, secret: str, *,
               server_key: bytes, iterations: int, now: datetime) -> None:
    """Make (or replace) the SCRAM keys of one credential."""
    salt = derive_salt(server_key, login)
    keys = make_keys(secret, salt, iterations)
    existing = db.get(ScramVerifierRow, row.id)
    if keys is None:
        if existing is not None:
            db.delete(existing)
        log.info("no SCRAM keys for credential %s: the secret is not valid under SASLprep", row.id)
        return
    if existing is None:
        existing = ScramVerifierRow(credential_id=row.id, account_id=row.account_id)
        db.add(existing)
    existing.salt, existing.iterations = salt, iterations
    existing.stored_key, existing.server_key = keys
    existing.created_at = now


def is_current(db: Session, row: CredentialRow, login: str, *, server_key: bytes, iterations: int) -> bool:
    existing = db.get(ScramVerifierRow, row.id)
    return existing is not None and existing.iterations == iterations and existing.salt == derive_salt(server_key, login)


def lookup(db: Session, login: str, *, server_key: bytes, iterations: int) -> StoredScramKeys:
    """The keys of a login's unrevoked credentials; an unknown login gets none, the same way.

    One query whatever the login: the account is found by the join, not by a query of its
    own, so an unknown login costs what a known one does and the time of the first SCRAM
    step says nothing about which logins exist.
    """
    salt = derive_salt(server_key, login)
    rows = db.execute(
        select(ScramVerifierRow.credential_id, ScramVerifierRow.stored_key, ScramVerifierRow.server_key)
        .join(CredentialRow, CredentialRow.id == ScramVerifierRow.credential_id)
        .join(AccountRow, AccountRow.id == ScramVerifierRow.account_id)
        .where(
            AccountRow.login == login,
            ScramVerifierRow.salt == salt,
            ScramVerifierRow.iterations == iterations,
            CredentialRow.revoked_at.is_(None),
        )
        .order_by(ScramVerifierRow.credential_id)
    ).all()
    return StoredScramKeys(salt, iterations, tuple((r[0], bytes(r[1]), bytes(r[2])) for r in rows))


def forget(db: Session, credential_id: str) -> None:
    db.execute(delete(ScramVerifierRow).where(ScramVerifierRow.credential_id == credential_id))
