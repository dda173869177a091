"""SCRAM-SHA-256 against the credential service, on SQLite and PostgreSQL.

The client is scramp's ScramClient (an independent implementation of RFC 5802), the
server side our SASL mechanism fed with `CredentialService.scram_keys()`: the same path
the SMTP session takes, minus the socket.
"""

from __future__ import annotations

import pytest
from scramp import ScramClient, ScramException

from smtpgate.credentials import (
    AuthFailure,
    CredentialKind,
    CredentialService,
    FailureReason,
    Principal,
)
from smtpgate.credentials.passwords import PasswordHashing, PasswordPolicy
from smtpgate.credentials.scram import derive_salt
from smtpgate.smtp.sasl import (
    Challenge,
    SaslCredentials,
    ScramCandidate,
    ScramKeys,
    ScramSha256Mechanism,
)
from smtpgate.store import Store
from smtpgate.store.models_tokens import ScramVerifierRow
from tests.conftest import FAST_HASH, FakeClock

PASSWORD = "tulip-anvil-orbit-quartz-59"
IP = "192.0.2.7"


def scram_login(service: CredentialService, login: str, password: str) -> Principal | AuthFailure:
    client = ScramClient(["SCRAM-SHA-256"], login, password)
    mechanism = ScramSha256Mechanism()
    mechanism.start(client.get_client_first().encode())
    stored = service.scram_keys(login)
    first = mechanism.supply(ScramKeys(stored.salt, stored.iterations, tuple(ScramCandidate(*k) for k in stored.keys)))
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode())
    final = mechanism.step(client.get_client_final().encode())
    assert isinstance(final, SaslCredentials) and final.secret == ""
    result = service.authenticate(login, "", IP, True, mechanism="SCRAM-SHA-256", proven=final.proven)
    if isinstance(result, Principal):
        client.set_server_final(mechanism.success_data().decode())  # the server proved it knows the key too
    return result


def reason(result: Principal | AuthFailure) -> FailureReason | None:
    return result.reason if isinstance(result, AuthFailure) else None


def test_password_set_at_creation_works_over_scram(service: CredentialService, store: Store) -> None:
    service.create_account("alice@example.com", password=PASSWORD)
    result = scram_login(service, "alice@example.com", PASSWORD)
    assert isinstance(result, Principal) and result.credential_kind is CredentialKind.PASSWORD
    assert service.get_credential(result.credential_id).use_count == 1
    with store.session() as db:
        row = db.get(ScramVerifierRow, result.credential_id)
        assert row.iterations == 4096 and PASSWORD.encode() not in bytes(row.stored_key) + bytes(row.server_key)


def test_wrong_password_and_unknown_login(service: CredentialService) -> None:
    service.create_account("alice@example.com", password=PASSWORD)
    assert reason(scram_login(service, "alice@example.com", "tulip-anvil-orbit-quartz-58")) is FailureReason.BAD_SECRET
    assert reason(scram_login(service, "nobody@example.com", PASSWORD)) is FailureReason.UNKNOWN_LOGIN


def test_unknown_login_gets_a_stable_salt_like_any_other(service: CredentialService) -> None:
    service.create_account("alice@example.com", password=PASSWORD)
    known, unknown = service.scram_keys("alice@example.com"), service.scram_keys("nobody@example.com")
    assert unknown.salt == service.scram_keys("nobody@example.com").salt and len(unknown.salt) == 16
    assert known.salt != unknown.salt and known.iterations == unknown.iterations and unknown.keys == ()
    assert known.salt == derive_salt(b"k" * 32, "alice@example.com")


def test_app_passwords_work_over_scram_and_revocation_removes_them(service: CredentialService) -> None:
    service.create_account("bob@example.com", password=PASSWORD)
    issued = service.create_app_password("bob@example.com", "phone")
    result = scram_login(service, "bob@example.com", issued.secret)
    assert isinstance(result, Principal) and result.credential_id == issued.credential.id
    assert len(service.scram_keys("bob@example.com").keys) == 2
    service.revoke(issued.credential.id)
    assert len(service.scram_keys("bob@example.com").keys) == 1
    assert reason(scram_login(service, "bob@example.com", issued.secret)) is FailureReason.BAD_SECRET


def test_rotation_gives_the_successor_scram_keys(service: CredentialService) -> None:
    service.create_account("carol@example.com")
    old = service.create_app_password("carol@example.com", "app")
    new = service.rotate(old.credential.id)
    assert isinstance(scram_login(service, "carol@example.com", new.secret), Principal)
    assert isinstance(scram_login(service, "carol@example.com", old.secret), Principal)  # the overlap window


def test_set_password_replaces_the_keys(service: CredentialService) -> None:
    service.create_account("dave@example.com", password=PASSWORD)
    service.set_password("dave@example.com", "quiet-harbor-lantern-71")
    assert reason(scram_login(service, "dave@example.com", PASSWORD)) is FailureReason.BAD_SECRET
    assert isinstance(scram_login(service, "dave@example.com", "quiet-harbor-lantern-71"), Principal)


def test_app_passwords_required_refuses_the_account_password(service: CredentialService) -> None:
    service.create_account("erin@example.com", password=PASSWORD, require_app_passwords=True)
    assert reason(scram_login(service, "erin@example.com", PASSWORD)) is FailureReason.APP_PASSWORD_REQUIRED
    app = service.create_app_password("erin@example.com", "mail")
    assert isinstance(scram_login(service, "erin@example.com", app.secret), Principal)


def test_disabled_account_and_ip_scope_still_apply(service: CredentialService) -> None:
    from smtpgate.credentials import ScopeRequest

    service.create_account("fay@example.com")
    lan = service.create_app_password("fay@example.com", "lan", scopes=ScopeRequest(allowed_networks=("10.0.0.0/8",)))
    assert reason(scram_login(service, "fay@example.com", lan.secret)) is FailureReason.IP_NOT_ALLOWED
    other = service.create_app_password("fay@example.com", "any")
    service.set_account_enabled("fay@example.com", False)
    assert reason(scram_login(service, "fay@example.com", other.secret)) is FailureReason.DISABLED


def test_secrets_from_before_scram_get_keys_at_their_next_plain_login(store: Store, clock: FakeClock) -> None:
    before = CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH),
                               policy=PasswordPolicy(), clock=clock, scram_iterations=None)
    before.create_account("gus@example.com", password=PASSWORD)
    now = CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH),
                            policy=PasswordPolicy(), clock=clock, scram_iterations=4096)
    assert reason(scram_login(now, "gus@example.com", PASSWORD)) is FailureReason.NO_SCRAM_VERIFIER
    assert isinstance(now.authenticate("gus@example.com", PASSWORD, IP, True), Principal)  # PLAIN, once
    assert isinstance(scram_login(now, "gus@example.com", PASSWORD), Principal)


def test_a_new_iteration_count_retires_old_keys_until_the_next_plain_login(store: Store, clock: FakeClock) -> None:
    def make(iterations: int) -> CredentialService:
        return CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH),
                                 policy=PasswordPolicy(), clock=clock, scram_iterations=iterations)

    make(4096).create_account("hal@example.com", password=PASSWORD)
    stronger = make(8192)
    assert stronger.scram_keys("hal@example.com").keys == ()
    stronger.authenticate("hal@example.com", PASSWORD, IP, True)
    keys = stronger.scram_keys("hal@example.com")
    assert keys.iterations == 8192 and len(keys.keys) == 1
    assert isinstance(scram_login(stronger, "hal@example.com", PASSWORD), Principal)


def test_a_forged_server_signature_is_caught_by_the_client(service: CredentialService) -> None:
    """Sanity check of the test client: a server without the key cannot finish the exchange."""
    service.create_account("ivy@example.com", password=PASSWORD)
    client = ScramClient(["SCRAM-SHA-256"], "ivy@example.com", PASSWORD)
    mechanism = ScramSha256Mechanism()
    mechanism.start(client.get_client_first().encode())
    stored = service.scram_keys("ivy@example.com")
    first = mechanism.supply(ScramKeys(stored.salt, stored.iterations, tuple(ScramCandidate(*k) for k in stored.keys)))
    client.set_server_first(first.data.decode())
    mechanism.step(client.get_client_final().encode())
    with pytest.raises(ScramException):
        client.set_server_final("v=" + "A" * 44)


def test_the_first_step_does_the_same_database_work_for_unknown_logins(service: CredentialService, store: Store) -> None:
    """An existing login used to cost one more query before the server-first (about 1.4 ms):
    its timing told which logins exist. Now every login runs the very same statements."""
    from sqlalchemy import event

    service.create_account("alice@example.com", password=PASSWORD)
    service.create_app_password("alice@example.com", "phone")
    statements: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        service.scram_keys("alice@example.com")
        known, statements[:] = list(statements), []
        service.scram_keys("nobody@example.com")
        unknown = list(statements)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert known and known == unknown
    assert len(service.scram_keys("alice@example.com").keys) == 2
