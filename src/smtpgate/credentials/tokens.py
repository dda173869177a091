"""OAuth 2.0 access tokens: the built-in issuer for service accounts, and their verification.

Issuing (RFC 6749 client credentials, RFC 9068 JWT access tokens): a service account
trades its client id and secret for a JWT signed with the server's current key
(`jwks.SigningKeys`), valid `[tokens] access_token_lifetime` (1 h by default), carrying
`sub` (the service account's login), `client_id`, `jti` and `scope`. Every issued token
is recorded by `jti`, so one can be revoked alone.

Scopes: `smtp` (needed to send) and `sender:ADDRESS` or `sender:@DOMAIN`. A token asked
for without `sender:` scopes may send as whatever its service account may send as at
the moment it is used; with them, only as those (each must be allowed to the account).

Verifying (the SMTP wire, through `CredentialService.authenticate`): length (16 KiB at
most), structure, issuer (ours or a configured IdP), algorithm (the issuer's allow-list;
`none` never), key by `kid`, signature, `exp`/`nbf`/`iat` with `[tokens] leeway`, `aud`,
scope, revocation by `jti`, then the subject: a live service account, or for an IdP an
enabled account. Each refusal has its own FailureReason for the audit; the client only
ever sees 535 (454 when an IdP's keys cannot be fetched). Revocation of a service
account or of one token is a database row, read on every authentication: it takes
effect at once, in every worker.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import Key
from joserfc.jws import extract_compact, validate_compact
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from smtpgate.credentials import service_accounts as sa
from smtpgate.credentials.errors import CredentialError, InvalidOperation, InvalidScope
from smtpgate.credentials.idp import ExternalIssuer, scopes_in
from smtpgate.credentials.jwks import (
    SIGNING_ALGORITHMS,
    KeysUnavailable,
    QuietRegistry,
    SigningKeys,
)
from smtpgate.credentials.model import (
    AuthFailure,
    CredentialKind,
    FailureReason,
    Principal,
)
from smtpgate.credentials.scopes import (
    ScopeRequest,
    Scopes,
    normalize_address,
    parse_sender_pattern,
)
from smtpgate.errors import Kind
from smtpgate.store import Store
from smtpgate.store.models import AccountRow
from smtpgate.store.models_tokens import OAuthTokenRow, ServiceAccountRow
from smtpgate.timefmt import iso_utc

if TYPE_CHECKING:
    from smtpgate.config import Config

log = logging.getLogger("smtpgate.tokens")

MAX_TOKEN_LENGTH = 16 * 1024
SEND_SCOPE = "smtp"
SENDER_SCOPE = "sender:"
TOKEN_MECHANISMS = frozenset({"XOAUTH2", "OAUTHBEARER"})

# Tokens are looked at before their signature is checked, so parsing is bounded.
_REGISTRY = QuietRegistry(
    algorithms=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"],
    strict_check_header=False,  # IdPs add header fields of their own (x5t, nonce); the signature covers them
)
_REGISTRY.max_header_length = 4096
_REGISTRY.max_payload_length = MAX_TOKEN_LENGTH
_REGISTRY.max_signature_length = 1024

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class TokenError(CredentialError):
    """A refused token request; `error` is the RFC 6749 section 5.2 code for the endpoint."""

    def __init__(self, error: str, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.error = error


@dataclass(frozen=True)
class TokenSettings:
    issuer: str
    audience: str
    lifetime: timedelta = timedelta(hours=1)
    max_lifetime: timedelta = timedelta(hours=24)
    leeway: timedelta = timedelta(seconds=30)
    enabled: bool = True


@dataclass(frozen=True)
class IssuedToken:
    """A new access token: shown once, like every secret."""

    access_token: str = field(repr=False)
    jti: str
    service_account: str
    login: str
    scope: str
    expires_at: datetime
    expires_in: int

    def to_json(self) -> dict[str, Any]:
        """The RFC 6749 section 5.1 response body."""
        return {"access_token": self.access_token, "token_type": "Bearer",
                "expires_in": self.expires_in, "scope": self.scope}


@dataclass(frozen=True)
class TokenInfo:
    jti: str
    issuer: str
    service_account: str | None
    subject: str
    scope: str
    issued_at: datetime | None
    expires_at: datetime | None
    issued_via: str
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"jti": self.jti, "issuer": self.issuer, "service_account": self.service_account,
                "subject": self.subject, "scope": self.scope, "issued_at": iso_utc(self.issued_at),
                "expires_at": iso_utc(self.expires_at), "issued_via": self.issued_via,
                "revoked_at": iso_utc(self.revoked_at)}


class _Refused(Exception):
    def __init__(self, reason: FailureReason) -> None:
        self.reason = reason


@dataclass(frozen=True)
class _Verified:
    claims: dict[str, Any]
    issuer: ExternalIssuer | None  # None: our own


class TokenService:
    """Service accounts, the built-in issuer, and token verification for the wire."""

    def __init__(
        self,
        store: Store,
        *,
        keys: SigningKeys,
        settings: TokenSettings,
        app_key: bytes,
        issuers: Sequence[ExternalIssuer] = (),
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self.keys = keys
        self.settings = settings
        self._app_key = app_key
        self.issuers = {issuer.issuer: issuer for issuer in issuers}
        self._clock = clock

    @classmethod
    def from_config(cls, config: Config, store: Store, *, app_key: bytes, clock: Clock = utcnow) -> TokenService:
        t = config.tokens
        settings = TokenSettings(
            issuer=t.issuer or f"urn:smtpgate:{config.hostname}",
            audience=t.audience or f"urn:smtpgate:{config.hostname}:smtp",
            lifetime=t.access_token_lifetime,
            max_lifetime=t.max_token_lifetime,
            leeway=t.leeway,
            enabled=t.enabled,
        )
        keys = SigningKeys(
            config.path(t.key_dir), t.algorithm,
            keep_retired=(t.max_token_lifetime + t.leeway).total_seconds(),
            clock=lambda: clock().timestamp(),
        )
        issuers = [ExternalIssuer.from_config(entry, config) for entry in t.issuers]
        return cls(store, keys=keys, settings=settings, app_key=app_key, issuers=issuers, clock=clock)

    # ------------------------------------------------------------- service accounts

    def create_service_account(
        self,
        login: str,
        *,
        name: str = "",
        scopes: ScopeRequest = ScopeRequest(),
        token_lifetime: timedelta | None = None,
        notes: str = "",
        actor: str = "",
    ) -> sa.IssuedClient:
        """A new service account and its client secret (shown once)."""
        login = _validate_login(login)
        lifetime = self._check_lifetime(token_lifetime)
        resolved = scopes.resolve(login)
        secret = sa.generate_client_secret()
        now = self._clock()
        with self._store.session() as db:
            if db.scalar(select(ServiceAccountRow.id).where(ServiceAccountRow.login == login)) is not None:
                raise InvalidOperation(f"service account {login} already exists", code="service-account-exists",
                                       kind=Kind.CONFLICT, login=login)
            row = ServiceAccountRow(
                id=sa.new_id(), login=login, name=name.strip(), notes=notes,
                secret_hash=sa.secret_hash(self._app_key, secret),
                allowed_senders=list(resolved.allowed_senders), allowed_networks=list(resolved.allowed_networks),
                max_per_hour=resolved.max_per_hour, max_per_day=resolved.max_per_day,
                max_rcpt_per_hour=resolved.max_rcpt_per_hour, max_rcpt_per_day=resolved.max_rcpt_per_day,
                token_lifetime=int(lifetime.total_seconds()) if lifetime else None,
                created_by=actor, created_at=now, revoked_by="", use_count=0,
            )
            db.add(row)
            try:
                db.flush()
            except IntegrityError:
                raise InvalidOperation(f"service account {login} already exists", code="service-account-exists",
                                       kind=Kind.CONFLICT, login=login) from None
            return sa.IssuedClient(sa.info(row), secret)

    def list_service_accounts(self) -> list[sa.ServiceAccountInfo]:
        with self._store.session() as db:
            return [sa.info(r) for r in db.scalars(select(ServiceAccountRow).order_by(ServiceAccountRow.login))]

    def get_service_account(self, ref: str) -> sa.ServiceAccountInfo:
        with self._store.session() as db:
            return sa.info(self._account_row(db, ref))

    def revoke_service_account(self, ref: str, *, actor: str = "") -> sa.ServiceAccountInfo:
        """Immediate: its tokens stop authenticating, and it gets no new ones."""
        with self._store.session() as db:
            row = self._account_row(db, ref)
            if row.revoked_at is None:
                row.revoked_at = self._clock()
                row.revoked_by = actor
            return sa.info(row)

    def reset_client_secret(self, ref: str) -> sa.IssuedClient:
        """A new client secret; the old one stops working at once (tokens already issued stay valid)."""
        secret = sa.generate_client_secret()
        with self._store.session() as db:
            row = self._account_row(db, ref)
            if row.revoked_at is not None:
                raise InvalidOperation(f"service account {row.login} is revoked", code="service-account-revoked",
                                       kind=Kind.CONFLICT, login=row.login)
            row.secret_hash = sa.secret_hash(self._app_key, secret)
            return sa.IssuedClient(sa.info(row), secret)

    def client_secret_status(self, client_secret: str) -> tuple[str, str | None]:
        """("live" | "revoked" | "unknown", service account id) of a client secret found somewhere."""
        if not sa.is_well_formed(client_secret):
            return "unknown", None
        expected = sa.secret_hash(self._app_key, client_secret)
        with self._store.session() as db:
            row = db.scalar(select(ServiceAccountRow).where(ServiceAccountRow.secret_hash == expected))
            if row is None:
                return "unknown", None
            return ("revoked" if row.revoked_at is not None else "live"), row.id

    # ------------------------------------------------------------------- issuing

    def client_credentials(self, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
        """RFC 6749 section 4.4: the token endpoint's one grant."""
        if not sa.is_well_formed(client_secret):
            raise TokenError("invalid_client", "client authentication failed")
        with self._store.session() as db:
            row = db.get(ServiceAccountRow, client_id.strip())
            expected = sa.secret_hash(self._app_key, client_secret)
            if row is None or not _same(row.secret_hash, expected) or row.revoked_at is not None:
                raise TokenError("invalid_client", "client authentication failed")
            return self._issue(db, row, scope, None, via="oauth")

    def issue(self, ref: str, *, scope: str | None = None, lifetime: timedelta | None = None) -> IssuedToken:
        """A token for scripts and operators (`smtpgate token issue`), no client secret needed."""
        with self._store.session() as db:
            row = self._account_row(db, ref)
            if row.revoked_at is not None:
                raise InvalidOperation(f"service account {row.login} is revoked; it gets no tokens",
                                       code="service-account-revoked", kind=Kind.CONFLICT, login=row.login)
            return self._issue(db, row, scope, self._check_lifetime(lifetime), via="cli")

    def _issue(self, db: Session, row: ServiceAccountRow, scope: str | None,
               lifetime: timedelta | None, *, via: str) -> IssuedToken:
        if not self.settings.enabled:
            raise TokenError("unauthorized_client", "bearer tokens are disabled on this server",
                             "Set [tokens] enabled = true in the config.")
        granted = _grant_scope(scope, sa.scopes_of(row))
        lifetime = lifetime or (timedelta(seconds=row.token_lifetime) if row.token_lifetime else self.settings.lifetime)
        now = self._clock().replace(microsecond=0)
        expires = now + lifetime
        jti = secrets.token_hex(16)  # hex: never begins with "-", so it can be typed as an argument
        key = self.keys.active()
        claims = {
            "iss": self.settings.issuer, "sub": row.login, "aud": self.settings.audience,
            "client_id": row.id, "scope": granted, "jti": jti,
            "iat": int(now.timestamp()), "nbf": int(now.timestamp()), "exp": int(expires.timestamp()),
        }
        header = {"alg": key.algorithm, "kid": key.kid, "typ": "at+jwt"}
        token = jwt.encode(header, claims, key.key, registry=QuietRegistry(algorithms=[key.algorithm]), default_type=None)
        db.add(OAuthTokenRow(
            issuer=self.settings.issuer, jti=jti, service_account_id=row.id, subject=row.login,
            scope=granted, issued_at=now, expires_at=expires, issued_via=via, revoked_by="",
        ))
        row.last_issued_at = now
        log.info("token issued jti=%s service_account=%s scope=%r via=%s expires=%s",
                 jti, row.id, granted, via, expires.isoformat())
        return IssuedToken(token, jti, row.id, row.login, granted, expires, int(lifetime.total_seconds()))

    def revoke_token(self, jti: str, *, issuer: str | None = None, actor: str = "") -> TokenInfo:
        """Revoke one token by its `jti`: ours, or (with `issuer`) an external IdP's."""
        issuer = issuer or self.settings.issuer
        jti = jti.strip()
        if not jti:
            raise InvalidOperation("give the token's jti", code="jti-required", field="jti")
        now = self._clock()
        with self._store.session() as db:
            row = db.scalar(select(OAuthTokenRow).where(OAuthTokenRow.issuer == issuer, OAuthTokenRow.jti == jti))
            if row is None:
                if issuer == self.settings.issuer:
                    raise InvalidOperation(
                        f"no token with jti {jti} was issued here", code="token-not-found", kind=Kind.NOT_FOUND, jti=jti,
                    )
                if issuer not in self.issuers:
                    raise InvalidOperation(f"{issuer} is not a configured token issuer",
                                           "Check [[tokens.issuers]] issuer in the config.",
                                           code="unknown-issuer", field="issuer", issuer=issuer)
                row = OAuthTokenRow(issuer=issuer, jti=jti, subject="", scope="", issued_via="revocation", revoked_by="")
                db.add(row)
            if row.revoked_at is None:
                row.revoked_at = now
                row.revoked_by = actor
            db.flush()
            return _token_info(row)

    def list_tokens(self, *, service_account: str | None = None, include_expired: bool = False) -> list[TokenInfo]:
        now = self._clock()
        with self._store.session() as db:
            query = select(OAuthTokenRow).order_by(OAuthTokenRow.id)
            if service_account:
                query = query.where(OAuthTokenRow.service_account_id == self._account_row(db, service_account).id)
            if not include_expired:
                query = query.where(or_(OAuthTokenRow.expires_at.is_(None), OAuthTokenRow.expires_at > now))
            return [_token_info(row) for row in db.scalars(query)]

    def jwks(self) -> dict[str, Any]:
        self.keys.active()  # a fresh install publishes its first key before the first token
        return self.keys.jwks()

    def rotate_signing_key(self) -> str:
        return self.keys.rotate().kid

    def prune(self, older_than: datetime) -> int:
        """Forget tokens that expired (or revocations recorded) before `older_than`."""
        with self._store.session() as db:
            rows = db.scalars(select(OAuthTokenRow).where(or_(
                OAuthTokenRow.expires_at < older_than,
                (OAuthTokenRow.expires_at.is_(None)) & (OAuthTokenRow.revoked_at < older_than),
            ))).all()
            for row in rows:
                db.delete(row)
        self.keys.prune()
        return len(rows)

    # -------------------------------------------------------------- verification

    def authenticate(self, login: str, token: str, remote_ip: str) -> Principal | AuthFailure:
        """A bearer token from XOAUTH2 or OAUTHBEARER; `login` from the SASL exchange (may be empty)."""
        login = normalize_address(login)
        if not self.settings.enabled:
            return AuthFailure(FailureReason.TOKENS_DISABLED, login)
        try:
            verified = self._verify(token)
            if verified.issuer is None:
                return self._service_account_principal(verified.claims, login, remote_ip)
            return self._account_principal(verified.issuer, verified.claims, login)
        except _Refused as refused:
            return AuthFailure(refused.reason, login)

    def _verify(self, token: str) -> _Verified:
        if len(token) > MAX_TOKEN_LENGTH:
            raise _Refused(FailureReason.TOKEN_TOO_LONG)
        try:
            obj = extract_compact(token.encode("ascii"), registry=_REGISTRY)
            header = obj.headers()
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise _Refused(FailureReason.TOKEN_MALFORMED) from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(claims, dict) or not isinstance(alg, str) or not isinstance(kid, (str, type(None))):
            raise _Refused(FailureReason.TOKEN_MALFORMED)
        issuer_claim = claims.get("iss")
        if not isinstance(issuer_claim, str):  # missing, or not a name: no issuer of ours
            raise _Refused(FailureReason.TOKEN_WRONG_ISSUER)
        external = self.issuers.get(issuer_claim)
        if issuer_claim != self.settings.issuer and external is None:
            raise _Refused(FailureReason.TOKEN_WRONG_ISSUER)
        allowed = external.algorithms if external is not None else frozenset(SIGNING_ALGORITHMS)
        if alg not in allowed or alg == "none":
            raise _Refused(FailureReason.TOKEN_ALG_NOT_ALLOWED)
        if external is None and header.get("typ") != "at+jwt":  # RFC 9068 section 4: ours are access tokens
            raise _Refused(FailureReason.TOKEN_MALFORMED)
        key = self._key(external, kid, alg)
        try:
            valid = validate_compact(obj, key, algorithms=[alg], registry=_REGISTRY)
        except JoseError:
            valid = False
        if not valid:
            raise _Refused(FailureReason.TOKEN_BAD_SIGNATURE)
        audience = external.audience if external is not None else self.settings.audience
        self._check_claims(claims, issuer_claim, audience)
        required = external.required_scope if external is not None else SEND_SCOPE
        if required and required not in scopes_in(claims):
            raise _Refused(FailureReason.TOKEN_MISSING_SCOPE)
        return _Verified(claims, external)

    def _key(self, external: ExternalIssuer | None, kid: str | None, alg: str) -> Key:
        if external is None:
            own = self.keys.verification_key(kid) if kid else None
            if own is None:
                raise _Refused(FailureReason.TOKEN_UNKNOWN_KEY)
            if own.algorithm != alg:
                raise _Refused(FailureReason.TOKEN_BAD_SIGNATURE)
            return own.key
        try:
            found = external.keys.key(kid)
        except KeysUnavailable as exc:
            log.error("token issuer %s: %s", external.name, exc)
            raise _Refused(FailureReason.IDP_UNAVAILABLE) from None
        if found is None:
            raise _Refused(FailureReason.TOKEN_UNKNOWN_KEY)
        return found

    def _check_claims(self, claims: dict[str, Any], issuer: str, audience: str) -> None:
        registry = JWTClaimsRegistry(
            now=int(self._clock().timestamp()),
            leeway=int(self.settings.leeway.total_seconds()),
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _Refused(FailureReason.TOKEN_EXPIRED) from None
        except MissingClaimError as exc:
            reason = FailureReason.TOKEN_WRONG_AUDIENCE if exc.claim == "aud" else FailureReason.TOKEN_MALFORMED
            raise _Refused(reason) from None
        except ClaimError as exc:
            reason = {
                "nbf": FailureReason.TOKEN_NOT_YET_VALID,
                "iat": FailureReason.TOKEN_NOT_YET_VALID,
                "aud": FailureReason.TOKEN_WRONG_AUDIENCE,
                "iss": FailureReason.TOKEN_WRONG_ISSUER,
            }.get(exc.claim, FailureReason.TOKEN_MALFORMED)
            raise _Refused(reason) from None

    def _revoked(self, db: Session, issuer: str, jti: object, *, must_exist: bool) -> bool:
        if not isinstance(jti, str) or not jti:
            return must_exist
        row = db.scalar(select(OAuthTokenRow).where(OAuthTokenRow.issuer == issuer, OAuthTokenRow.jti == jti))
        if row is None:
            return must_exist
        return row.revoked_at is not None

    def _service_account_principal(self, claims: dict[str, Any], login: str, remote_ip: str) -> Principal | AuthFailure:
        subject = claims.get("sub")
        client_id = claims.get("client_id")
        if not isinstance(subject, str) or not isinstance(client_id, str):
            raise _Refused(FailureReason.TOKEN_NO_LOGIN)
        subject = normalize_address(subject)
        with self._store.session() as db:
            if self._revoked(db, self.settings.issuer, claims.get("jti"), must_exist=True):
                raise _Refused(FailureReason.TOKEN_REVOKED)
            row = db.get(ServiceAccountRow, client_id)
            if row is None or row.login != subject:
                raise _Refused(FailureReason.TOKEN_REVOKED)
            if login and login != subject:
                return AuthFailure(FailureReason.TOKEN_LOGIN_MISMATCH, login, row.id)
            if row.revoked_at is not None:
                return AuthFailure(FailureReason.REVOKED, subject, row.id)
            scopes = _narrowed(sa.scopes_of(row), claims.get("scope"))
            if not scopes.allows_ip(remote_ip):
                return AuthFailure(FailureReason.IP_NOT_ALLOWED, subject, row.id)
            row.last_used_at = self._clock()
            row.last_used_ip = remote_ip
            row.use_count = row.use_count + 1
            return Principal(f"sa:{row.id}", row.login, row.id, CredentialKind.ACCESS_TOKEN, scopes)

    def _account_principal(self, issuer: ExternalIssuer, claims: dict[str, Any], login: str) -> Principal | AuthFailure:
        subject = issuer.login_of(claims)
        if subject is None:
            raise _Refused(FailureReason.TOKEN_NO_LOGIN)
        subject = normalize_address(subject)
        if login and login != subject:
            return AuthFailure(FailureReason.TOKEN_LOGIN_MISMATCH, login, issuer.credential_id)
        with self._store.session() as db:
            if self._revoked(db, issuer.issuer, claims.get("jti"), must_exist=False):
                return AuthFailure(FailureReason.TOKEN_REVOKED, subject, issuer.credential_id)
            account = db.scalar(select(AccountRow).where(AccountRow.login == subject))
            if account is None:
                return AuthFailure(FailureReason.UNKNOWN_LOGIN, subject, issuer.credential_id)
            if not account.enabled:
                return AuthFailure(FailureReason.DISABLED, subject, issuer.credential_id)
            return Principal(account.id, account.login, issuer.credential_id, CredentialKind.ACCESS_TOKEN,
                             Scopes(allowed_senders=(account.login,)))

    # ------------------------------------------------------------------- helpers

    def _account_row(self, db: Session, ref: str) -> ServiceAccountRow:
        ref = ref.strip()
        row = db.get(ServiceAccountRow, ref) or db.scalar(
            select(ServiceAccountRow).where(ServiceAccountRow.login == normalize_address(ref)))
        if row is None:
            raise InvalidOperation(f"no service account {ref}", code="service-account-not-found", kind=Kind.NOT_FOUND,
                                   ref=ref)
        return row

    def _check_lifetime(self, lifetime: timedelta | None) -> timedelta | None:
        if lifetime is None:
            return None
        if lifetime <= timedelta(0) or lifetime > self.settings.max_lifetime:
            raise InvalidOperation(
                f"a token lifetime must be more than 0 and at most {self.settings.max_lifetime}",
                "Use a duration such as 15m or 1h, or raise [tokens] max_token_lifetime.",
                code="invalid-duration", field="lifetime",
            )
        return lifetime


def _validate_login(login: str) -> str:
    value = normalize_address(login)
    try:
        pattern = parse_sender_pattern(value)
    except InvalidScope:
        pattern = ""
    if not pattern or pattern.startswith("@"):
        raise InvalidOperation(f"{login!r} is not an address",
                               "A service account's login looks like an address, e.g. billing-bot@example.com.",
                               code="invalid-login", field="login", login=login)
    return value


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def _grant_scope(requested: str | None, allowed: Scopes) -> str:
    """The scope string to grant: `smtp` plus any `sender:` narrowing the account allows."""
    senders: list[str] = []
    for item in (requested or "").split():
        if item == SEND_SCOPE:
            continue
        if not item.startswith(SENDER_SCOPE):
            raise TokenError("invalid_scope", f"unknown scope {item!r}",
                             "Scopes are `smtp` and `sender:ADDRESS` or `sender:@DOMAIN`.")
        try:
            pattern = parse_sender_pattern(item[len(SENDER_SCOPE):])
        except InvalidScope:
            raise TokenError("invalid_scope", f"{item!r} is not a sender address or domain") from None
        permitted = pattern in allowed.allowed_senders if pattern.startswith("@") else allowed.allows_sender(pattern)
        if not permitted:
            raise TokenError("invalid_scope", f"{item!r} is beyond what this service account may send as")
        senders.append(SENDER_SCOPE + pattern)
    return " ".join([SEND_SCOPE, *dict.fromkeys(senders)])


def _narrowed(scopes: Scopes, granted: object) -> Scopes:
    """The account's scopes now, narrowed to the token's `sender:` scopes (if it has any)."""
    items = granted.split() if isinstance(granted, str) else []
    wanted = [i[len(SENDER_SCOPE):] for i in items if i.startswith(SENDER_SCOPE)]
    if not wanted:
        return scopes
    kept = tuple(p for p in wanted if (p in scopes.allowed_senders if p.startswith("@") else scopes.allows_sender(p)))
    return Scopes(
        allowed_senders=kept,  # empty when the account was narrowed below the token: nothing is left
        allowed_networks=scopes.allowed_networks,
        max_per_hour=scopes.max_per_hour, max_per_day=scopes.max_per_day,
        max_rcpt_per_hour=scopes.max_rcpt_per_hour, max_rcpt_per_day=scopes.max_rcpt_per_day,
    )


def _token_info(row: OAuthTokenRow) -> TokenInfo:
    return TokenInfo(row.jti, row.issuer, row.service_account_id, row.subject, row.scope,
                     row.issued_at, row.expires_at, row.issued_via, row.revoked_at)


__all__ = [
    "MAX_TOKEN_LENGTH", "TOKEN_MECHANISMS", "IssuedToken", "TokenError", "TokenInfo", "TokenService",
    "TokenSettings",
]
