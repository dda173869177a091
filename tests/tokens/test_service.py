"""The token service on SQLite and PostgreSQL: service accounts, the built-in issuer, and
every reason a token is refused (the audit's reason codes), for our tokens and an IdP's."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey

from smtpgate.credentials import (
    AuthFailure,
    CredentialKind,
    CredentialService,
    FailureReason,
    Principal,
    ScopeRequest,
)
from smtpgate.credentials.errors import InvalidOperation, InvalidScope
from smtpgate.credentials.service_accounts import is_well_formed
from smtpgate.credentials.tokens import MAX_TOKEN_LENGTH, TokenError, TokenService
from smtpgate.store.models_tokens import ServiceAccountRow
from tests.conftest import FakeClock
from tests.tokens.conftest import OWN_AUDIENCE, OWN_ISSUER, own_token
from tests.tokens.idp import TestIdP

IP = "192.0.2.10"


def reason(result: Principal | AuthFailure) -> FailureReason | None:
    return result.reason if isinstance(result, AuthFailure) else None


@pytest.fixture
def bot(tokens: TokenService):
    return tokens.create_service_account(
        "bot@example.com", name="billing", scopes=ScopeRequest(allowed_senders=("@example.com", "x@other.org"), allow_foreign_sender=True))


# ------------------------------------------------------------------ service accounts


def test_create_shows_the_secret_once_and_stores_a_keyed_hash(tokens: TokenService, bot, store) -> None:
    assert is_well_formed(bot.client_secret) and bot.client_secret.startswith("sgc_")
    assert bot.client_secret not in repr(bot)
    assert bot.account.id.startswith("sa_") and bot.account.login == "bot@example.com"
    with store.session() as db:
        row = db.get(ServiceAccountRow, bot.account.id)
        assert row.secret_hash != bot.client_secret and len(row.secret_hash) == 64
    assert [a.login for a in tokens.list_service_accounts()] == ["bot@example.com"]
    assert tokens.get_service_account("BOT@example.com").id == bot.account.id


def test_default_sender_is_the_login_and_bad_input_is_refused(tokens: TokenService) -> None:
    plain = tokens.create_service_account("Printer@Example.com")
    assert plain.account.scopes.allowed_senders == ("printer@example.com",)
    with pytest.raises(InvalidOperation, match="already exists"):
        tokens.create_service_account("printer@example.com")
    with pytest.raises(InvalidOperation, match="not an address"):
        tokens.create_service_account("@example.com")
    with pytest.raises(InvalidScope):
        tokens.create_service_account("x@example.com", scopes=ScopeRequest(allowed_senders=("nonsense",)))
    with pytest.raises(InvalidOperation, match="lifetime"):
        tokens.create_service_account("y@example.com", token_lifetime=timedelta(days=30))


# ------------------------------------------------------------------------- issuing


def test_client_credentials_issue_a_verifiable_jwt(tokens: TokenService, bot, clock: FakeClock) -> None:
    issued = tokens.client_credentials(bot.account.id, bot.client_secret, None)
    assert issued.to_json()["token_type"] == "Bearer" and issued.expires_in == 3600
    assert issued.access_token not in repr(issued)
    decoded = jwt.decode(issued.access_token, KeySet.import_key_set(tokens.jwks()), algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"] == tokens.keys.active().kid
    claims = decoded.claims
    assert claims["iss"] == OWN_ISSUER and claims["aud"] == OWN_AUDIENCE and claims["sub"] == "bot@example.com"
    assert claims["client_id"] == bot.account.id and claims["scope"] == "smtp" and claims["jti"] == issued.jti
    assert claims["exp"] - claims["iat"] == 3600 and claims["iat"] == int(clock().timestamp())
    assert tokens.get_service_account(bot.account.id).last_issued_at is not None


@pytest.mark.parametrize("secret", ["sgc_" + "a" * 39, "wrong", ""])
def test_wrong_client_secret_is_invalid_client(tokens: TokenService, bot, secret: str) -> None:
    with pytest.raises(TokenError) as caught:
        tokens.client_credentials(bot.account.id, secret, None)
    assert caught.value.error == "invalid_client"


def test_unknown_or_revoked_client_is_invalid_client(tokens: TokenService, bot) -> None:
    with pytest.raises(TokenError, match="client authentication failed"):
        tokens.client_credentials("sa_0000000000000000", bot.client_secret, None)
    tokens.revoke_service_account(bot.account.login, actor="test")
    with pytest.raises(TokenError) as caught:
        tokens.client_credentials(bot.account.id, bot.client_secret, None)
    assert caught.value.error == "invalid_client"
    with pytest.raises(InvalidOperation, match="revoked"):
        tokens.issue(bot.account.id)


@pytest.mark.parametrize(("scope", "granted"), [
    ("smtp sender:a@example.com", "smtp sender:a@example.com"),
    ("sender:@example.com", "smtp sender:@example.com"),
    ("smtp  sender:X@Other.org sender:x@other.org", "smtp sender:x@other.org"),
    ("", "smtp"),
])
def test_scope_can_narrow(tokens: TokenService, bot, scope: str, granted: str) -> None:
    assert tokens.client_credentials(bot.account.id, bot.client_secret, scope).scope == granted


@pytest.mark.parametrize("scope", ["admin", "smtp sender:ceo@elsewhere.com", "sender:@other.org", "sender:not-an-address"])
def test_scope_cannot_widen(tokens: TokenService, bot, scope: str) -> None:
    with pytest.raises(TokenError) as caught:
        tokens.client_credentials(bot.account.id, bot.client_secret, scope)
    assert caught.value.error == "invalid_scope"


def test_lifetime_per_account_and_per_request(tokens: TokenService) -> None:
    short = tokens.create_service_account("short@example.com", token_lifetime=timedelta(minutes=5))
    assert tokens.client_credentials(short.account.id, short.client_secret, None).expires_in == 300
    assert tokens.issue("short@example.com", lifetime=timedelta(minutes=2)).expires_in == 120
    with pytest.raises(InvalidOperation):
        tokens.issue("short@example.com", lifetime=timedelta(hours=48))


# ------------------------------------------------------------- verification: ours


def test_token_authenticates_as_its_service_account(credentials: CredentialService, tokens: TokenService, bot) -> None:
    issued = tokens.issue(bot.account.id)
    result = credentials.authenticate("bot@example.com", issued.access_token, IP, True, mechanism="XOAUTH2")
    assert isinstance(result, Principal)
    assert (result.login, result.credential_id, result.account_id) == ("bot@example.com", bot.account.id, f"sa:{bot.account.id}")
    assert result.credential_kind is CredentialKind.ACCESS_TOKEN
    assert result.scopes.allows_sender("anyone@example.com") and not result.scopes.allows_sender("x@evil.com")
    # OAUTHBEARER without an authzid: the token alone names the user
    assert isinstance(credentials.authenticate("", issued.access_token, IP, True, mechanism="OAUTHBEARER"), Principal)
    info = tokens.get_service_account(bot.account.id)
    assert info.use_count == 2 and info.last_used_ip == IP


def test_narrowed_token_sends_only_as_its_senders(tokens: TokenService, bot) -> None:
    issued = tokens.issue(bot.account.id, scope="smtp sender:a@example.com")
    result = tokens.authenticate("bot@example.com", issued.access_token, IP)
    assert isinstance(result, Principal)
    assert result.scopes.allowed_senders == ("a@example.com",)
    assert not result.scopes.allows_sender("b@example.com")


def test_login_must_match_the_token(tokens: TokenService, bot) -> None:
    issued = tokens.issue(bot.account.id)
    assert reason(tokens.authenticate("someone@example.com", issued.access_token, IP)) is FailureReason.TOKEN_LOGIN_MISMATCH


def test_expiry_with_leeway(tokens: TokenService, bot, clock: FakeClock) -> None:
    issued = tokens.issue(bot.account.id)
    clock.advance(hours=1, seconds=10)  # within the 30 s leeway
    assert isinstance(tokens.authenticate("", issued.access_token, IP), Principal)
    clock.advance(seconds=30)
    assert reason(tokens.authenticate("", issued.access_token, IP)) is FailureReason.TOKEN_EXPIRED


def test_not_yet_valid(tokens: TokenService, bot, clock: FakeClock) -> None:
    issued = tokens.issue(bot.account.id)
    clock.advance(minutes=-5)
    assert reason(tokens.authenticate("", issued.access_token, IP)) is FailureReason.TOKEN_NOT_YET_VALID


def test_revoking_one_token_or_the_account_takes_effect_at_once(tokens: TokenService, bot) -> None:
    first, second = tokens.issue(bot.account.id), tokens.issue(bot.account.id)
    info = tokens.revoke_token(first.jti, actor="test")
    assert info.revoked_at is not None and info.service_account == bot.account.id
    assert reason(tokens.authenticate("", first.access_token, IP)) is FailureReason.TOKEN_REVOKED
    assert isinstance(tokens.authenticate("", second.access_token, IP), Principal)
    tokens.revoke_service_account(bot.account.id)
    assert reason(tokens.authenticate("", second.access_token, IP)) is FailureReason.REVOKED
    with pytest.raises(InvalidOperation, match="no token with jti"):
        tokens.revoke_token("never-issued")


def test_jti_is_safe_to_type_as_a_command_argument(tokens: TokenService, bot) -> None:
    """A jti is pasted into `smtpgate token revoke JTI`: one that began with '-' was read as an option."""
    jtis = [tokens.issue(bot.account.id).jti for _ in range(64)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", jti) for jti in jtis), jtis
    assert len(set(jtis)) == len(jtis)


def test_reset_secret_keeps_tokens_but_not_the_old_secret(tokens: TokenService, bot) -> None:
    issued = tokens.issue(bot.account.id)
    fresh = tokens.reset_client_secret(bot.account.id)
    with pytest.raises(TokenError):
        tokens.client_credentials(bot.account.id, bot.client_secret, None)
    assert tokens.client_credentials(bot.account.id, fresh.client_secret, None).access_token
    assert isinstance(tokens.authenticate("", issued.access_token, IP), Principal)


def test_ip_scope_of_the_account_applies(tokens: TokenService) -> None:
    lan = tokens.create_service_account("lan@example.com", scopes=ScopeRequest(allowed_networks=("10.0.0.0/8",)))
    issued = tokens.issue(lan.account.id)
    assert isinstance(tokens.authenticate("", issued.access_token, "10.1.2.3"), Principal)
    assert reason(tokens.authenticate("", issued.access_token, IP)) is FailureReason.IP_NOT_ALLOWED


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"aud": "urn:someone-else"}, FailureReason.TOKEN_WRONG_AUDIENCE),
    ({"aud": None}, FailureReason.TOKEN_WRONG_AUDIENCE),
    ({"iss": "urn:smtpgate:other"}, FailureReason.TOKEN_WRONG_ISSUER),
    ({"scope": "openid"}, FailureReason.TOKEN_MISSING_SCOPE),
    ({"exp": None}, FailureReason.TOKEN_MALFORMED),
    ({"jti": "never-recorded"}, FailureReason.TOKEN_REVOKED),
    ({"typ": "JWT"}, FailureReason.TOKEN_MALFORMED),  # ours are RFC 9068 at+jwt, nothing else
])
def test_bad_claims_in_our_own_tokens(tokens: TokenService, clock: FakeClock, overrides, expected) -> None:
    token = own_token(tokens, clock, **overrides)
    assert reason(tokens.authenticate("", token, IP)) is expected


def test_structural_refusals(tokens: TokenService, bot, clock: FakeClock) -> None:
    issued = tokens.issue(bot.account.id)
    head, payload, signature = issued.access_token.split(".")
    assert reason(tokens.authenticate("", "x" * (MAX_TOKEN_LENGTH + 1), IP)) is FailureReason.TOKEN_TOO_LONG
    assert reason(tokens.authenticate("", "x" * MAX_TOKEN_LENGTH, IP)) is FailureReason.TOKEN_MALFORMED
    assert reason(tokens.authenticate("", "not.a.jwt", IP)) is FailureReason.TOKEN_MALFORMED
    assert reason(tokens.authenticate("", "ünïcode", IP)) is FailureReason.TOKEN_MALFORMED
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    assert reason(tokens.authenticate("", f"{head}.{payload}.{flipped}", IP)) is FailureReason.TOKEN_BAD_SIGNATURE


def test_alg_none_and_hmac_confusion_are_refused(tokens: TokenService, idp: TestIdP, clock: FakeClock, bot) -> None:
    issued = tokens.issue(bot.account.id)
    claims = jwt.decode(issued.access_token, KeySet.import_key_set(tokens.jwks()), algorithms=["ES256"]).claims
    unsigned = idp.unsigned(clock(), **{k: claims[k] for k in ("iss", "aud", "sub", "client_id", "scope", "jti", "exp")})
    assert reason(tokens.authenticate("", unsigned, IP)) is FailureReason.TOKEN_ALG_NOT_ALLOWED
    # HS256 keyed with the public JWK: the classic algorithm-confusion attack
    public = OctKey.import_key(str(tokens.jwks()["keys"][0]).encode())
    confused = jwt.encode({"alg": "HS256", "kid": tokens.keys.active().kid}, claims, public, algorithms=["HS256"])
    assert reason(tokens.authenticate("", confused, IP)) is FailureReason.TOKEN_ALG_NOT_ALLOWED


def test_unknown_kid_and_key_rotation(tokens: TokenService, bot, clock: FakeClock) -> None:
    before = tokens.issue(bot.account.id)
    old_kid = tokens.keys.active().kid
    new_kid = tokens.rotate_signing_key()
    assert new_kid != old_kid and {k["kid"] for k in tokens.jwks()["keys"]} == {old_kid, new_kid}
    after = tokens.issue(bot.account.id)
    assert jwt.decode(after.access_token, KeySet.import_key_set(tokens.jwks()), algorithms=["ES256"]).header["kid"] == new_kid
    assert isinstance(tokens.authenticate("", before.access_token, IP), Principal)  # the old key still verifies
    clock.advance(hours=25)  # past max_token_lifetime + leeway: the old key is gone
    tokens.keys.prune()
    assert [k["kid"] for k in tokens.jwks()["keys"]] == [new_kid]
    assert reason(tokens.authenticate("", before.access_token, IP)) is FailureReason.TOKEN_UNKNOWN_KEY


def test_disabled_tokens(store, clock, tmp_path, tokens: TokenService, bot) -> None:
    issued = tokens.issue(bot.account.id)
    from dataclasses import replace

    tokens.settings = replace(tokens.settings, enabled=False)
    assert reason(tokens.authenticate("", issued.access_token, IP)) is FailureReason.TOKENS_DISABLED
    with pytest.raises(TokenError) as caught:
        tokens.client_credentials(bot.account.id, bot.client_secret, None)
    assert caught.value.error == "unauthorized_client"
    from smtpgate.credentials.passwords import PasswordHashing, PasswordPolicy
    from tests.conftest import FAST_HASH

    bare = CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH), policy=PasswordPolicy(), clock=clock)
    assert reason(bare.authenticate("", issued.access_token, IP, True, mechanism="OAUTHBEARER")) is FailureReason.TOKENS_DISABLED


def test_prune_forgets_expired_tokens(tokens: TokenService, bot, clock: FakeClock) -> None:
    issued = tokens.issue(bot.account.id, lifetime=timedelta(minutes=10))
    tokens.issue(bot.account.id, lifetime=timedelta(hours=2))
    assert len(tokens.list_tokens()) == 2
    clock.advance(hours=1)
    assert tokens.list_tokens(include_expired=True)[0].jti == issued.jti
    assert len(tokens.list_tokens()) == 1
    assert tokens.prune(clock()) == 1
    assert len(tokens.list_tokens(include_expired=True)) == 1


# -------------------------------------------------------------- verification: an IdP


def test_idp_token_authenticates_an_existing_account(credentials: CredentialService, idp: TestIdP, clock: FakeClock) -> None:
    account = credentials.create_account("alice@example.com")
    result = credentials.authenticate("alice@example.com", idp.token(clock()), IP, True, mechanism="OAUTHBEARER")
    assert isinstance(result, Principal)
    assert (result.account_id, result.login, result.credential_id) == (account.id, "alice@example.com", "idp:corp")
    assert result.scopes.allowed_senders == ("alice@example.com",)
    ec = credentials.authenticate("", idp.token(clock(), key=idp.ec, scope=None, scp=["smtp"]), IP, True, mechanism="XOAUTH2")
    assert isinstance(ec, Principal)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda idp, now: idp.token(now - timedelta(hours=1)), FailureReason.TOKEN_EXPIRED),
    (lambda idp, now: idp.token(now + timedelta(minutes=10)), FailureReason.TOKEN_NOT_YET_VALID),
    (lambda idp, now: idp.token(now, aud="api://someone-else"), FailureReason.TOKEN_WRONG_AUDIENCE),
    (lambda idp, now: idp.token(now, iss="https://evil.test/"), FailureReason.TOKEN_WRONG_ISSUER),
    (lambda idp, now: idp.forged(now), FailureReason.TOKEN_BAD_SIGNATURE),
    (lambda idp, now: idp.unsigned(now), FailureReason.TOKEN_ALG_NOT_ALLOWED),
    (lambda idp, now: idp.token(now, scope="openid"), FailureReason.TOKEN_MISSING_SCOPE),
    (lambda idp, now: idp.token(now, email=None), FailureReason.TOKEN_NO_LOGIN),
    (lambda idp, now: idp.token(now, kid="no-such-kid"), FailureReason.TOKEN_UNKNOWN_KEY),
    (lambda idp, now: idp.token(now, email="nobody@example.com"), FailureReason.UNKNOWN_LOGIN),
    (lambda idp, now: idp.token(now, pad="x" * MAX_TOKEN_LENGTH), FailureReason.TOKEN_TOO_LONG),
])
def test_idp_refusals(credentials: CredentialService, idp: TestIdP, clock: FakeClock, make, expected) -> None:
    credentials.create_account("alice@example.com")
    result = credentials.authenticate("", make(idp, clock()), IP, True, mechanism="OAUTHBEARER")
    assert reason(result) is expected


def test_idp_account_disabled_and_token_revoked(credentials: CredentialService, tokens: TokenService,
                                                idp: TestIdP, clock: FakeClock) -> None:
    credentials.create_account("alice@example.com")
    token = idp.token(clock(), jti="idp-jti-1")
    tokens.revoke_token("idp-jti-1", issuer=idp.issuer, actor="test")
    assert reason(tokens.authenticate("", token, IP)) is FailureReason.TOKEN_REVOKED
    assert isinstance(tokens.authenticate("", idp.token(clock()), IP), Principal)
    credentials.set_account_enabled("alice@example.com", False)
    assert reason(tokens.authenticate("", idp.token(clock()), IP)) is FailureReason.DISABLED
    with pytest.raises(InvalidOperation, match="not a configured token issuer"):
        tokens.revoke_token("x", issuer="https://unknown.test/")


def test_idp_keys_cached_and_refreshed_once_on_unknown_kid(credentials, tokens: TokenService, idp: TestIdP,
                                                          clock: FakeClock) -> None:
    credentials.create_account("alice@example.com")
    for _ in range(3):
        assert isinstance(tokens.authenticate("", idp.token(clock()), IP), Principal)
    assert idp.fetches == 1  # cached
    rotated = idp.rotate()
    assert isinstance(tokens.authenticate("", idp.token(clock(), key=rotated), IP), Principal)
    assert idp.fetches == 2  # fetched once more for the new kid
    assert reason(tokens.authenticate("", idp.token(clock(), kid="made-up"), IP)) is FailureReason.TOKEN_UNKNOWN_KEY
    assert idp.fetches == 3  # once per unknown kid, not more


def test_idp_unreachable_is_a_temporary_failure(credentials, tokens: TokenService, idp: TestIdP, clock: FakeClock) -> None:
    idp.fail = True
    assert reason(tokens.authenticate("", idp.token(clock()), IP)) is FailureReason.IDP_UNAVAILABLE


@pytest.mark.parametrize("algorithm", ["EdDSA", "Ed25519"])
def test_eddsa_signing(store, clock: FakeClock, tmp_path, algorithm: str) -> None:
    import warnings

    from smtpgate.credentials.jwks import SigningKeys
    from smtpgate.credentials.tokens import TokenSettings

    keys = SigningKeys(tmp_path / "ed", algorithm, keep_retired=3600, clock=lambda: clock().timestamp())
    service = TokenService(store, keys=keys, settings=TokenSettings(issuer=OWN_ISSUER, audience=OWN_AUDIENCE),
                           app_key=b"k" * 32, clock=clock)
    bot = service.create_service_account("ed-bot@example.com")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation noise in the server log for a chosen algorithm
        issued = service.client_credentials(bot.account.id, bot.client_secret, None)
        assert isinstance(service.authenticate("ed-bot@example.com", issued.access_token, IP), Principal)
    assert service.jwks()["keys"][0]["crv"] == "Ed25519"
