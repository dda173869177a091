"""Invitations: a one-time, expiring link that sets an account's password, owned by the credential service."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason, Principal
from smtpgate.credentials.errors import InvalidOperation, InvalidValue, WeakPassword
from smtpgate.credentials.invites import InviteInvalid, is_well_formed
from smtpgate.credentials.redaction import redact_login
from smtpgate.store.models_console import InviteRow

LOGIN = "ada@example.com"
PASSWORD = "copper-lantern-meadow-71"


def _code(excinfo: pytest.ExceptionInfo[InviteInvalid]) -> str:
    return excinfo.value.code


def test_a_link_sets_the_password_once_and_is_stored_hashed(service: CredentialService) -> None:
    service.create_account(LOGIN)
    issued = service.create_invite(LOGIN, expires_in=timedelta(days=7), actor="cli:root")
    assert is_well_formed(issued.secret) and issued.secret not in repr(issued)
    with service._store.session() as db:
        row = db.scalar(select(InviteRow))
        assert row is not None and issued.secret not in (row.secret_hash, row.id) and len(row.secret_hash) == 64
    assert service.check_invite(issued.secret).state == "pending"
    account = service.accept_invite(issued.secret, PASSWORD, remote_ip="192.0.2.7")
    assert account.has_password
    assert isinstance(service.authenticate(LOGIN, PASSWORD, "192.0.2.7", True), Principal)
    for attempt in (lambda: service.check_invite(issued.secret),
                    lambda: service.accept_invite(issued.secret, "another-copper-lantern-88")):
        with pytest.raises(InviteInvalid) as refused:
            attempt()
        assert _code(refused) == "invite-used"
    assert isinstance(service.authenticate(LOGIN, PASSWORD, "192.0.2.7", True), Principal)  # unchanged
    [listed] = service.list_invites(LOGIN)
    assert listed.state == "used" and listed.used_at is not None


def test_a_weak_password_leaves_the_link_usable(service: CredentialService) -> None:
    service.create_account(LOGIN)
    issued = service.create_invite(LOGIN, expires_in=timedelta(days=1))
    with pytest.raises(WeakPassword):
        service.accept_invite(issued.secret, "password")
    assert service.check_invite(issued.secret).state == "pending" and not service.get_account(LOGIN).has_password


def test_expired_withdrawn_unknown_and_malformed_links_are_refused(service: CredentialService, clock) -> None:
    service.create_account(LOGIN)
    first = service.create_invite(LOGIN, expires_in=timedelta(days=7))
    second = service.create_invite(LOGIN, expires_in=timedelta(hours=1))
    with pytest.raises(InviteInvalid) as refused:
        service.check_invite(first.secret)
    assert _code(refused) == "invite-revoked"   # a new link ends the older one
    clock.advance(hours=2)
    with pytest.raises(InviteInvalid) as refused:
        service.accept_invite(second.secret, PASSWORD)
    assert _code(refused) == "invite-expired"
    for bad in (second.secret[:-1] + ("a" if second.secret[-1] != "a" else "b"), "sgi_short", ""):
        with pytest.raises(InviteInvalid) as refused:
            service.check_invite(bad)
        assert _code(refused) == "invite-unknown"
    for lifetime in (timedelta(0), timedelta(days=31)):
        with pytest.raises(InvalidOperation):
            service.create_invite(LOGIN, expires_in=lifetime)


def test_disabling_the_account_ends_its_links_and_refuses_every_credential(service: CredentialService) -> None:
    service.create_account(LOGIN, password=PASSWORD)
    app = service.create_app_password(LOGIN, "phone")
    issued = service.create_invite(LOGIN, expires_in=timedelta(days=7))
    service.set_account_enabled(LOGIN, False)
    with pytest.raises(InviteInvalid) as refused:
        service.accept_invite(issued.secret, "copper-lantern-meadow-99")
    assert _code(refused) == "invite-revoked"
    for secret in (PASSWORD, app.secret):
        result = service.authenticate(LOGIN, secret, "192.0.2.7", True)
        assert isinstance(result, AuthFailure) and result.reason is FailureReason.DISABLED
    service.set_account_enabled(LOGIN, True)
    with pytest.raises(InviteInvalid):   # enabling again does not bring an ended link back
        service.check_invite(issued.secret)
    service.set_account_enabled(LOGIN, False)
    with pytest.raises(InvalidOperation) as refused_invite:
        service.create_invite(LOGIN, expires_in=timedelta(days=1))
    assert refused_invite.value.code == "account-disabled"


def test_console_role_and_second_factor_policy(service: CredentialService) -> None:
    service.create_account(LOGIN)
    assert (service.get_account(LOGIN).role, service.get_account(LOGIN).require_second_factor) == (None, False)
    account = service.set_account_policy(LOGIN, role="operator", require_second_factor=True)
    assert (account.role, account.require_second_factor) == ("operator", True)
    assert account.to_json()["role"] == "operator"
    assert service.set_account_policy(LOGIN, role="none").role is None
    assert service.get_account(LOGIN).require_second_factor
    issued = service.create_invite(LOGIN, expires_in=timedelta(days=1))
    assert service.check_invite(issued.secret).require_second_factor
    with pytest.raises(InvalidValue) as refused:
        service.set_account_policy(LOGIN, role="root")
    assert refused.value.code == "invalid-role"


def test_an_invitation_link_pasted_anywhere_is_redacted(service: CredentialService) -> None:
    service.create_account(LOGIN)
    secret = service.create_invite(LOGIN, expires_in=timedelta(days=1)).secret
    shown = redact_login(f"https://mail.example.com/invite/{secret}")
    assert secret not in shown and secret[4:16] not in shown and "sgi_[redacted:" in shown
