"""The credential service: the one place that creates, changes, checks and ends credentials.

Faces (CLI, admin API, the SMTP session) call it; they never write credential rows
themselves. Verification is built for the wire: it returns a Principal or an AuthFailure
with a reason code for the audit, takes about the same time whether the login exists or
not, and never logs or echoes the secret.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from smtpgate.config import Config
from smtpgate.credentials import app_passwords, invites, redaction, scram
from smtpgate.credentials.api_tokens import ApiTokenService, Role
from smtpgate.credentials.cache import CacheSettings, CredentialCache, Snapshot
from smtpgate.credentials.devices import DEVICE_SILENT_AFTER, DeviceRequest
from smtpgate.credentials.invites import InviteInfo, InviteInvalid, IssuedInvite
from smtpgate.credentials.errors import (
    AccountExists,
    AccountNotFound,
    CredentialNotFound,
    DuplicateName,
    InvalidOperation,
    InvalidScope,
    InvalidValue,
)
from smtpgate.credentials.invalidation import (
    Change,
    DatabaseChannel,
    InvalidationChannel,
    LocalChannel,
)
from smtpgate.credentials.model import (
    AccountInfo,
    AuthFailure,
    CredentialInfo,
    CredentialKind,
    CredentialState,
    FailureReason,
    IssuedSecret,
    Principal,
)
from smtpgate.credentials.passwords import (
    HashParams,
    PasswordHashing,
    PasswordPolicy,
    generate_password,
)
from smtpgate.credentials.scopes import (
    ScopeRequest,
    Scopes,
    normalize_address,
    parse_sender_pattern,
)
from smtpgate.credentials.second_factors import SecondFactors
from smtpgate.credentials.secret_targets import SecretTarget, parse_target
from smtpgate.credentials.usage import UsageBook
from smtpgate.credentials.web_sessions import WebSessions, WebSessionSettings, end_all
from smtpgate.errors import Kind
from smtpgate.store import Store
from smtpgate.store.models import AccountRow, CredentialRow
from smtpgate.store.models_console import AccountPolicyRow, InviteRow

if TYPE_CHECKING:
    from smtpgate.credentials.tokens import TokenService

_T = TypeVar("_T")

TOKEN_MECHANISMS = frozenset({"XOAUTH2", "OAUTHBEARER"})
LEGACY_LISTENER = "legacy"

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CredentialSettings:
    rotation_age: timedelta = timedelta(days=90)
    rotation_overlap: timedelta = timedelta(hours=24)
    dormant_after: timedelta = timedelta(days=90)
    expiring_within: timedelta = timedelta(days=14)


def _new_id(kind: CredentialKind) -> str:
    prefix = {CredentialKind.APP_PASSWORD: "ap", CredentialKind.DEVICE: "dv"}.get(kind, "pw")
    return f"{prefix}_{_random.token_hex(6)}"


def _validate_login(login: str) -> str:
    value = normalize_address(login)
    try:
        parse_sender_pattern(value)
    except InvalidScope:
        raise InvalidOperation(
            f"{login!r} is not an email address", "An account's login is its email address.",
            code="invalid-login", field="login", login=login,
        ) from None
    if value.startswith("@"):
        raise InvalidOperation(f"{login!r} has no local part", "Use a full address.", code="invalid-login",
                               field="login", login=login)
    return value


def _token_service(config: Config, store: Store, app_key: bytes, clock: Clock) -> TokenService:
    from smtpgate.credentials.tokens import TokenService

    return TokenService.from_config(config, store, app_key=app_key, clock=clock)


class CredentialService:
    def __init__(
        self,
        store: Store,
        *,
        app_key: bytes,
        hashing: PasswordHashing,
        policy: PasswordPolicy,
        settings: CredentialSettings = CredentialSettings(),
        clock: Clock = utcnow,
        tokens: TokenService | Callable[[], TokenService] | None = None,
        scram_iterations: int | None = 4096,
        channel: InvalidationChannel | None = None,
        cache: CacheSettings = CacheSettings(),
        hashing_pool: Executor | None = None,
        web: WebSessionSettings = WebSessionSettings(),
    ) -> None:
        self._store = store
        self._app_key = app_key
        self._hashing = hashing
        self._policy = policy
        self._settings = settings
        self._clock = clock
        self._scram_current: set[str] = set()  # credentials whose SCRAM keys are known current (this process)
        # bearer tokens and service accounts (docs/tokens.md); a factory is called on first use,
        # so that commands that never see a token do not load the JOSE stack
        self._tokens = tokens
        self.api_tokens = ApiTokenService(store, app_key=app_key, clock=clock)  # operator API tokens (docs/api.md)
        self._scram_iterations = scram_iterations  # None: no SCRAM keys are kept
        # Every change below is announced here, so every process's caches forget it.
        self.channel: InvalidationChannel = channel or LocalChannel()
        self.cache = CredentialCache(self.channel, cache)
        self.usage = UsageBook(store)  # last use and counts, written in batches
        self._hashing_pool = hashing_pool  # argon2 runs there, bounded, apart from disk and database
        self._admitted: dict[str, tuple[int, datetime | None]] = {}  # still_admitted(): (generation, expiry)
        # the web console's sessions and the second factors (docs/web.md): credential state, changed here only
        self.web_sessions = WebSessions(store, key=app_key, clock=clock, settings=web)
        self.second_factors = SecondFactors(store, key=app_key, clock=clock, changing=self._changing)

    def prepare(self) -> None:
        """What a server does once before serving, so no login pays for it: the dummy hash
        unknown logins are verified against, and the token checks."""
        self._hashing.prepare()
        self.tokens

    @property
    def tokens(self) -> TokenService | None:
        if callable(self._tokens):
            self._tokens = self._tokens()
        return self._tokens

    @classmethod
    def from_config(cls, config: Config, store: Store, *, clock: Clock = utcnow,
                    hashing_pool: Executor | None = None,
                    channel: InvalidationChannel | None = None) -> CredentialService:
        pw = config.passwords
        hibp = config.path(pw.hibp_file) if pw.hibp_file else None
        cr = config.credentials
        app_key = config.read_secret_file(config.secrets.app_password_key_file, "app-password key")
        redaction.set_key(app_key)  # redacted secrets hash the same in every process of this server
        return cls(
            store,
            app_key=app_key,
            hashing=PasswordHashing(
                HashParams(pw.argon2_memory_kib, pw.argon2_time_cost, pw.argon2_parallelism)
            ),
            policy=PasswordPolicy(pw.min_length, pw.min_strength, hibp),
            settings=CredentialSettings(
                cr.rotation_age, cr.rotation_overlap, cr.dormant_after, cr.expiring_within
            ),
            clock=clock,
            tokens=lambda: _token_service(config, store, app_key, clock),
            scram_iterations=config.tokens.scram_iterations if config.tokens.scram else None,
            channel=channel or DatabaseChannel(store),  # a cluster passes its NOTIFY channel
            cache=CacheSettings(size=cr.login_cache_size, ttl=300.0,
                                verified_ttl=cr.login_cache_ttl.total_seconds()),
            hashing_pool=hashing_pool,
            web=WebSessionSettings(idle=config.web.idle_timeout, absolute=config.web.absolute_timeout),
        )

    # ------------------------------------------------------------------ accounts

    def create_account(
        self,
        login: str,
        *,
        password: str | None = None,
        display_name: str = "",
        owner: str = "",
        notes: str = "",
        require_app_passwords: bool = False,
        actor: str = "",
    ) -> AccountInfo:
        """Create an account; with a password, also its password credential."""
        login = _validate_login(login)
        if password is not None:
            self._policy.check(password, user_inputs=self._user_inputs(login, display_name))
        now = self._clock()
        with self._store.session() as db:
            if db.scalar(select(AccountRow.id).where(AccountRow.login == login)) is not None:
                raise AccountExists(f"account {login} already exists", login=login)
            row = AccountRow(
                login=login,
                display_name=display_name,
                owner=owner,
                notes=notes,
                enabled=True,
                require_app_passwords=require_app_passwords,
                created_at=now,
                updated_at=now,
            )
            db.add(row)
            try:
                db.flush()
            except IntegrityError:
                raise AccountExists(f"account {login} already exists", login=login) from None
            if password is not None:
                credential = self._password_row(row, self._hashing.hash(password), actor, now)
                db.add(credential)
                self._store_scram(db, credential, login, password)
            return self._account_info(db, row)

    def import_account(
        self, login: str, *, stored_hash: str = "", password: str | None = None,
        actor: str = "", dry_run: bool = False,
    ) -> str:
        """Bring an account from another server with the hash it had there.

        ``stored_hash`` is an imported ``{SCHEME}value`` (see `imported_hashes`), verified at
        login and rehashed to argon2id on the first success; a plaintext ``password`` is
        hashed at once. Returns "created", or "exists" for a login that is here already and
        is left as it is, so that importing the same file twice changes nothing.
        """
        login = _validate_login(login)
        if not stored_hash and not password:
            raise InvalidOperation(f"nothing to import for {login}: neither a hash nor a password")
        with self._store.session() as db:
            if db.scalar(select(AccountRow.id).where(AccountRow.login == login)) is not None:
                return "exists"
            if dry_run:
                return "created"
            now = self._clock()
            account = AccountRow(
                login=login, display_name="", owner="", notes="imported", enabled=True,
                require_app_passwords=False, created_at=now, updated_at=now,
            )
            db.add(account)
            db.flush()
            credential = self._password_row(account, stored_hash or self._hashing.hash(password or ""), actor, now)
            db.add(credential)
            if password:
                self._store_scram(db, credential, login, password)
        return "created"

    def list_accounts(self) -> list[AccountInfo]:
        with self._store.session() as db:
            rows = db.scalars(select(AccountRow).order_by(AccountRow.login)).all()
            return [self._account_info(db, row) for row in rows]

    def get_account(self, login: str) -> AccountInfo:
        with self._store.session() as db:
            return self._account_info(db, self._account_row(db, login))

    def set_account_enabled(self, login: str, enabled: bool) -> AccountInfo:
        """Disabling an account stops every one of its credentials at once, and its open invitations."""
        with self._changing() as (db, changed):
            row = self._account_row(db, login)
            row.enabled = enabled
            row.updated_at = self._clock()
            if not enabled:
                self._withdraw_invites(db, row.id, row.updated_at)
                end_all(db, row.id)  # a disabled account is signed out of the web console too
            changed(Change(account_id=row.id))
            return self._account_info(db, row)

    def update_account(
        self,
        login: str,
        *,
        display_name: str | None = None,
        owner: str | None = None,
        notes: str | None = None,
        require_app_passwords: bool | None = None,
    ) -> AccountInfo:
        return self._update_account(
            login,
            display_name=display_name,
            owner=owner,
            notes=notes,
            require_app_passwords=require_app_passwords,
        )

    def _update_account(self, login: str, **changes: object) -> AccountInfo:
        with self._changing() as (db, changed):
            row = self._account_row(db, login)
            for name, value in changes.items():
                if value is not None:
                    setattr(row, name, value)
            if changes.get("enabled") is False:
                end_all(db, row.id)  # a disabled account is signed out of the web console too
            row.updated_at = self._clock()
            changed(Change(account_id=row.id))
            return self._account_info(db, row)

    def set_password(self, login: str, password: str, *, actor: str = "") -> AccountInfo:
        """Replace the account password (checked against the policy first)."""
        with self._changing() as (db, changed):
            account = self._account_row(db, login)
            changed(Change(account_id=account.id))
            self._replace_password(db, account, password, actor)
            end_all(db, account.id)  # a new password signs every browser out
            return self._account_info(db, account)

    def _replace_password(self, db: Session, account: AccountRow, password: str, actor: str) -> None:
        self._policy.check(password, user_inputs=self._user_inputs(account.login, account.display_name))
        now = self._clock()
        current = self._password_credential(db, account.id)
        if current is None:
            current = self._password_row(account, self._hashing.hash(password), actor, now)
            db.add(current)
        else:
            current.secret_hash = self._hashing.hash(password)
            current.created_at = now
            current.created_by = actor
        self._store_scram(db, current, account.login, password)
        account.updated_at = now

    # ------------------------------------------------- invitations and console policy

    def create_invite(self, login: str, *, expires_in: timedelta, actor: str = "") -> IssuedInvite:
        """A one-time link to set the password; any older open invitation of the account ends."""
        if expires_in <= timedelta(0) or expires_in > timedelta(days=30):
            raise InvalidOperation("an invitation lasts more than nothing and at most 30 days", "Use a duration such as 7d.",
                                   code="invalid-duration", field="expires")
        with self._store.session() as db:
            account = self._account_row(db, login)
            if not account.enabled:
                raise InvalidOperation(f"account {account.login} is disabled", "Enable it first.",
                                       code="account-disabled", kind=Kind.CONFLICT, login=account.login)
            now = self._clock()
            self._withdraw_invites(db, account.id, now)
            secret = invites.generate()
            row = InviteRow(id=f"iv_{_random.token_hex(6)}", account_id=account.id,
                            secret_hash=app_passwords.keyed_hash(self._app_key, secret), created_by=actor,
                            created_at=now, expires_at=now + expires_in)
            db.add(row)
            db.flush()
            return IssuedInvite(self._invite_info(db, row, account), secret)

    def check_invite(self, secret: str) -> InviteInfo:
        """The invitation this link is, while it can be used; InviteInvalid (with why) otherwise."""
        with self._store.session() as db:
            row, account = self._usable_invite(db, secret)
            return self._invite_info(db, row, account)

    def accept_invite(self, secret: str, password: str, *, remote_ip: str = "") -> AccountInfo:
        """Set the password through the link, which is used up in the same transaction."""
        with self._changing() as (db, changed):
            row, account = self._usable_invite(db, secret)
            self._replace_password(db, account, password, f"invite:{row.id}")
            taken = db.execute(update(InviteRow).where(
                InviteRow.id == row.id, InviteRow.used_at.is_(None), InviteRow.revoked_at.is_(None),
            ).values(used_at=self._clock(), used_ip=remote_ip[:64]).execution_options(synchronize_session=False))
            if getattr(taken, "rowcount", 0) != 1:  # another request used it first: nothing of ours is committed
                raise InviteInvalid(invites.REFUSALS["used"][0], "Ask for a new invitation.", code="invite-used")
            changed(Change(account_id=account.id))
            return self._account_info(db, account)

    def list_invites(self, login: str | None = None) -> list[InviteInfo]:
        with self._store.session() as db:
            query = select(InviteRow, AccountRow).join(AccountRow, AccountRow.id == InviteRow.account_id)
            if login:
                query = query.where(AccountRow.id == self._account_row(db, login).id)
            return [self._invite_info(db, r, a) for r, a in db.execute(query.order_by(InviteRow.created_at)).all()]

    def set_account_policy(self, login: str, *, role: str | None = None,
                           require_second_factor: bool | None = None) -> AccountInfo:
        """`role`: viewer, operator or admin opens the operators' console to the account; "none" closes it."""
        if role is not None and role != "none" and role not in {r.value for r in Role}:
            raise InvalidValue(f"{role!r} is not a role; use viewer, operator, admin or none", code="invalid-role",
                               field="role", role=role)
        with self._changing() as (db, changed):
            account = self._account_row(db, login)
            policy = db.get(AccountPolicyRow, account.id)
            if policy is None:
                policy = AccountPolicyRow(account_id=account.id, role=None, require_second_factor=False)
                db.add(policy)
            if role is not None:
                policy.role = None if role == "none" else role
            if require_second_factor is not None:
                policy.require_second_factor = require_second_factor
            account.updated_at = self._clock()
            changed(Change(account_id=account.id))
            db.flush()
            return self._account_info(db, account)

    def _usable_invite(self, db: Session, secret: str) -> tuple[InviteRow, AccountRow]:
        row = db.scalar(select(InviteRow).where(
            InviteRow.secret_hash == app_passwords.keyed_hash(self._app_key, secret))) if invites.is_well_formed(secret) else None
        if row is None:
            raise InviteInvalid("this invitation link is not valid", "Ask for a new invitation.")
        account = db.get(AccountRow, row.account_id)
        assert account is not None  # the foreign key cascades
        state = invites.state_of(row.used_at, row.revoked_at, row.expires_at, self._clock())
        if state == "pending" and not account.enabled:
            state = "revoked"
        if state != "pending":
            message, code = invites.REFUSALS[state]
            raise InviteInvalid(message, "Ask for a new invitation.", code=code)
        return row, account

    def _withdraw_invites(self, db: Session, account_id: int, now: datetime) -> None:
        db.execute(update(InviteRow).where(
            InviteRow.account_id == account_id, InviteRow.used_at.is_(None), InviteRow.revoked_at.is_(None),
        ).values(revoked_at=now).execution_options(synchronize_session=False))

    def _invite_info(self, db: Session, row: InviteRow, account: AccountRow) -> InviteInfo:
        policy = db.get(AccountPolicyRow, account.id)
        return InviteInfo(
            id=row.id, login=account.login, created_by=row.created_by, created_at=row.created_at,
            expires_at=row.expires_at, used_at=row.used_at, revoked_at=row.revoked_at,
            state=invites.state_of(row.used_at, row.revoked_at, row.expires_at, self._clock()),
            require_second_factor=bool(policy and policy.require_second_factor),
        )

    @staticmethod
    def generate_password() -> str:
        return generate_password()

    def assess_password(self, login: str, password: str) -> tuple[int, list[str], str]:
        """What the policy says of a password before it is set: zxcvbn's score (0-4), the
        rules it breaks (empty: it would be accepted) and how to do better."""
        from zxcvbn import zxcvbn

        from smtpgate.credentials.errors import WeakPassword

        with self._store.session() as db:
            account = self._account_row(db, login)
            inputs = self._user_inputs(account.login, account.display_name)
        score = int(zxcvbn(password[:100], user_inputs=list(inputs))["score"]) if password else 0
        try:
            self._policy.check(password, user_inputs=inputs)
        except WeakPassword as exc:
            return score, list(exc.reasons), exc.hint
        return score, [], ""

    # ------------------------------------------------------------- app passwords

    def create_app_password(
        self,
        login: str,
        name: str,
        *,
        scopes: ScopeRequest = ScopeRequest(),
        expires_in: timedelta | None = None,
        notes: str = "",
        actor: str = "",
        canary: bool = False,
    ) -> IssuedSecret:
        """Generate an app password; the returned secret is the only copy in clear.

        A ``canary`` is planted where no one should find it (a config repository, a wiki, a
        backup): it never logs in, and any use of it is refused like a wrong password and
        reported as the leak it is."""
        if not name.strip():
            raise InvalidOperation("an app password needs a name", "Name the app or device, e.g. printer-3rd-floor.",
                                   code="name-required", field="name")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidOperation("the expiry must be in the future", "Use a duration such as 90d.",
                                   code="invalid-duration", field="expires")
        with self._store.session() as db:
            account = self._account_row(db, login)
            resolved = scopes.resolve(account.login)
            self._refuse_duplicate_name(db, account, name.strip())
            now = self._clock()
            expires = now + expires_in if expires_in else None
            secret, row = self._app_password_row(account, name.strip(), notes, actor, now, expires, resolved)
            row.canary = canary
            db.add(row)
            try:
                db.flush()
            except IntegrityError:  # the same name, created at the same moment elsewhere
                raise self._duplicate(account.login, name.strip(), "") from None
            self._store_scram(db, row, account.login, secret)
            return IssuedSecret(self._credential_info(row, account), secret)

    def create_device(self, login: str, request: DeviceRequest, *, actor: str = "") -> IssuedSecret:
        """A credential for one device on the legacy listener; its secret (with --auth plain)
        is shown once, like an app password's, and works on the legacy listener alone."""
        device = request.validated()
        with self._store.session() as db:
            account = self._account_row(db, login)
            resolved = ScopeRequest(
                allowed_senders=(device.allow_from,), allowed_networks=(device.network,),
                max_per_day=device.max_per_day,
            ).resolve(account.login)
            self._refuse_duplicate_name(db, account, device.name)
            now = self._clock()
            secret, row = self._app_password_row(account, device.name, "", actor, now, None, resolved)
            row.id = _new_id(CredentialKind.DEVICE)
            row.kind = CredentialKind.DEVICE.value
            row.allowed_recipients = list(device.allow_to)
            row.legacy_auth, row.legacy_tls = device.auth, device.tls
            if device.auth == "none":
                secret, row.lookup_key, row.secret_hash = "", None, "!"  # nothing can match it
            db.add(row)
            try:
                db.flush()
            except IntegrityError:
                raise self._duplicate(account.login, device.name, "") from None
            return IssuedSecret(self._credential_info(row, account), secret)

    def device_for_address(self, remote_ip: str) -> Principal | AuthFailure | None:
        """The device without AUTH known by this address (legacy listener), if there is one."""
        with self._store.session() as db:
            rows = db.scalars(
                select(CredentialRow).options(joinedload(CredentialRow.account)).where(
                    CredentialRow.kind == CredentialKind.DEVICE.value, CredentialRow.legacy_auth == "none",
                    CredentialRow.revoked_at.is_(None),
                )
            ).all()
            snapshots = [_snapshot(row, row.account) for row in rows]
        for snapshot in snapshots:
            if snapshot.scopes.allows_ip(remote_ip):
                return self._admit(snapshot, remote_ip)
        return None

    def _refuse_duplicate_name(self, db: Session, account: AccountRow, name: str) -> None:
        """Names tell an owner's app passwords apart: one live credential per name and account
        (the database holds the same rule: uq_credentials_live_name)."""
        clash = db.scalar(select(CredentialRow.id).where(
            CredentialRow.account_id == account.id, CredentialRow.name == name,
            CredentialRow.kind == CredentialKind.APP_PASSWORD.value,
            CredentialRow.revoked_at.is_(None), CredentialRow.replaced_by.is_(None),
        ))
        if clash is not None:
            raise self._duplicate(account.login, name, clash)

    @staticmethod
    def _duplicate(login: str, name: str, clash: str) -> DuplicateName:
        which = f" ({clash})" if clash else ""
        fix = (f"Pick another --name, rotate it (`smtpgate creds rotate {clash}`) or revoke it first "
               f"(`smtpgate creds revoke {clash}`).") if clash else "Pick another --name."
        return DuplicateName(f"{login} already has an app password named {name!r}{which}", fix)

    def rotate(
        self, credential_id: str, *, overlap: timedelta | None = None, actor: str = "",
        target: SecretTarget | None = None, hook: tuple[str, ...] | None = None,
    ) -> IssuedSecret:
        """Issue a successor with the same name and scopes; the old one ends after the overlap.

        With a delivery ``target`` (given, or remembered from the last rotation) the
        successor is written there before anything is committed, so a target that cannot
        be written changes nothing; the predecessor then retires at the successor's first
        use, or at the end of the overlap, whichever comes first.
        """
        overlap = self._settings.rotation_overlap if overlap is None else overlap
        if overlap < timedelta(0):
            raise InvalidOperation("the overlap cannot be negative", code="invalid-duration", field="overlap")
        with self._changing() as (db, changed):
            old = self._credential_row(db, credential_id)
            changed(Change(credential_id=old.id))
            if old.kind != CredentialKind.APP_PASSWORD:
                raise InvalidOperation(
                    f"{credential_id} is an account password; only app passwords are rotated",
                    code="not-rotatable", credential=credential_id,
                )
            account = old.account
            now = self._clock()
            state = self._state(old, account, now)
            if state in (CredentialState.REVOKED, CredentialState.EXPIRED):
                raise InvalidOperation(
                    f"{credential_id} is {state}; there is nothing to rotate",
                    code="credential-ended", credential=credential_id, state=str(state),
                )
            lifetime = (old.expires_at - old.created_at) if old.expires_at else None
            secret, new = self._app_password_row(
                account, old.name, old.notes, actor, now,
                now + lifetime if lifetime else None, self._scopes(old),
            )
            new.rotated_from = old.id
            if target is None and old.delivery_target:
                target = parse_target(old.delivery_target)
            if target is not None:
                target.check()
                new.delivery_target = str(target)
                new.delivery_hook = list(hook if hook is not None else (old.delivery_hook or ())) or None
            db.add(new)
            end = now + overlap
            old.expires_at = min(old.expires_at, end) if old.expires_at else end
            old.replaced_by = new.id
            self._store_scram(db, new, account.login, secret)
            db.flush()
            if target is not None:
                target.write(secret)  # before the commit: if it fails, nothing was rotated
            return IssuedSecret(self._credential_info(new, account), secret)

    def revoke(self, credential_id: str, *, actor: str = "") -> CredentialInfo:
        """Revocation is immediate: the next authentication with it fails, in every process."""
        with self._changing() as (db, changed):
            row = self._credential_row(db, credential_id)
            changed(Change(account_id=row.account_id, credential_id=row.id))
            if row.revoked_at is None:
                row.revoked_at = self._clock()
                row.revoked_by = actor
            if row.kind == CredentialKind.PASSWORD.value:
                end_all(db, row.account_id)  # the password that signed them in is gone
            return self._credential_info(row, row.account)

    def list_credentials(
        self, *, account: str | None = None, state: CredentialState | None = None
    ) -> list[CredentialInfo]:
        self.usage.flush()
        with self._store.session() as db:
            query = select(CredentialRow).join(AccountRow).order_by(AccountRow.login, CredentialRow.created_at)
            if account:
                query = query.where(AccountRow.id == self._account_row(db, account).id)
            infos = [self._credential_info(row, row.account) for row in db.scalars(query)]
        return [info for info in infos if state is None or info.state == state]

    def get_credential(self, credential_id: str) -> CredentialInfo:
        self.usage.flush()
        with self._store.session() as db:
            row = self._credential_row(db, credential_id)
            return self._credential_info(row, row.account)

    def is_secret_of(self, credential_id: str, secret: str) -> bool:
        """Whether `secret` is this app password's own (for a profile that embeds it); never raises."""
        if not app_passwords.is_well_formed(secret):
            return False
        with self._store.session() as db:
            row = db.get(CredentialRow, credential_id.strip())
            key = app_passwords.keyed_hash(self._app_key, secret)
            return row is not None and row.lookup_key is not None and _random.compare_digest(row.lookup_key, key)

    def due(self) -> list[CredentialInfo]:
        """App passwords past their rotation age, or expiring soon, with no successor yet; and
        devices silent for a month (a printer that stopped sending is unplugged, or replaced
        by one that still holds its secret: either way someone should look)."""
        now = self._clock()
        due: list[CredentialInfo] = []
        for info in self.list_credentials():
            if info.state in (CredentialState.REVOKED, CredentialState.EXPIRED, CredentialState.DISABLED):
                continue
            if info.kind is CredentialKind.DEVICE:
                if now - (info.last_used_at or info.created_at) >= DEVICE_SILENT_AFTER:
                    due.append(info)
                continue
            if info.kind is not CredentialKind.APP_PASSWORD or info.replaced_by or info.canary:
                continue
            old = now - info.created_at >= self._settings.rotation_age
            soon = info.expires_at is not None and info.expires_at - now <= self._settings.expiring_within
            if old or soon:
                due.append(info)
        return due

    def secret_status(self, secret: str) -> tuple[str, str | None]:
        """("live" | "revoked" | "expired" | "unknown", credential id) of an app password found somewhere.

        "live" means it would log in now, or will once its account is enabled again."""
        if not app_passwords.is_well_formed(secret):
            return "unknown", None
        key = app_passwords.keyed_hash(self._app_key, secret)
        with self._store.session() as db:
            row = db.scalar(select(CredentialRow).options(joinedload(CredentialRow.account))
                            .where(CredentialRow.lookup_key == key))
            if row is None:
                return "unknown", None
            state = self._state(row, row.account, self._clock())
        if state in (CredentialState.REVOKED, CredentialState.EXPIRED):
            return str(state), row.id
        return "live", row.id

    # -------------------------------------------------------------- verification

    def authenticate(
        self, login: str, secret: str, remote_ip: str, tls: bool, *, mechanism: str = "PLAIN",
        proven: str | None = None, authzid: str = "", listener: str = "",
    ) -> Principal | AuthFailure:
        """Check a login and secret from the wire. Never raises for bad input; never logs secrets.

        `tls` is accepted so that the rule "secrets only over TLS" can be enforced here too
        by callers that have no wire of their own; the SMTP layer refuses AUTH before TLS.
        `mechanism` is the SASL mechanism the secret came through: PLAIN and LOGIN carry
        passwords, XOAUTH2 and OAUTHBEARER bearer tokens (checked by `self.tokens`), and
        SCRAM-SHA-256 no secret at all: the SASL layer checked the client's proof against
        the keys from `scram_keys()`, and `proven` names the credential it matched (None:
        no match). `authzid` is the SASL authorization identity: empty or the login itself
        (RFC 4616, RFC 5802 allow a client to name it; GSASL always does); any other is
        refused before the secret is looked at, since no credential may act for another.
        `listener` is where it came: on the legacy listener only device secrets work, and a
        device's secret works nowhere else.
        """
        del tls  # the wire refuses AUTH without TLS before it gets here
        login = normalize_address(login)
        if authzid and normalize_address(authzid) != login:
            return AuthFailure(FailureReason.AUTHZID_REFUSED, login)
        if listener == LEGACY_LISTENER and not (
            mechanism in ("PLAIN", "LOGIN") and app_passwords.looks_like_app_password(secret)
        ):
            return AuthFailure(FailureReason.NOT_A_DEVICE, login)
        if mechanism in TOKEN_MECHANISMS:
            if self.tokens is None:
                return AuthFailure(FailureReason.TOKENS_DISABLED, login)
            return self.tokens.authenticate(login, secret, remote_ip)
        if mechanism == scram.MECHANISM:
            return self._authenticate_scram(login, proven, remote_ip)
        if app_passwords.looks_like_app_password(secret):
            return self._authenticate_app_password(login, secret, remote_ip, listener)
        return self._authenticate_password(login, secret, remote_ip)

    def scram_keys(self, login: str) -> scram.StoredScramKeys:
        """The salt, iteration count and keys a SCRAM exchange for `login` needs (an unknown
        login gets a salt too, so the exchange looks the same)."""
        login = normalize_address(login)
        if self._scram_iterations is None:  # SCRAM is off (and not offered): no keys for anyone
            return scram.StoredScramKeys(scram.derive_salt(self._app_key, login), 4096)
        with self._store.session() as db:
            return scram.lookup(db, login, server_key=self._app_key, iterations=self._scram_iterations)

    def _authenticate_scram(self, login: str, proven: str | None, remote_ip: str) -> Principal | AuthFailure:
        with self._store.session() as db:
            account = db.scalar(select(AccountRow).where(AccountRow.login == login))
            if account is None:
                return AuthFailure(FailureReason.UNKNOWN_LOGIN, login)
            row = db.get(CredentialRow, proven) if proven else None
            if row is None or row.account_id != account.id:
                keys = scram.lookup(db, login, server_key=self._app_key,
                                    iterations=self._scram_iterations).keys if self._scram_iterations else ()
                reason = FailureReason.BAD_SECRET if keys else FailureReason.NO_SCRAM_VERIFIER
                return AuthFailure(reason, login)
            if row.kind == CredentialKind.PASSWORD.value and account.require_app_passwords:
                return AuthFailure(FailureReason.APP_PASSWORD_REQUIRED, login, row.id)
            snapshot = _snapshot(row, account)
        return self._admit(snapshot, remote_ip)

    def _store_scram(self, db: Session, row: CredentialRow, login: str, secret: str) -> None:
        """Keep the SCRAM keys of a secret beside its hash (when SCRAM is on)."""
        if self._scram_iterations is None:
            return
        db.flush()
        scram.store_keys(db, row, login, secret, server_key=self._app_key,
                         iterations=self._scram_iterations, now=self._clock())

    def _ensure_scram(self, credential_id: str, login: str, secret: str) -> None:
        """A secret from before SCRAM (or from before an iteration change) gets its keys now
        (once per credential per process: the check itself reads the database)."""
        if self._scram_iterations is None or credential_id in self._scram_current:
            return
        with self._store.session() as db:
            row = db.get(CredentialRow, credential_id)
            if row is None:
                return
            if not scram.is_current(db, row, login, server_key=self._app_key, iterations=self._scram_iterations):
                self._store_scram(db, row, login, secret)
        if len(self._scram_current) > 100_000:  # bounded: a cache, not a registry
            self._scram_current.clear()
        self._scram_current.add(credential_id)

    def _authenticate_app_password(self, login: str, secret: str, remote_ip: str, listener: str = "") -> Principal | AuthFailure:
        if not app_passwords.is_well_formed(secret):
            return AuthFailure(FailureReason.BAD_SECRET, login)
        key = app_passwords.keyed_hash(self._app_key, secret)
        generation = self.cache.fresh()
        snapshot = self.cache.app_password(key)
        if snapshot is None:
            with self._store.session() as db:
                row = db.scalar(
                    select(CredentialRow).options(joinedload(CredentialRow.account)).where(CredentialRow.lookup_key == key)
                )
                if row is not None:
                    snapshot = _snapshot(row, row.account)
            if snapshot is not None:
                self.cache.put_app_password(key, snapshot, generation)
        if snapshot is None or snapshot.login != login:
            return AuthFailure(self._unknown_or_bad(login), login)
        is_device = snapshot.kind is CredentialKind.DEVICE
        if is_device != (listener == LEGACY_LISTENER):
            reason = FailureReason.DEVICE_LEGACY_ONLY if is_device else FailureReason.NOT_A_DEVICE
            return AuthFailure(reason, login, snapshot.credential_id, snapshot.name if is_device else "")
        result = self._admit(snapshot, remote_ip)
        if isinstance(result, Principal):
            self._ensure_scram(snapshot.credential_id, login, secret)
        return result

    def _unknown_or_bad(self, login: str) -> FailureReason:
        with self._store.session() as db:
            known = db.scalar(select(AccountRow.id).where(AccountRow.login == login))
        return FailureReason.BAD_SECRET if known is not None else FailureReason.UNKNOWN_LOGIN

    def verify_owner_password(self, login: str, password: str, remote_ip: str) -> Principal | AuthFailure:
        """The web console's first step: the account password, even where SMTP needs app
        passwords (that is where they are made); never an app password or a token."""
        login = normalize_address(login)
        if app_passwords.looks_like_app_password(password):
            self._run_hashing(self._hashing.burn, password[:1024])
            return AuthFailure(FailureReason.BAD_SECRET, login)
        return self._authenticate_password(login, password, remote_ip, web=True)

    def _authenticate_password(self, login: str, secret: str, remote_ip: str, *, web: bool = False) -> Principal | AuthFailure:
        generation = self.cache.fresh()
        snapshot = self.cache.password(login)
        if snapshot is None:
            with self._store.session() as db:
                account = db.scalar(select(AccountRow).where(AccountRow.login == login))
                row = self._password_credential(db, account.id) if account else None
                snapshot = _snapshot(row, account) if row is not None and account is not None else None
                known = account is not None
            if snapshot is not None:
                self.cache.put_password(login, snapshot, generation)
        else:
            known = True
        if snapshot is None or len(secret) > 1024:
            self._run_hashing(self._hashing.burn, secret[:1024])
            return AuthFailure(FailureReason.BAD_SECRET if known else FailureReason.UNKNOWN_LOGIN, login)
        if not self.cache.verified(login, secret, snapshot):
            if not self._run_hashing(self._hashing.verify, snapshot.secret_hash, secret):
                return AuthFailure(FailureReason.BAD_SECRET, login, snapshot.credential_id)
            if self._hashing.needs_rehash(snapshot.secret_hash):
                self._rehash(snapshot, secret)
            else:
                self.cache.remember_verified(login, secret, snapshot, generation)
        if snapshot.require_app_passwords and not web:
            return AuthFailure(FailureReason.APP_PASSWORD_REQUIRED, login, snapshot.credential_id)
        result = self._admit(snapshot, remote_ip)
        if isinstance(result, Principal):
            self._ensure_scram(snapshot.credential_id, login, secret)
        return result

    def _run_hashing(self, function: Callable[..., _T], *args: str) -> _T:
        """argon2 in its own bounded pool, so a burst of password logins waits there and
        never holds up disk commits or database work (the caller's thread just waits)."""
        if self._hashing_pool is None:
            return function(*args)
        return self._hashing_pool.submit(function, *args).result()

    def _rehash(self, snapshot: Snapshot, secret: str) -> None:
        new_hash = self._run_hashing(self._hashing.hash, secret)
        with self._changing() as (db, changed):
            row = db.get(CredentialRow, snapshot.credential_id)
            if row is not None and row.secret_hash == snapshot.secret_hash:
                row.secret_hash = new_hash
                changed(Change(account_id=snapshot.account_id))

    def _admit(self, snapshot: Snapshot, remote_ip: str) -> Principal | AuthFailure:
        """The secret was right: now the credential's state and scopes decide."""
        if snapshot.canary:
            return AuthFailure(FailureReason.CANARY, snapshot.login, snapshot.credential_id)
        now = self._clock()
        refusal = _refusal(snapshot, now)
        if refusal:
            return AuthFailure(refusal, snapshot.login, snapshot.credential_id)
        scopes = snapshot.scopes
        device = snapshot.name if snapshot.kind is CredentialKind.DEVICE else ""
        if not scopes.allows_ip(remote_ip):
            return AuthFailure(FailureReason.IP_NOT_ALLOWED, snapshot.login, snapshot.credential_id, device)
        if snapshot.retires is not None:
            self._retire_predecessor(snapshot, now)
        self.usage.note(snapshot.credential_id, now, remote_ip)
        return Principal(snapshot.account_id, snapshot.login, snapshot.credential_id, snapshot.kind, scopes,
                         device=device, device_tls=snapshot.legacy_tls if device else None)

    def still_admitted(self, credential_id: str) -> bool:
        """May a session that authenticated with this credential go on sending? Asked before each
        message, so a revocation, an expiry or a disabled account also ends the sessions already
        open. Costs one read of the change counter while nothing changed. A bearer token has no
        row here: its own short lifetime ends it."""
        generation = self.cache.fresh()
        now = self._clock()
        known = self._admitted.get(credential_id)
        if known is not None and known[0] == generation and (known[1] is None or known[1] > now):
            return True
        with self._store.session() as db:
            row = db.get(CredentialRow, credential_id)
            if row is None:
                return True
            refusal = _refusal(_snapshot(row, row.account), now)
            expires = row.expires_at
        if refusal is not None:
            return False
        if len(self._admitted) > 10_000:
            self._admitted.clear()
        self._admitted[credential_id] = (generation, expires)
        return True

    def flush_usage(self) -> int:
        """Write the batched last-use times and counts (the server calls it every second)."""
        return self.usage.flush()

    @contextmanager
    def _changing(self) -> Iterator[tuple[Session, Callable[[Change], None]]]:
        """A transaction that changes credentials: each change is announced inside it and,
        once it is committed, every cache forgets what it held about it."""
        heard: list[Change] = []
        with self._store.session() as db:

            def changed(change: Change) -> None:
                self.channel.announce(db, change)
                heard.append(change)

            yield db, changed
        for change in heard:
            self.channel.committed(change)

    def _retire_predecessor(self, snapshot: Snapshot, now: datetime) -> None:
        """A delivered successor is in use: the secret it replaced is no longer needed.

        Once per rotation: the successor's snapshot is dropped with the predecessor's, and
        the next one read no longer names a live predecessor.
        """
        with self._changing() as (db, changed):
            old = db.get(CredentialRow, snapshot.retires)
            if old is not None and (old.expires_at is None or old.expires_at > now):
                old.expires_at = now
                changed(Change(credential_id=old.id))
            changed(Change(credential_id=snapshot.credential_id))

    # ------------------------------------------------------------------- helpers

    def _user_inputs(self, login: str, display_name: str) -> tuple[str, ...]:
        local, _, domain = login.partition("@")
        return tuple(part for part in (login, local, domain, *display_name.split()) if part)

    def _password_row(self, account: AccountRow, secret_hash: str, actor: str, now: datetime) -> CredentialRow:
        return CredentialRow(
            id=_new_id(CredentialKind.PASSWORD),
            account=account,
            kind=CredentialKind.PASSWORD.value,
            name="account password",
            notes="",
            created_by=actor,
            created_at=now,
            revoked_by="",
            secret_hash=secret_hash,
            allowed_senders=[account.login],
            allowed_networks=[],
            use_count=0,
        )

    def _app_password_row(
        self, account: AccountRow, name: str, notes: str, actor: str,
        now: datetime, expires: datetime | None, scopes: Scopes,
    ) -> tuple[str, CredentialRow]:
        secret = app_passwords.generate()
        key = app_passwords.keyed_hash(self._app_key, secret)
        row = CredentialRow(
            id=_new_id(CredentialKind.APP_PASSWORD),
            account=account,
            kind=CredentialKind.APP_PASSWORD.value,
            name=name,
            notes=notes,
            created_by=actor,
            created_at=now,
            expires_at=expires,
            revoked_by="",
            secret_hash=key,
            lookup_key=key,
            allowed_senders=list(scopes.allowed_senders),
            allowed_networks=list(scopes.allowed_networks),
            max_per_hour=scopes.max_per_hour,
            max_per_day=scopes.max_per_day,
            max_rcpt_per_hour=scopes.max_rcpt_per_hour,
            max_rcpt_per_day=scopes.max_rcpt_per_day,
            use_count=0,
        )
        return secret, row

    def _account_row(self, db: Session, login: str) -> AccountRow:
        row = db.scalar(select(AccountRow).where(AccountRow.login == normalize_address(login)))
        if row is None:
            raise AccountNotFound(f"no account {login}", login=login)
        return row

    def _credential_row(self, db: Session, credential_id: str) -> CredentialRow:
        row = db.get(CredentialRow, credential_id.strip())
        if row is None:
            raise CredentialNotFound(f"no credential {credential_id}", credential=credential_id)
        return row

    @staticmethod
    def _password_credential(db: Session, account_id: int) -> CredentialRow | None:
        return db.scalar(
            select(CredentialRow).where(
                CredentialRow.account_id == account_id,
                CredentialRow.kind == CredentialKind.PASSWORD.value,
                CredentialRow.revoked_at.is_(None),
            )
        )

    @staticmethod
    def _scopes(row: CredentialRow) -> Scopes:
        return Scopes.of(row)

    def _state(self, row: CredentialRow, account: AccountRow, now: datetime) -> CredentialState:
        if row.revoked_at is not None:
            return CredentialState.REVOKED
        if row.expires_at is not None and row.expires_at <= now:
            return CredentialState.EXPIRED
        if not account.enabled:
            return CredentialState.DISABLED
        if row.expires_at is not None and row.expires_at - now <= self._settings.expiring_within:
            return CredentialState.EXPIRING
        if now - (row.last_used_at or row.created_at) >= self._settings.dormant_after:
            return CredentialState.DORMANT
        return CredentialState.ACTIVE

    def _credential_info(self, row: CredentialRow, account: AccountRow) -> CredentialInfo:
        return CredentialInfo(
            id=row.id,
            account=account.login,
            kind=CredentialKind(row.kind),
            name=row.name,
            notes=row.notes,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            last_used_ip=row.last_used_ip,
            use_count=row.use_count,
            scopes=self._scopes(row),
            state=self._state(row, account, self._clock()),
            rotated_from=row.rotated_from,
            replaced_by=row.replaced_by,
            delivery_target=row.delivery_target,
            delivery_hook=tuple(row.delivery_hook or ()),
            canary=bool(row.canary),
            legacy_auth=row.legacy_auth,
            legacy_tls=row.legacy_tls,
        )

    def _account_info(self, db: Session, row: AccountRow) -> AccountInfo:
        policy = db.get(AccountPolicyRow, row.id)
        return AccountInfo(
            id=row.id,
            login=row.login,
            display_name=row.display_name,
            owner=row.owner,
            notes=row.notes,
            enabled=row.enabled,
            require_app_passwords=row.require_app_passwords,
            has_password=self._password_credential(db, row.id) is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            role=policy.role if policy else None,
            require_second_factor=bool(policy and policy.require_second_factor),
        )


def _snapshot(row: CredentialRow, account: AccountRow) -> Snapshot:
    return Snapshot(
        credential_id=row.id, kind=CredentialKind(row.kind), account_id=account.id, login=account.login,
        enabled=account.enabled, require_app_passwords=account.require_app_passwords,
        created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
        last_used_at=row.last_used_at, secret_hash=row.secret_hash, scopes=Scopes.of(row),
        canary=bool(row.canary), name=row.name, legacy_tls=row.legacy_tls,
        retires=row.rotated_from if row.delivery_target and row.rotated_from and not row.use_count else None,
    )


def _refusal(snapshot: Snapshot, now: datetime) -> FailureReason | None:
    """Why a credential with the right secret may not log in now (as `_state` orders it)."""
    if snapshot.revoked_at is not None:
        return FailureReason.REVOKED
    if snapshot.expires_at is not None and snapshot.expires_at <= now:
        return FailureReason.EXPIRED
    if not snapshot.enabled:
        return FailureReason.DISABLED
    return None
