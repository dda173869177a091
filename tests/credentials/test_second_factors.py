"""Second factors and web sessions in the credential service (SQLite and PostgreSQL):
what turning a factor on does to SMTP, TOTP replay, recovery codes, and every way a
session ends."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason, Principal
from smtpgate.credentials.second_factors import SecondFactorError
from smtpgate.credentials.web_sessions import FULL, SECOND_FACTOR

PASSWORD = "tulip-anvil-orbit-quartz-59"
LOGIN = "ann@example.com"


@pytest.fixture
def db_url(tmp_path) -> str:
    """SQLite here, to keep the module quick; `test_on_postgresql` runs the same SQL there."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def smtp_login(service: CredentialService) -> Principal | AuthFailure:
    return service.authenticate(LOGIN, PASSWORD, "192.0.2.1", True)


def totp_on(service: CredentialService, clock) -> tuple[pyotp.TOTP, tuple[str, ...]]:
    enrolment = service.second_factors.totp_begin(LOGIN)
    totp = pyotp.TOTP(enrolment.secret)
    done = service.second_factors.totp_confirm(LOGIN, enrolment.factor_id, totp.at(clock.now))
    return totp, done.recovery_codes


def test_a_second_factor_makes_smtp_want_app_passwords_until_the_last_is_removed(service: CredentialService, clock) -> None:
    service.create_account(LOGIN, password=PASSWORD)
    assert isinstance(smtp_login(service), Principal)
    enrolment = service.second_factors.totp_begin(LOGIN)
    assert enrolment.uri.startswith("otpauth://totp/smtpgate:ann%40example.com?secret=")
    with pytest.raises(SecondFactorError) as wrong:
        service.second_factors.totp_confirm(LOGIN, enrolment.factor_id, "000000" if pyotp.TOTP(enrolment.secret).at(clock.now) != "000000" else "111111")
    assert wrong.value.code == "wrong-code"
    assert isinstance(smtp_login(service), Principal)  # not on until a right code
    done = service.second_factors.totp_confirm(LOGIN, enrolment.factor_id, pyotp.TOTP(enrolment.secret).at(clock.now))
    assert len(done.recovery_codes) == 10 and len(set(done.recovery_codes)) == 10
    refused = smtp_login(service)
    assert isinstance(refused, AuthFailure) and refused.reason is FailureReason.APP_PASSWORD_REQUIRED
    # the web console still takes the password: that is where app passwords are made
    assert isinstance(service.verify_owner_password(LOGIN, PASSWORD, "192.0.2.1"), Principal)
    assert service.second_factors.remove(LOGIN, done.factor.id) == 0
    assert isinstance(smtp_login(service), Principal)
    assert service.second_factors.recovery_codes_left(LOGIN) == 0


def test_an_account_that_required_app_passwords_keeps_requiring_them(service: CredentialService, clock) -> None:
    service.create_account(LOGIN, password=PASSWORD, require_app_passwords=True)
    _, _ = totp_on(service, clock)
    factor = service.second_factors.list(LOGIN)[0]
    service.second_factors.remove(LOGIN, factor.id)
    assert service.get_account(LOGIN).require_app_passwords


def test_a_totp_code_works_once_and_one_step_of_drift(service: CredentialService, clock) -> None:
    service.create_account(LOGIN, password=PASSWORD)
    totp, _ = totp_on(service, clock)
    assert not service.second_factors.verify_totp(LOGIN, totp.at(clock.now))  # used to turn it on: replay
    assert service.second_factors.verify_totp(LOGIN, totp.at(clock.now + timedelta(seconds=30)))
    assert not service.second_factors.verify_totp(LOGIN, totp.at(clock.now + timedelta(seconds=30)))
    clock.advance(seconds=120)
    assert not service.second_factors.verify_totp(LOGIN, totp.at(clock.now - timedelta(seconds=90)))  # too old
    assert service.second_factors.verify_totp(LOGIN, totp.at(clock.now - timedelta(seconds=30)))
    assert not service.second_factors.verify_totp(LOGIN, "12345")


def test_recovery_codes_work_once_and_regenerating_ends_the_old(service: CredentialService, clock) -> None:
    service.create_account(LOGIN, password=PASSWORD)
    _, codes = totp_on(service, clock)
    assert service.second_factors.use_recovery_code(LOGIN, codes[0].upper().replace("-", " "))
    assert not service.second_factors.use_recovery_code(LOGIN, codes[0])
    assert service.second_factors.recovery_codes_left(LOGIN) == 9
    fresh = service.second_factors.regenerate_recovery_codes(LOGIN)
    assert not service.second_factors.use_recovery_code(LOGIN, codes[1])
    assert service.second_factors.use_recovery_code(LOGIN, fresh[1])


def test_the_totp_key_is_not_stored_in_clear(service: CredentialService, store) -> None:
    from sqlalchemy import select

    from smtpgate.store.models_portal import SecondFactorRow

    service.create_account(LOGIN, password=PASSWORD)
    enrolment = service.second_factors.totp_begin(LOGIN)
    with store.session() as db:
        blob = db.scalar(select(SecondFactorRow.secret))
    assert enrolment.secret.encode() not in blob


def test_sessions_end_by_idle_and_absolute_time(service: CredentialService, clock) -> None:
    account = service.create_account(LOGIN, password=PASSWORD)
    sessions = service.web_sessions
    token = sessions.start(account.id, FULL)
    clock.advance(minutes=29)
    assert sessions.lookup(token) is not None  # renews the idle time
    clock.advance(minutes=29)
    assert sessions.lookup(token) is not None
    clock.advance(minutes=31)
    assert sessions.lookup(token) is None  # idle
    token = sessions.start(account.id, FULL)
    for _ in range(25):  # always active, but 12 hours is the end
        clock.advance(minutes=29)
        alive = sessions.lookup(token)
    assert alive is None


def test_a_half_signed_in_session_is_promoted_with_a_new_token(service: CredentialService, clock) -> None:
    account = service.create_account(LOGIN, password=PASSWORD)
    sessions = service.web_sessions
    token = sessions.start(account.id, SECOND_FACTOR)
    assert sessions.lookup(token).stage == SECOND_FACTOR
    fresh = sessions.promote(token)
    assert sessions.lookup(token) is None and sessions.lookup(fresh).complete
    assert sessions.csrf_token(fresh) != sessions.csrf_token(token)
    half = sessions.start(account.id, SECOND_FACTOR)
    assert not any(sessions.failed_second_factor(half) for _ in range(4))
    assert sessions.failed_second_factor(half) and sessions.lookup(half) is None  # five wrong codes


@pytest.mark.parametrize("change", ["password", "disable", "revoke"])
def test_every_session_ends_with_the_password_or_the_account(service: CredentialService, change: str) -> None:
    account = service.create_account(LOGIN, password=PASSWORD)
    other = service.create_account("bob@example.com", password=PASSWORD)
    tokens = [service.web_sessions.start(account.id, FULL) for _ in range(2)]
    theirs = service.web_sessions.start(other.id, FULL)
    if change == "password":
        service.set_password(LOGIN, "quartz-tulip-anvil-orbit-73")
    elif change == "disable":
        service.set_account_enabled(LOGIN, False)
    else:
        password_id = next(c.id for c in service.list_credentials(account=LOGIN) if c.kind == "password")
        service.revoke(password_id)
    assert all(service.web_sessions.lookup(t) is None for t in tokens)
    assert service.web_sessions.lookup(theirs) is not None


def test_an_app_password_never_signs_in_to_the_console(service: CredentialService) -> None:
    service.create_account(LOGIN, password=PASSWORD)
    secret = service.create_app_password(LOGIN, "laptop").secret
    assert isinstance(service.verify_owner_password(LOGIN, secret, "192.0.2.1"), AuthFailure)


def test_on_postgresql(pg_schema_url: str, clock) -> None:
    from smtpgate.credentials.passwords import PasswordHashing, PasswordPolicy
    from smtpgate.store import open_store
    from tests.conftest import FAST_HASH

    store = open_store(pg_schema_url)
    try:
        service = CredentialService(store, app_key=b"k" * 32, hashing=PasswordHashing(FAST_HASH), policy=PasswordPolicy(),
                                    clock=clock)
        account = service.create_account(LOGIN, password=PASSWORD)
        token = service.web_sessions.start(account.id, FULL)
        totp, codes = totp_on(service, clock)
        assert isinstance(smtp_login(service), AuthFailure)
        assert service.second_factors.use_recovery_code(LOGIN, codes[0])
        assert service.second_factors.verify_totp(LOGIN, totp.at(clock.now + timedelta(seconds=30)))
        service.set_password(LOGIN, "quartz-tulip-anvil-orbit-73")
        assert service.web_sessions.lookup(token) is None
        assert service.second_factors.remove(LOGIN, service.second_factors.list(LOGIN)[0].id) == 0
        assert isinstance(service.authenticate(LOGIN, "quartz-tulip-anvil-orbit-73", "192.0.2.1", True), Principal)
    finally:
        store.dispose()
