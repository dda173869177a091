"""Scopes that would surprise an owner are refused by the service itself (so every face,
the CLI and the admin API alike, refuses them): foreign senders, networks with host bits,
two live app passwords of one account with the same name."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from smtpgate.credentials import CredentialService, ScopeRequest
from smtpgate.credentials.errors import DuplicateName, ForeignSender, InvalidScope, InvalidValue
from smtpgate.credentials.scopes import MAX_LIMIT
from smtpgate.store import Store
from smtpgate.store.models import AccountRow, CredentialRow


@pytest.fixture
def alice(service: CredentialService) -> str:
    service.create_account("alice@example.com")
    return "alice@example.com"


@pytest.mark.parametrize("sender", ["@evil.com", "ceo@evil.com", "alice@example.com.evil.com", "@notexample.com"])
def test_a_sender_outside_the_accounts_domain_needs_to_be_asked_for(service: CredentialService, alice: str, sender: str) -> None:
    with pytest.raises(ForeignSender) as err:
        service.create_app_password(alice, "app", scopes=ScopeRequest(allowed_senders=(sender,)))
    assert sender in str(err.value) and "example.com" in str(err.value)
    assert "--allow-foreign-sender" in err.value.hint
    issued = service.create_app_password(alice, "app", scopes=ScopeRequest(allowed_senders=(sender,), allow_foreign_sender=True))
    assert issued.credential.scopes.allowed_senders == (sender,)


def test_senders_of_the_own_domain_need_nothing(service: CredentialService, alice: str) -> None:
    issued = service.create_app_password(alice, "app", scopes=ScopeRequest(allowed_senders=("@example.com", "billing@Example.com", "@mail.example.com")))
    assert issued.credential.scopes.allowed_senders == ("@example.com", "billing@example.com", "@mail.example.com")


@pytest.mark.parametrize(
    ("cidr", "meant"),
    [("10.0.0.1/8", "did you mean 10.0.0.0/8 or 10.0.0.1/32?"),
     ("192.0.2.7/24", "did you mean 192.0.2.0/24 or 192.0.2.7/32?"),
     ("2001:db8::1/32", "did you mean 2001:db8::/32 or 2001:db8::1/128?")],
)
def test_a_network_with_host_bits_is_refused_naming_both_readings(service: CredentialService, alice: str, cidr: str, meant: str) -> None:
    with pytest.raises(InvalidScope) as err:
        service.create_app_password(alice, "app", scopes=ScopeRequest(allowed_networks=(cidr,)))
    assert meant in str(err.value)
    assert isinstance(err.value, InvalidValue)  # malformed input, not a refusal


def test_exact_networks_and_addresses_are_kept(service: CredentialService, alice: str) -> None:
    issued = service.create_app_password(alice, "app", scopes=ScopeRequest(allowed_networks=("10.0.0.0/8", "192.0.2.7", "2001:db8::/32")))
    assert issued.credential.scopes.allowed_networks == ("10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32")


def test_names_are_unique_among_live_app_passwords_of_an_account(service: CredentialService, alice: str) -> None:
    first = service.create_app_password(alice, "printer")
    with pytest.raises(DuplicateName) as err:
        service.create_app_password(alice, " printer ")
    assert first.credential.id in str(err.value) and f"creds revoke {first.credential.id}" in err.value.hint
    service.create_account("bob@example.com")
    service.create_app_password("bob@example.com", "printer")  # another account: fine
    rotated = service.rotate(first.credential.id, overlap=timedelta(hours=1))  # a successor keeps the name
    assert rotated.credential.name == "printer"
    service.revoke(rotated.credential.id)
    again = service.create_app_password(alice, "printer")  # revoked (and replaced) ones free the name
    assert again.credential.name == "printer"


def test_the_database_holds_the_rule_too(service: CredentialService, store: Store, alice: str) -> None:
    first = service.create_app_password(alice, "scanner")
    with pytest.raises(IntegrityError), store.session() as db:
        row = db.get(CredentialRow, first.credential.id)
        account = db.get(AccountRow, row.account_id)
        copy = CredentialRow(
            id="ap_duplicate00", account=account, kind=row.kind, name="scanner", notes="", created_by="",
            created_at=row.created_at, revoked_by="", secret_hash="x", lookup_key="y" * 64,
            allowed_senders=[alice], allowed_networks=[], use_count=0,
        )
        db.add(copy)
        db.flush()


@pytest.mark.parametrize("value", [0, 2**31])
def test_a_limit_out_of_range_is_refused_with_its_field(service: CredentialService, alice: str, value: int) -> None:
    """A limit the database cannot hold (PostgreSQL INTEGER is 32 bits) is bad input, not a crash."""
    for name in ("max_per_hour", "max_per_day", "max_rcpt_per_hour", "max_rcpt_per_day"):
        with pytest.raises(InvalidScope) as err:
            service.create_app_password(alice, name, scopes=ScopeRequest(**{name: value}))
        assert err.value.code == "invalid-limit" and err.value.field == name
        issued = service.create_app_password(alice, name, scopes=ScopeRequest(**{name: MAX_LIMIT}))
        assert getattr(service.get_credential(issued.credential.id).scopes, name) == MAX_LIMIT
        service.revoke(issued.credential.id)
