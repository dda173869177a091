"""The credential service against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smtpgate.credentials import (
    AuthFailure,
    CredentialKind,
    CredentialService,
    CredentialState,
    FailureReason,
    Principal,
    ScopeRequest,
)
from smtpgate.credentials.errors import (
    AccountExists,
    AccountNotFound,
    CredentialNotFound,
    InvalidOperation,
    InvalidScope,
    WeakPassword,
)
from smtpgate.credentials.passwords import HashParams, PasswordHashing, PasswordPolicy

PASSWORD = "tulip-anvil-orbit-quartz-59"
IP = "192.0.2.10"


def auth(service: CredentialService, login: str, secret: str, ip: str = IP) -> Principal | AuthFailure:
    return service.authenticate(login, secret, ip, True)


def reason(result: Principal | AuthFailure) -> FailureReason | None:
    return result.reason if isinstance(result, AuthFailure) else None


def test_account_password_round_trip(service: CredentialService) -> None:
    account = service.create_account("Alice@Example.com", password=PASSWORD, display_name="Alice")
    assert account.login == "alice@example.com" and account.has_password
    ok = auth(service, "alice@example.com", PASSWORD)
    assert isinstance(ok, Principal)
    assert ok.credential_kind is CredentialKind.PASSWORD
    assert ok.scopes.allows_sender("alice@example.com")
    assert not ok.scopes.allows_sender("bob@example.com")
    assert reason(auth(service, "alice@example.com", PASSWORD + "x")) is FailureReason.BAD_SECRET
    assert reason(auth(service, "nobody@example.com", PASSWORD)) is FailureReason.UNKNOWN_LOGIN


def test_duplicate_and_missing_accounts(service: CredentialService) -> None:
    service.create_account("a@example.com", password=PASSWORD)
    with pytest.raises(AccountExists):
        service.create_account("A@example.com", password=PASSWORD)
    with pytest.raises(AccountNotFound) as err:
        service.get_account("z@example.com")
    assert err.value.code == "account-not-found" and "z@example.com" in str(err.value)
    with pytest.raises(InvalidOperation):
        service.create_account("not-an-address")


def test_weak_password_is_refused_and_nothing_is_created(service: CredentialService) -> None:
    with pytest.raises(WeakPassword):
        service.create_account("a@example.com", password="password")
    assert service.list_accounts() == []


def test_app_password_authenticates_and_is_scoped(service: CredentialService) -> None:
    service.create_account("app@example.com")
    issued = service.create_app_password(
        "app@example.com",
        "billing",
        scopes=ScopeRequest(allowed_senders=("@Example.com",), allowed_networks=("192.0.2.0/24",), max_per_hour=10),
    )
    assert issued.secret.startswith("sgp_")
    assert issued.credential.kind is CredentialKind.APP_PASSWORD
    ok = auth(service, "app@example.com", issued.secret)
    assert isinstance(ok, Principal) and ok.credential_id == issued.credential.id
    assert ok.scopes.allows_sender("anyone@example.com")
    assert not ok.scopes.allows_sender("anyone@example.org")
    assert ok.scopes.max_per_hour == 10
    assert reason(auth(service, "app@example.com", issued.secret, "198.51.100.1")) is FailureReason.IP_NOT_ALLOWED
    assert isinstance(auth(service, "app@example.com", issued.secret, "::ffff:192.0.2.99"), Principal)


def test_app_password_of_another_account_does_not_work(service: CredentialService) -> None:
    service.create_account("a@example.com")
    service.create_account("b@example.com")
    secret = service.create_app_password("a@example.com", "x").secret
    assert reason(auth(service, "b@example.com", secret)) is FailureReason.BAD_SECRET
    assert reason(auth(service, "c@example.com", secret)) is FailureReason.UNKNOWN_LOGIN


def test_typo_in_app_password_is_refused(service: CredentialService) -> None:
    service.create_account("a@example.com")
    secret = service.create_app_password("a@example.com", "x").secret
    typo = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    assert reason(auth(service, "a@example.com", typo)) is FailureReason.BAD_SECRET


def test_revocation_is_immediate(service: CredentialService) -> None:
    service.create_account("a@example.com")
    issued = service.create_app_password("a@example.com", "x")
    assert isinstance(auth(service, "a@example.com", issued.secret), Principal)
    info = service.revoke(issued.credential.id, actor="admin")
    assert info.state is CredentialState.REVOKED
    assert reason(auth(service, "a@example.com", issued.secret)) is FailureReason.REVOKED
    with pytest.raises(CredentialNotFound):
        service.revoke("ap_missing")


def test_expiry(service: CredentialService, clock) -> None:
    service.create_account("a@example.com")
    issued = service.create_app_password("a@example.com", "x", expires_in=timedelta(days=30))
    assert issued.credential.state is CredentialState.ACTIVE
    clock.advance(days=20)
    assert service.get_credential(issued.credential.id).state is CredentialState.EXPIRING
    assert isinstance(auth(service, "a@example.com", issued.secret), Principal)
    clock.advance(days=11)
    assert service.get_credential(issued.credential.id).state is CredentialState.EXPIRED
    assert reason(auth(service, "a@example.com", issued.secret)) is FailureReason.EXPIRED


def test_disabling_the_account_stops_every_credential(service: CredentialService) -> None:
    service.create_account("a@example.com", password=PASSWORD)
    secret = service.create_app_password("a@example.com", "x").secret
    service.set_account_enabled("a@example.com", False)
    assert reason(auth(service, "a@example.com", PASSWORD)) is FailureReason.DISABLED
    assert reason(auth(service, "a@example.com", secret)) is FailureReason.DISABLED
    assert {c.state for c in service.list_credentials(account="a@example.com")} == {CredentialState.DISABLED}
    service.set_account_enabled("a@example.com", True)
    assert isinstance(auth(service, "a@example.com", secret), Principal)


def test_require_app_passwords(service: CredentialService) -> None:
    service.create_account("a@example.com", password=PASSWORD)
    secret = service.create_app_password("a@example.com", "phone").secret
    service.update_account("a@example.com", require_app_passwords=True)
    assert reason(auth(service, "a@example.com", PASSWORD)) is FailureReason.APP_PASSWORD_REQUIRED
    # a wrong password must not learn that app passwords are required
    assert reason(auth(service, "a@example.com", PASSWORD + "x")) is FailureReason.BAD_SECRET
    assert isinstance(auth(service, "a@example.com", secret), Principal)


def test_rotation_keeps_the_old_secret_for_the_overlap(service: CredentialService, clock) -> None:
    service.create_account("a@example.com")
    old = service.create_app_password("a@example.com", "crm", scopes=ScopeRequest(max_per_day=5))
    new = service.rotate(old.credential.id, overlap=timedelta(hours=24))
    assert new.secret != old.secret
    assert new.credential.name == "crm" and new.credential.scopes.max_per_day == 5
    assert new.credential.rotated_from == old.credential.id
    assert service.get_credential(old.credential.id).replaced_by == new.credential.id
    assert isinstance(auth(service, "a@example.com", old.secret), Principal)
    assert isinstance(auth(service, "a@example.com", new.secret), Principal)
    clock.advance(hours=24, seconds=1)
    assert reason(auth(service, "a@example.com", old.secret)) is FailureReason.EXPIRED
    assert isinstance(auth(service, "a@example.com", new.secret), Principal)


def test_rotation_refusals(service: CredentialService) -> None:
    account = service.create_account("a@example.com", password=PASSWORD)
    pw = service.list_credentials(account=account.login)[0]
    with pytest.raises(InvalidOperation, match="account password"):
        service.rotate(pw.id)
    issued = service.create_app_password("a@example.com", "x")
    service.revoke(issued.credential.id)
    with pytest.raises(InvalidOperation, match="revoked"):
        service.rotate(issued.credential.id)


def test_due_lists_old_and_soon_expiring(service: CredentialService, clock) -> None:
    service.create_account("a@example.com")
    aged = service.create_app_password("a@example.com", "aged")
    clock.advance(days=80)
    expiring = service.create_app_password("a@example.com", "soon", expires_in=timedelta(days=10))
    fresh = service.create_app_password("a@example.com", "fresh")
    clock.advance(days=11)
    due = {c.id for c in service.due()}
    assert aged.credential.id in due
    assert fresh.credential.id not in due
    assert expiring.credential.id not in due  # already expired: nothing to rotate
    clock.advance(days=-2)
    assert expiring.credential.id in {c.id for c in service.due()}
    service.rotate(aged.credential.id)
    assert aged.credential.id not in {c.id for c in service.due()}


def test_inventory_records_last_use(service: CredentialService, clock) -> None:
    service.create_account("a@example.com")
    issued = service.create_app_password("a@example.com", "printer")
    auth(service, "a@example.com", issued.secret, "192.0.2.7")
    clock.advance(minutes=5)
    auth(service, "a@example.com", issued.secret, "192.0.2.8")
    auth(service, "a@example.com", "sgp_wrong")  # failures are not uses
    info = service.get_credential(issued.credential.id)
    assert info.use_count == 2
    assert info.last_used_ip == "192.0.2.8"
    assert info.last_used_at == clock.now
    assert info.to_json()["last_used_at"].endswith("Z")


def test_dormant_after_90_days_unused(service: CredentialService, clock) -> None:
    service.create_account("a@example.com")
    issued = service.create_app_password("a@example.com", "x")
    clock.advance(days=91)
    assert service.get_credential(issued.credential.id).state is CredentialState.DORMANT
    assert [c.id for c in service.list_credentials(state=CredentialState.DORMANT)] == [issued.credential.id]
    auth(service, "a@example.com", issued.secret)
    assert service.get_credential(issued.credential.id).state is CredentialState.ACTIVE


def test_bad_scopes_are_refused(service: CredentialService) -> None:
    service.create_account("a@example.com")
    with pytest.raises(InvalidScope):
        service.create_app_password("a@example.com", "x", scopes=ScopeRequest(allowed_networks=("10.0.0.300/8",)))
    with pytest.raises(InvalidScope):
        service.create_app_password("a@example.com", "x", scopes=ScopeRequest(allowed_senders=("nodomain",)))
    with pytest.raises(InvalidScope):
        service.create_app_password("a@example.com", "x", scopes=ScopeRequest(max_per_hour=0))


def test_rehash_at_login_when_parameters_change(store, clock) -> None:
    def make(params: HashParams) -> CredentialService:
        return CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(params), policy=PasswordPolicy(), clock=clock)

    weak = make(HashParams(memory_kib=8192, time_cost=1))
    weak.create_account("a@example.com", password=PASSWORD)
    strong = make(HashParams(memory_kib=9216, time_cost=2))
    assert isinstance(strong.authenticate("a@example.com", PASSWORD, IP, True), Principal)
    from sqlalchemy import select

    from smtpgate.store.models import CredentialRow

    with store.session() as db:
        stored = db.scalar(select(CredentialRow.secret_hash).where(CredentialRow.kind == "password"))
    assert "m=9216,t=2" in stored
    assert isinstance(weak.authenticate("a@example.com", PASSWORD, IP, True), Principal)


def test_unknown_login_pays_for_an_argon2_verification(service: CredentialService, monkeypatch) -> None:
    """The time of a reply must not tell whether the login exists: both paths verify once."""
    service.create_account("a@example.com", password=PASSWORD)
    service.create_account("nopass@example.com")
    calls: list[str] = []
    original = PasswordHashing.verify

    def counting(self: PasswordHashing, stored: str, password: str) -> bool:
        calls.append(stored[:10])
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHashing, "verify", counting)
    for login in ("a@example.com", "ghost@example.com", "nopass@example.com"):
        calls.clear()
        service.authenticate(login, "wrong-password-123", IP, True)
        assert len(calls) == 1 and calls[0].startswith("$argon2id"), login


def test_an_authorization_identity_other_than_the_login_is_refused(service: CredentialService) -> None:
    """PLAIN `carol\\0alice\\0secret` must not log in as alice; `alice\\0alice\\0secret` may (mutt sends it)."""
    service.create_account("alice@example.com", password=PASSWORD)
    app = service.create_app_password("alice@example.com", "mutt").secret
    for secret in (PASSWORD, app):
        same = service.authenticate("alice@example.com", secret, IP, True, authzid="Alice@Example.com")
        assert isinstance(same, Principal), same
        other = service.authenticate("alice@example.com", secret, IP, True, authzid="carol@example.com")
        assert reason(other) is FailureReason.AUTHZID_REFUSED
    scram = service.authenticate("alice@example.com", "", IP, True, mechanism="SCRAM-SHA-256",
                                 proven=service.scram_keys("alice@example.com").keys[0][0], authzid="carol@example.com")
    assert reason(scram) is FailureReason.AUTHZID_REFUSED
