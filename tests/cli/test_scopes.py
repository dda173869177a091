"""Scopes that would surprise an owner, refused with the reason and the fix, through the
real entry point (the checks themselves live in the credential service and the guard)."""

from __future__ import annotations

from tests.cli.conftest import Cli


def test_a_foreign_sender_is_refused_unless_asked_for(cli: Cli) -> None:
    cli.ok("account", "add", "alice@example.com", "--no-password")
    refused = cli("app-password", "create", "alice@example.com", "--name", "app", "--allow-from", "@evil.com")
    assert refused.code == 1
    assert "@evil.com is outside example.com" in refused.stderr and "--allow-foreign-sender" in refused.stderr
    assert cli.ok("creds", "list", "--json").json() == []
    allowed = cli.ok("app-password", "create", "alice@example.com", "--name", "app", "--allow-from", "@evil.com",
                     "--allow-foreign-sender", "--json").json()
    assert allowed["scopes"]["allowed_senders"] == ["@evil.com"]
    own = cli.ok("app-password", "create", "alice@example.com", "--name", "app2", "--allow-from", "@example.com", "--json").json()
    assert own["scopes"]["allowed_senders"] == ["@example.com"]
    bot = cli("service-account", "create", "bot@example.com", "--allow-from", "ceo@evil.com")
    assert bot.code == 1 and "--allow-foreign-sender" in bot.stderr


def test_a_network_with_host_bits_is_refused_naming_the_network_meant(cli: Cli) -> None:
    cli.ok("account", "add", "alice@example.com", "--no-password")
    refused = cli("app-password", "create", "alice@example.com", "--name", "app", "--allow-ip", "10.0.0.1/8")
    assert refused.code == 2
    assert "did you mean 10.0.0.0/8 or 10.0.0.1/32?" in refused.stderr
    assert "Value error" not in refused.stderr and "Traceback" not in refused.stderr
    ban = cli("ban", "add", "192.0.2.7/24")
    assert ban.code == 2 and "did you mean 192.0.2.0/24 or 192.0.2.7/32?" in ban.stderr
    assert cli.ok("ban", "list", "--json").json() == []


def test_two_live_app_passwords_of_one_account_cannot_share_a_name(cli: Cli) -> None:
    cli.ok("account", "add", "alice@example.com", "--no-password")
    first = cli.ok("app-password", "create", "alice@example.com", "--name", "printer", "--json").json()
    again = cli("app-password", "create", "alice@example.com", "--name", "printer")
    assert again.code == 1
    assert f"already has an app password named 'printer' ({first['id']})" in again.stderr
    assert f"creds revoke {first['id']}" in again.stderr
    cli.ok("creds", "revoke", first["id"])
    cli.ok("app-password", "create", "alice@example.com", "--name", "printer")


def test_banning_an_address_of_an_allow_listed_network_says_why_and_how(cli: Cli) -> None:
    refused = cli("ban", "add", "127.0.0.1/32")
    assert refused.code == 1
    assert "inside the allow-listed 127.0.0.0/8" in refused.stderr
    assert "no narrower ban can help" in refused.stderr
    assert "take 127.0.0.0/8 out of [guard] allow_networks" in refused.stderr
    wide = cli("ban", "add", "0.0.0.0/0")
    assert wide.code == 1 and "narrower network that leaves them out" in wide.stderr
