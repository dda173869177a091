"""Owners' web console sessions: server-side, ended by time, by sign-out, and by every
change that should end them (password change, account disabled, password revoked).

The browser holds a random token; the table holds its SHA-256, so a copy of the database
signs nobody in. A session is `second-factor` after the password and `full` after the
second step (or at once when the account has no second factor); each promotion issues a
new token, so a token seen before sign-in is worth nothing after it. The CSRF token of a
session is an HMAC of the session's token under the server's key: nothing to store, and
nothing another session can reuse.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from smtpgate.store import Store
from smtpgate.store.models import AccountRow
from smtpgate.store.models_portal import WebSessionRow

FULL = "full"
SECOND_FACTOR = "second-factor"
TOUCH_EVERY = timedelta(seconds=30)  # last_seen is written at most this often
MAX_SECOND_FACTOR_FAILURES = 5       # then the half-signed-in session ends


@dataclass(frozen=True)
class WebSessionSettings:
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)
    second_factor_within: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class WebSession:
    """A live session as a face sees it (never the token's hash)."""

    account_id: int
    login: str
    stage: str
    created_at: datetime
    challenge: str

    @property
    def complete(self) -> bool:
        return self.stage == FULL


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def end_all(db: Session, account_id: int) -> None:
    """Inside a credential change's transaction: every session of the account ends with it."""
    db.execute(delete(WebSessionRow).where(WebSessionRow.account_id == account_id))


class WebSessions:
    def __init__(self, store: Store, *, key: bytes, clock: Callable[[], datetime],
                 settings: WebSessionSettings = WebSessionSettings()) -> None:
        self._store = store
        self._key = hmac.new(key, b"smtpgate web csrf", hashlib.sha256).digest()
        self._clock = clock
        self.settings = settings

    def start(self, account_id: int, stage: str, *, remote_ip: str = "", user_agent: str = "") -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        lifetime = self.settings.second_factor_within if stage == SECOND_FACTOR else self.settings.absolute
        with self._store.session() as db:
            db.add(WebSessionRow(
                id=_digest(token), account_id=account_id, stage=stage, created_at=now, last_seen_at=now,
                expires_at=now + lifetime, remote_ip=remote_ip[:64], user_agent=user_agent[:200], challenge="", failures=0,
            ))
        return token

    def lookup(self, token: str) -> WebSession | None:
        """The live session of this token, its idle time renewed; None when it ended."""
        if not token or len(token) > 100:
            return None
        now = self._clock()
        with self._store.session() as db:
            row = db.get(WebSessionRow, _digest(token))
            if row is None:
                return None
            account = db.get(AccountRow, row.account_id)
            if (account is None or not account.enabled or row.expires_at <= now
                    or row.last_seen_at + self.settings.idle <= now):
                db.delete(row)
                return None
            if now - row.last_seen_at >= TOUCH_EVERY:
                row.last_seen_at = now
            return WebSession(row.account_id, account.login, row.stage, row.created_at, row.challenge)

    def promote(self, token: str) -> str:
        """The second step is done: a new token, full rights, the absolute timeout from now."""
        fresh = secrets.token_urlsafe(32)
        now = self._clock()
        with self._store.session() as db:
            row = db.get(WebSessionRow, _digest(token))
            if row is None:
                raise LookupError("the session ended")
            db.add(WebSessionRow(
                id=_digest(fresh), account_id=row.account_id, stage=FULL, created_at=now, last_seen_at=now,
                expires_at=now + self.settings.absolute, remote_ip=row.remote_ip, user_agent=row.user_agent,
                challenge="", failures=0,
            ))
            db.delete(row)
        return fresh

    def end(self, token: str) -> None:
        with self._store.session() as db:
            db.execute(delete(WebSessionRow).where(WebSessionRow.id == _digest(token)))

    def end_account(self, account_id: int) -> None:
        with self._store.session() as db:
            end_all(db, account_id)

    def count(self, account_id: int) -> int:
        with self._store.session() as db:
            return len(db.scalars(select(WebSessionRow.id).where(WebSessionRow.account_id == account_id)).all())

    def set_challenge(self, token: str, challenge: str) -> None:
        with self._store.session() as db:
            row = db.get(WebSessionRow, _digest(token))
            if row is not None:
                row.challenge = challenge[:200]

    def take_challenge(self, token: str) -> str:
        """The challenge of the ceremony under way, used once."""
        with self._store.session() as db:
            row = db.get(WebSessionRow, _digest(token))
            if row is None:
                return ""
            challenge, row.challenge = row.challenge, ""
            return challenge

    def failed_second_factor(self, token: str) -> bool:
        """Count a wrong second factor; True when the session ended for too many."""
        with self._store.session() as db:
            row = db.get(WebSessionRow, _digest(token))
            if row is None:
                return True
            row.failures += 1
            if row.failures >= MAX_SECOND_FACTOR_FAILURES:
                db.delete(row)
                return True
            return False

    def csrf_token(self, token: str) -> str:
        return hmac.new(self._key, b"session:" + token.encode("utf-8"), hashlib.sha256).hexdigest()

    def anonymous_csrf_token(self, nonce: str) -> str:
        """For the forms before sign-in: bound to a random cookie of the browser's."""
        return hmac.new(self._key, b"anonymous:" + nonce.encode("utf-8"), hashlib.sha256).hexdigest()

    @staticmethod
    def same(given: str, expected: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
