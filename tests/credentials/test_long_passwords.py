"""Passwords of every length up to the 1,024-character bound, in any alphabet, through the
service: creating an account, changing its password, and authenticating (PLAIN/LOGIN and SCRAM)."""

from __future__ import annotations

import itertools

import pytest
from scramp import ScramException
from scramp.utils import saslprep
from hypothesis import HealthCheck, given, settings, strategies as st

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason, Principal
from smtpgate.credentials.errors import PasswordTooLong
from smtpgate.credentials.passwords import MAX_PASSWORD_LENGTH
from tests.credentials.test_passwords import STRONG, long_passwords
from tests.tokens.test_scram import scram_login

IP = "192.0.2.10"
LOGINS = (f"user{n}@example.com" for n in itertools.count())
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(password=long_passwords(min_size=40), other=long_passwords(min_size=40))
def test_account_with_a_long_password_authenticates(service: CredentialService, password: str, other: str) -> None:
    login = next(LOGINS)
    service.create_account(login, password=password)
    assert isinstance(service.authenticate(login, password, IP, True), Principal)
    assert isinstance(service.authenticate(login, password, IP, True, mechanism="LOGIN"), Principal)
    wrong = service.authenticate(login, password + "x", IP, True)
    assert isinstance(wrong, AuthFailure) and wrong.reason is FailureReason.BAD_SECRET
    service.set_password(login, other)
    assert isinstance(service.authenticate(login, other, IP, True), Principal)
    if other != password:
        assert isinstance(service.authenticate(login, password, IP, True), AuthFailure)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=long_passwords(min_size=100))
def test_a_long_password_works_over_scram(service: CredentialService, password: str) -> None:
    login = next(LOGINS)
    service.create_account(login, password=password)
    try:
        saslprep(password)
    except ScramException:  # SASLprep refuses it: no SCRAM keys are kept, PLAIN and LOGIN work
        assert service.scram_keys(login).keys == ()
        assert isinstance(service.authenticate(login, password, IP, True), Principal)
        return
    assert isinstance(scram_login(service, login, password), Principal)


def test_over_the_bound_is_refused_at_creation_and_change_and_never_verified(service: CredentialService) -> None:
    too_long = STRONG + "x" * (MAX_PASSWORD_LENGTH - len(STRONG) + 1)
    with pytest.raises(PasswordTooLong):
        service.create_account("a@example.com", password=too_long)
    service.create_account("a@example.com", password=STRONG)
    with pytest.raises(PasswordTooLong):
        service.set_password("a@example.com", too_long)
    result = service.authenticate("a@example.com", STRONG + "x" * 5000, IP, True)
    assert isinstance(result, AuthFailure) and result.reason is FailureReason.BAD_SECRET
    assert isinstance(service.authenticate("a@example.com", STRONG, IP, True), Principal)
