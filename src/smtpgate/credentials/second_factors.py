"""Second factors of an account: TOTP keys, WebAuthn credentials and recovery codes.

Owned by the credential service (it builds this with its store, key and transaction), so
that turning the first factor on and the last one off changes what SMTP accepts in the
same transaction that every process's login cache hears of: with a factor, the account's
main password no longer works for SMTP (`require_app_passwords`, 534 5.7.9); after the
last one is removed, what the account required before comes back.

TOTP is RFC 6238 through `pyotp` (30 s, 6 digits, SHA-1, one step of drift); a code is
accepted once: the step it was made for is remembered, and that step and older ones are
refused afterwards. The key is stored encrypted (AES-GCM under a key derived from the
server's), WebAuthn ceremonies are `webauthn` (py_webauthn), recovery codes are random,
shown once and stored as HMAC-SHA256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from smtpgate.credentials.errors import AccountNotFound, CredentialError
from smtpgate.credentials.invalidation import Change
from smtpgate.credentials.scopes import normalize_address
from smtpgate.errors import Kind
from smtpgate.store import Store
from smtpgate.store.models import AccountRow
from smtpgate.store.models_portal import RecoveryCodeRow, SecondFactorRow, TwoFactorStateRow

TOTP = "totp"
WEBAUTHN = "webauthn"
RECOVERY_CODES = 10
ISSUER = "smtpgate"
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from paper

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

Changing = Callable[[], AbstractContextManager[tuple[Session, Callable[[Change], None]]]]


class SecondFactorError(CredentialError):
    code = "second-factor-refused"
    kind = Kind.INVALID


class FactorNotFound(CredentialError):
    code = "factor-not-found"
    kind = Kind.NOT_FOUND


@dataclass(frozen=True)
class FactorInfo:
    id: int
    kind: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class TotpEnrolment:
    """A TOTP key waiting for its first code: shown as a QR code and as text."""

    factor_id: int
    secret: str
    uri: str


@dataclass(frozen=True)
class FactorsOn:
    """What turning a factor on returned: the recovery codes when it was the first (shown once)."""

    factor: FactorInfo
    recovery_codes: tuple[str, ...] = ()


def _info(row: SecondFactorRow) -> FactorInfo:
    return FactorInfo(row.id, row.kind, row.name, row.created_at, row.last_used_at)


def _normal_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


class SecondFactors:
    def __init__(self, store: Store, *, key: bytes, clock: Callable[[], datetime], changing: Changing) -> None:
        self._store = store
        self._seal_key = hmac.new(key, b"smtpgate totp key", hashlib.sha256).digest()
        self._code_key = hmac.new(key, b"smtpgate recovery code", hashlib.sha256).digest()
        self._clock = clock
        self._changing = changing

    # ------------------------------------------------------------------ reading

    def _account(self, db: Session, login: str) -> AccountRow:
        row = db.scalar(select(AccountRow).where(AccountRow.login == normalize_address(login)))
        if row is None:
            raise AccountNotFound(f"no account {login}", login=login)
        return row

    @staticmethod
    def _enabled(db: Session, account_id: int, kind: str | None = None) -> list[SecondFactorRow]:
        q = select(SecondFactorRow).where(SecondFactorRow.account_id == account_id, SecondFactorRow.enabled.is_(True))
        if kind:
            q = q.where(SecondFactorRow.kind == kind)
        return list(db.scalars(q.order_by(SecondFactorRow.id)))

    def list(self, login: str) -> list[FactorInfo]:
        with self._store.session() as db:
            return [_info(r) for r in self._enabled(db, self._account(db, login).id)]

    def recovery_codes_left(self, login: str) -> int:
        with self._store.session() as db:
            account = self._account(db, login)
            return int(db.scalar(select(func.count()).select_from(RecoveryCodeRow).where(
                RecoveryCodeRow.account_id == account.id, RecoveryCodeRow.used_at.is_(None))) or 0)

    # --------------------------------------------------------------------- TOTP

    @cached_property
    def _seal(self) -> AESGCM:
        """Built on first use: a command that never meets a second factor loads no cryptography."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._seal_key)

    def _encrypt(self, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._seal.encrypt(nonce, secret.encode("ascii"), b"totp")

    def _decrypt(self, blob: bytes) -> str:
        return self._seal.decrypt(blob[:12], blob[12:], b"totp").decode("ascii")

    def totp_begin(self, login: str, name: str = "Authenticator app") -> TotpEnrolment:
        """A new key, off until `totp_confirm` gets a code made with it (an older pending one is dropped)."""
        import pyotp

        secret = pyotp.random_base32()
        with self._store.session() as db:
            account = self._account(db, login)
            db.execute(delete(SecondFactorRow).where(
                SecondFactorRow.account_id == account.id, SecondFactorRow.kind == TOTP, SecondFactorRow.enabled.is_(False)))
            row = SecondFactorRow(account_id=account.id, kind=TOTP, name=name.strip()[:200] or "Authenticator app",
                                  enabled=False, secret=self._encrypt(secret), sign_count=0, transports="",
                                  created_at=self._clock())
            db.add(row)
            db.flush()
            uri = pyotp.TOTP(secret).provisioning_uri(name=account.login, issuer_name=ISSUER)
            return TotpEnrolment(row.id, secret, uri)

    def totp_confirm(self, login: str, factor_id: int, code: str) -> FactorsOn:
        with self._changing() as (db, changed):
            account = self._account(db, login)
            row = db.get(SecondFactorRow, factor_id)
            if row is None or row.account_id != account.id or row.kind != TOTP or row.enabled:
                raise FactorNotFound("no authenticator app is waiting to be turned on; start again", factor=factor_id)
            if not self._totp_matches(row, code):
                raise SecondFactorError("the code is not right; type the code your app shows now", code="wrong-code",
                                        field="code")
            row.enabled = True
            return self._turned_on(db, changed, account, row)

    def _totp_matches(self, row: SecondFactorRow, code: str) -> bool:
        """RFC 6238 with one step of drift; a step already used (or older) is refused."""
        import pyotp

        code = _normal_code(code)
        if len(code) != 6 or not code.isdigit():
            return False
        totp = pyotp.TOTP(self._decrypt(row.secret))
        now = int(self._clock().timestamp())
        step = now // totp.interval
        for candidate in (step, step - 1, step + 1):
            if candidate <= row.sign_count:
                continue
            if hmac.compare_digest(totp.at(candidate * totp.interval), code):
                row.sign_count = candidate
                row.last_used_at = self._clock()
                return True
        return False

    def verify_totp(self, login: str, code: str) -> bool:
        with self._store.session() as db:
            account = self._account(db, login)
            return any(self._totp_matches(row, code) for row in self._enabled(db, account.id, TOTP))

    # ----------------------------------------------------------- recovery codes

    def _hash_code(self, code: str) -> str:
        return hmac.new(self._code_key, _normal_code(code).encode("utf-8"), hashlib.sha256).hexdigest()

    def _new_codes(self, db: Session, account_id: int) -> tuple[str, ...]:
        db.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.account_id == account_id))
        codes = []
        now = self._clock()
        for _ in range(RECOVERY_CODES):
            raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
            code = f"{raw[:5]}-{raw[5:]}"
            codes.append(code)
            db.add(RecoveryCodeRow(account_id=account_id, code_hash=self._hash_code(code), created_at=now))
        return tuple(codes)

    def regenerate_recovery_codes(self, login: str) -> tuple[str, ...]:
        with self._store.session() as db:
            account = self._account(db, login)
            if not self._enabled(db, account.id):
                raise SecondFactorError("recovery codes come with a second factor; turn one on first",
                                        code="no-second-factor")
            return self._new_codes(db, account.id)

    def use_recovery_code(self, login: str, code: str) -> bool:
        """True once per code: it is spent by this call."""
        digest = self._hash_code(code)
        with self._store.session() as db:
            account = self._account(db, login)
            for row in db.scalars(select(RecoveryCodeRow).where(
                    RecoveryCodeRow.account_id == account.id, RecoveryCodeRow.used_at.is_(None))):
                if hmac.compare_digest(row.code_hash, digest):
                    row.used_at = self._clock()
                    return True
        return False

    # ----------------------------------------------------------------- WebAuthn

    def webauthn_registration(self, login: str, *, rp_id: str, rp_name: str) -> tuple[str, str]:
        """The options for `navigator.credentials.create()` (JSON) and the challenge to keep."""
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            PublicKeyCredentialDescriptor,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        with self._store.session() as db:
            account = self._account(db, login)
            existing = [PublicKeyCredentialDescriptor(id=base64url_to_bytes(r.credential_id or ""))
                        for r in self._enabled(db, account.id, WEBAUTHN)]
            options = generate_registration_options(
                rp_id=rp_id, rp_name=rp_name, user_id=f"smtpgate:{account.id}".encode(), user_name=account.login,
                user_display_name=account.display_name or account.login, exclude_credentials=existing,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
            )
        return options_to_json(options), bytes_to_base64url(options.challenge)

    def webauthn_register(self, login: str, name: str, response: str, *, challenge: str, rp_id: str,
                          origin: str) -> FactorsOn:
        from webauthn import verify_registration_response
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
        from webauthn.helpers.exceptions import WebAuthnException

        if not challenge:
            raise SecondFactorError("the security key step timed out; try again", code="webauthn-failed")
        try:
            verified = verify_registration_response(
                credential=response, expected_challenge=base64url_to_bytes(challenge), expected_rp_id=rp_id,
                expected_origin=origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise SecondFactorError(f"the security key's answer was refused ({type(exc).__name__})",
                                    code="webauthn-failed") from None
        transports = _transports(response)
        with self._changing() as (db, changed):
            account = self._account(db, login)
            row = SecondFactorRow(
                account_id=account.id, kind=WEBAUTHN, name=name.strip()[:200] or "Passkey", enabled=True,
                secret=verified.credential_public_key, credential_id=bytes_to_base64url(verified.credential_id),
                sign_count=verified.sign_count, transports=",".join(transports), created_at=self._clock(),
            )
            db.add(row)
            db.flush()
            return self._turned_on(db, changed, account, row)

    def webauthn_authentication(self, login: str, *, rp_id: str) -> tuple[str, str] | None:
        """Options for `navigator.credentials.get()` and the challenge; None: the account has no key."""
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
        from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

        with self._store.session() as db:
            account = self._account(db, login)
            keys = [PublicKeyCredentialDescriptor(id=base64url_to_bytes(r.credential_id or ""))
                    for r in self._enabled(db, account.id, WEBAUTHN)]
        if not keys:
            return None
        options = generate_authentication_options(rp_id=rp_id, allow_credentials=keys,
                                                  user_verification=UserVerificationRequirement.PREFERRED)
        return options_to_json(options), bytes_to_base64url(options.challenge)

    def verify_webauthn(self, login: str, response: str, *, challenge: str, rp_id: str, origin: str) -> bool:
        from webauthn import verify_authentication_response
        from webauthn.helpers import base64url_to_bytes
        from webauthn.helpers.exceptions import WebAuthnException

        if not challenge:
            return False
        try:
            credential_id = str(json.loads(response).get("rawId") or json.loads(response).get("id") or "")
        except (ValueError, AttributeError):
            return False
        with self._store.session() as db:
            account = self._account(db, login)
            row = next((r for r in self._enabled(db, account.id, WEBAUTHN) if r.credential_id == credential_id), None)
            if row is None:
                return False
            try:
                verified = verify_authentication_response(
                    credential=response, expected_challenge=base64url_to_bytes(challenge), expected_rp_id=rp_id,
                    expected_origin=origin, credential_public_key=row.secret, credential_current_sign_count=row.sign_count,
                )
            except (WebAuthnException, ValueError, KeyError, TypeError):
                return False
            row.sign_count = verified.new_sign_count
            row.last_used_at = self._clock()
            return True

    # ------------------------------------------------------------ on and off

    def _turned_on(self, db: Session, changed: Callable[[Change], None], account: AccountRow,
                   row: SecondFactorRow) -> FactorsOn:
        """The first factor: SMTP now needs app passwords, and ten recovery codes are made."""
        others = [r for r in self._enabled(db, account.id) if r.id != row.id]
        codes: tuple[str, ...] = ()
        if not others:
            if db.get(TwoFactorStateRow, account.id) is None:
                db.add(TwoFactorStateRow(account_id=account.id, required_before=account.require_app_passwords))
            account.require_app_passwords = True
            account.updated_at = self._clock()
            changed(Change(account_id=account.id))
            codes = self._new_codes(db, account.id)
        return FactorsOn(_info(row), codes)

    def remove(self, login: str, factor_id: int) -> int:
        """Remove one factor; returns how many are left. After the last, SMTP is as it was before."""
        with self._changing() as (db, changed):
            account = self._account(db, login)
            row = db.get(SecondFactorRow, factor_id)
            if row is None or row.account_id != account.id or not row.enabled:
                raise FactorNotFound(f"no second factor {factor_id} on this account", factor=factor_id)
            db.delete(row)
            db.flush()
            left = len(self._enabled(db, account.id))
            if not left:
                state = db.get(TwoFactorStateRow, account.id)
                account.require_app_passwords = state.required_before if state is not None else False
                if state is not None:
                    db.delete(state)
                db.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.account_id == account.id))
                account.updated_at = self._clock()
                changed(Change(account_id=account.id))
            return left


def _transports(response: str) -> list[str]:
    try:
        data: Any = json.loads(response)
        found = data.get("response", {}).get("transports") or []
    except (ValueError, AttributeError):
        return []
    return [str(t)[:20] for t in found if isinstance(t, str)][:8]
