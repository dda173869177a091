"""Self-service for account owners (the web console): sign-in, second factors, their own
app passwords, activity, alerts and password.

Sign-in is a login like SMTP AUTH: the guard refuses a banned source and counts every
failure against the same source, network and login (so one allow-list and one set of bans
cover both), and every attempt is in the audit (listener `web`). An owner acts on their
own account only: every method takes `Actor.owner(login, ip)` and touches that login and
nothing else; mutations are journaled like an operator's (face `web`).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from smtpgate.audit import events as ev
from smtpgate.audit.events import AuditEvent, StoredEvent
from smtpgate.audit.store import Alert
from smtpgate.credentials import AccountInfo, CredentialInfo, CredentialKind, IssuedSecret, Principal, ScopeRequest
from smtpgate.credentials.second_factors import TOTP, WEBAUTHN, FactorInfo, FactorsOn, TotpEnrolment
from smtpgate.credentials.web_sessions import FULL, SECOND_FACTOR, WebSession
from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Forbidden, Invalid, NotFound, OpError, Unauthorized
from smtpgate.guard import Refusal
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration

RECOVERY = "recovery-code"
METHODS = (TOTP, WEBAUTHN, RECOVERY)


class SourceBanned(OpError):
    code = "source-banned"
    kind = Forbidden.kind

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed sign-ins from your address; try again later", retry_after=retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    """A session token for the browser; `complete` False: the second factor is next."""

    token: str
    login: str
    complete: bool


@dataclass(frozen=True)
class Security:
    """The two-factor page: the factors on, the recovery codes left, the sessions open."""

    factors: list[FactorInfo]
    recovery_codes_left: int

    @property
    def on(self) -> bool:
        return bool(self.factors)


def _wrong() -> Unauthorized:
    return Unauthorized("the email address or the password is not right", code="sign-in-failed")


class Portal(Concern):
    # ------------------------------------------------------------------ sign-in

    async def sign_in(self, login: str, password: str, *, ip: str, user_agent: str = "") -> SignedIn:
        login = login.strip().lower()
        if not login or not password:
            raise Invalid("type your email address and your password", code="sign-in-incomplete",
                          field="login" if not login else "password")
        await self._before(ip, login, "password")
        result = await asyncio.to_thread(self.rt.credentials.verify_owner_password, login, password, ip)
        if not isinstance(result, Principal):
            await self._failed(ip, login, "password", str(result.reason), result.credential_id)
            raise _wrong()
        self._audit(ev.OK, "", ip, login, "password", result.credential_id)
        has_factor = bool(await asyncio.to_thread(self.rt.credentials.second_factors.list, login))
        stage = SECOND_FACTOR if has_factor else FULL
        sessions, account_id = self.rt.credentials.web_sessions, int(result.account_id)  # a person's account
        token = await asyncio.to_thread(lambda: sessions.start(account_id, stage, remote_ip=ip, user_agent=user_agent))
        return SignedIn(token, login, not has_factor)

    async def second_factor(self, token: str, method: str, answer: str, *, ip: str, rp_id: str = "",
                            origin: str = "") -> SignedIn:
        """The second step: a TOTP code, a WebAuthn assertion (JSON) or a recovery code."""
        sessions = self.rt.credentials.web_sessions
        session = await asyncio.to_thread(sessions.lookup, token)
        if session is None or session.stage != SECOND_FACTOR:
            raise Unauthorized("the sign-in timed out; start again", code="session-ended")
        if method not in METHODS:
            raise Invalid(f"{method!r} is not a second factor", code="invalid-choice", field="method")
        login = session.login
        await self._before(ip, login, method)
        factors = self.rt.credentials.second_factors
        if method == TOTP:
            ok = await asyncio.to_thread(factors.verify_totp, login, answer)
        elif method == RECOVERY:
            ok = await asyncio.to_thread(factors.use_recovery_code, login, answer)
        else:
            challenge = await asyncio.to_thread(sessions.take_challenge, token)
            ok = await asyncio.to_thread(factors.verify_webauthn, login, answer, challenge=challenge, rp_id=rp_id,
                                         origin=origin)
        if not ok:
            await self._failed(ip, login, method, ev.WRONG_SECOND_FACTOR, None)
            ended = await asyncio.to_thread(sessions.failed_second_factor, token)
            if ended:
                raise Unauthorized("too many wrong codes; sign in again", code="session-ended")
            raise Unauthorized("that code is not right", code="wrong-code", field="code")
        self._audit(ev.OK, "", ip, login, method, None)
        fresh = await asyncio.to_thread(sessions.promote, token)
        return SignedIn(fresh, login, True)

    def second_factor_kinds(self, token: str) -> set[str]:
        """Which second factors a half-signed-in session may use (to show only those)."""
        session = self.session(token)
        if session is None:
            return set()
        return {factor.kind for factor in self.rt.credentials.second_factors.list(session.login)}

    def webauthn_sign_in_options(self, token: str, *, rp_id: str) -> str | None:
        """Options for the browser's security key step of sign-in (None: the account has no key)."""
        session = self.session(token)
        if session is None or session.stage != SECOND_FACTOR:
            raise Unauthorized("the sign-in timed out; start again", code="session-ended")
        found = self.rt.credentials.second_factors.webauthn_authentication(session.login, rp_id=rp_id)
        if found is None:
            return None
        options, challenge = found
        self.rt.credentials.web_sessions.set_challenge(token, challenge)
        return options

    async def _before(self, ip: str, login: str, method: str) -> None:
        refusal = await self.rt.guard.before_auth(ip, login, guessable=True)
        if isinstance(refusal, Refusal):
            self._audit(ev.FAIL, ev.BANNED, ip, login, method, None)
            retry = max(1, math.ceil(refusal.ban.until - time.time())) if refusal.ban is not None else 60
            raise SourceBanned(retry)

    async def _failed(self, ip: str, login: str, method: str, reason: str, credential_id: str | None) -> None:
        outcome = await self.rt.guard.auth_failed(ip, login)
        details: dict[str, object] = {"source_failures": outcome.ip_failures} if outcome.ip_failures else {}
        if outcome.new_bans:
            details["bans"] = [b.network for b in outcome.new_bans]
        self._audit(ev.FAIL, reason, ip, login, method, credential_id, details)

    def _audit(self, result: str, reason: str, ip: str, login: str, method: str, credential_id: str | None,
               details: dict[str, object] | None = None) -> None:
        self.rt.audit.record(AuditEvent(kind=ev.AUTH, result=result, reason=reason, listener="web", remote_ip=ip,
                                        mechanism=method, login=login, credential_id=credential_id,
                                        details=details or {}))

    # ----------------------------------------------------------------- sessions

    def session(self, token: str) -> WebSession | None:
        return self.rt.credentials.web_sessions.lookup(token)

    def sign_out(self, token: str) -> None:
        self.rt.credentials.web_sessions.end(token)

    def csrf_token(self, token: str) -> str:
        return self.rt.credentials.web_sessions.csrf_token(token)

    def anonymous_csrf_token(self, nonce: str) -> str:
        return self.rt.credentials.web_sessions.anonymous_csrf_token(nonce)

    @staticmethod
    def _login(actor: Actor) -> str:
        login = actor.owned_login
        if not login:
            raise Forbidden("only an account's owner may do this", code="owner-only")
        return login

    # ------------------------------------------------------------ the account

    def account(self, actor: Actor) -> AccountInfo:
        return self.rt.credentials.get_account(self._login(actor))

    def apps(self, actor: Actor) -> list[CredentialInfo]:
        """Every credential of the account, newest first (the account password too)."""
        infos = self.rt.credentials.list_credentials(account=self._login(actor))
        return sorted(infos, key=lambda c: c.created_at, reverse=True)

    def _own(self, actor: Actor, credential_id: str) -> CredentialInfo:
        login = self._login(actor)
        try:
            info = self.rt.credentials.get_credential(credential_id)
        except OpError:
            info = None
        if info is None or info.account != login:
            raise NotFound(f"no app password {credential_id} on your account", code="credential-not-found")
        return info

    def needs_second_factor(self, actor: Actor) -> bool:
        """The account's policy requires a second factor and it has none yet: that comes before anything else."""
        login = self._login(actor)
        return self.rt.credentials.get_account(login).require_second_factor and not self.rt.credentials.second_factors.list(login)

    def _second_factor_first(self, actor: Actor) -> None:
        if self.needs_second_factor(actor):
            raise Forbidden("your account needs a second factor first: add one on the Two-factor page",
                            code="second-factor-required")

    def create_app(self, actor: Actor, name: str, *, sender: str = "", network: str = "",
                   expires: str = "") -> IssuedSecret:
        login = self._login(actor)
        self._second_factor_first(actor)
        scopes = ScopeRequest(allowed_senders=(sender.strip(),) if sender.strip() else (),
                              allowed_networks=(network.strip(),) if network.strip() else ())
        lifetime = duration(expires.strip(), "expires") if expires.strip() else None
        with self.journal.step(actor, "app-password.create", login, needs=Role.VIEWER, name=name,
                               allow_from=list(scopes.allowed_senders), allow_ip=list(scopes.allowed_networks),
                               expires=expires or None) as details:
            issued = self.rt.credentials.create_app_password(login, name, scopes=scopes, expires_in=lifetime,
                                                             actor=actor.name)
            details["credential"] = issued.credential.id
        return issued

    def rotate_app(self, actor: Actor, credential_id: str) -> IssuedSecret:
        info = self._own(actor, credential_id)
        self._second_factor_first(actor)
        with self.journal.step(actor, "credential.rotate", info.id, needs=Role.VIEWER) as details:
            issued = self.rt.credentials.rotate(info.id, overlap=timedelta(0), actor=actor.name)
            details["successor"] = issued.credential.id
        return issued

    def revoke_app(self, actor: Actor, credential_id: str) -> CredentialInfo:
        info = self._own(actor, credential_id)
        if info.kind is CredentialKind.PASSWORD:
            raise Invalid("the account password is changed on the Password page, not revoked here",
                          code="not-revocable-here")
        with self.journal.step(actor, "credential.revoke", info.id, needs=Role.VIEWER):
            return self.rt.credentials.revoke(info.id, actor=actor.name)

    def activity(self, actor: Actor, *, limit: int = 100) -> list[StoredEvent]:
        """The account's sign-ins: SMTP AUTH and the web console's, with source and outcome."""
        self.rt.audit.flush(2.0)
        return self.rt.audit_store.query(account=self._login(actor), kind=ev.AUTH, limit=limit)

    def alerts(self, actor: Actor, *, limit: int = 100) -> list[Alert]:
        return self.rt.audit_store.alerts(login=self._login(actor), limit=limit)

    # ----------------------------------------------------------------- password

    def assess_password(self, actor: Actor, password: str) -> tuple[int, list[str], str]:
        return self.rt.credentials.assess_password(self._login(actor), password)

    def change_password(self, actor: Actor, current: str, new: str) -> None:
        """The current password first; then every session of the account ends, this one too."""
        login = self._login(actor)
        result = self.rt.credentials.verify_owner_password(login, current, actor.remote_ip)
        if not isinstance(result, Principal):
            raise Unauthorized("the current password is not right", code="wrong-password", field="current")
        with self.journal.step(actor, "account.set-password", login, needs=Role.VIEWER):
            self.rt.credentials.set_password(login, new, actor=actor.name)

    # --------------------------------------------------------------- two-factor

    def security(self, actor: Actor) -> Security:
        login = self._login(actor)
        factors = self.rt.credentials.second_factors
        return Security(factors.list(login), factors.recovery_codes_left(login))

    def totp_begin(self, actor: Actor) -> TotpEnrolment:
        return self.rt.credentials.second_factors.totp_begin(self._login(actor))

    def totp_confirm(self, actor: Actor, factor_id: int, code: str) -> FactorsOn:
        login = self._login(actor)
        with self.journal.step(actor, "second-factor.add", login, needs=Role.VIEWER, kind=TOTP):
            return self.rt.credentials.second_factors.totp_confirm(login, factor_id, code)

    def webauthn_begin(self, actor: Actor, token: str, *, rp_id: str, rp_name: str = "smtpgate") -> str:
        login = self._login(actor)
        options, challenge = self.rt.credentials.second_factors.webauthn_registration(login, rp_id=rp_id, rp_name=rp_name)
        self.rt.credentials.web_sessions.set_challenge(token, challenge)
        return options

    def webauthn_finish(self, actor: Actor, token: str, name: str, response: str, *, rp_id: str,
                        origin: str) -> FactorsOn:
        login = self._login(actor)
        challenge = self.rt.credentials.web_sessions.take_challenge(token)
        with self.journal.step(actor, "second-factor.add", login, needs=Role.VIEWER, kind=WEBAUTHN):
            return self.rt.credentials.second_factors.webauthn_register(
                login, name, response, challenge=challenge, rp_id=rp_id, origin=origin)

    def remove_factor(self, actor: Actor, factor_id: int, *, password: str, code: str) -> int:
        """Removing a factor asks for the password and a current code (TOTP or a recovery
        code); removing the last one is alerted to the owner."""
        login = self._login(actor)
        if not isinstance(self.rt.credentials.verify_owner_password(login, password, actor.remote_ip), Principal):
            raise Unauthorized("the password is not right", code="wrong-password", field="password")
        factors = self.rt.credentials.second_factors
        if not (factors.verify_totp(login, code) or factors.use_recovery_code(login, code)):
            raise Unauthorized("the code is not right; use your authenticator app or a recovery code",
                               code="wrong-code", field="code")
        with self.journal.step(actor, "second-factor.remove", login, needs=Role.VIEWER, factor=factor_id) as details:
            left = factors.remove(login, factor_id)
            details["left"] = left
        if not left:
            self._alert_off(login, actor.remote_ip)
        return left

    def _alert_off(self, login: str, ip: str) -> None:
        now = datetime.now(UTC)
        dispatcher = self.rt.audit.dispatcher
        if dispatcher is None:
            return
        dispatcher.raise_alert(Alert(
            rule="two-factor-off", severity="warning",
            summary=f"Two-factor sign-in was turned off for {login}; its password works for SMTP again "
                    "unless app passwords are required. If this was not you, change your password now.",
            dedupe_key=f"two-factor-off:{login}:{now.timestamp():.0f}", time=now, login=login, remote_ip=ip,
        ))

    def regenerate_recovery_codes(self, actor: Actor) -> tuple[str, ...]:
        login = self._login(actor)
        with self.journal.step(actor, "second-factor.recovery-codes", login, needs=Role.VIEWER):
            return self.rt.credentials.second_factors.regenerate_recovery_codes(login)
