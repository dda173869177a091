"""Device credentials: bound to an address, one sender, listed recipients; the legacy listener only."""

from __future__ import annotations

import pytest

from smtpgate.credentials import AuthFailure, CredentialKind, CredentialService, FailureReason, Principal
from smtpgate.credentials.devices import DeviceRequest
from smtpgate.credentials.errors import InvalidOperation, InvalidScope

LOGIN = "office@example.com"
PRINTER = "192.0.2.40"


def printer(**changes: object) -> DeviceRequest:
    values: dict[str, object] = {"name": "printer-2f", "network": PRINTER, "allow_from": "scanner@example.com",
                                 "allow_to": ("@example.com",), "auth": "plain", "tls": "none", "max_per_day": 50}
    values.update(changes)
    return DeviceRequest(**values)  # type: ignore[arg-type]


def auth(service: CredentialService, secret: str, ip: str = PRINTER, listener: str = "legacy") -> Principal | AuthFailure:
    return service.authenticate(LOGIN, secret, ip, False, listener=listener)


def test_a_device_secret_works_on_the_legacy_listener_only(service: CredentialService) -> None:
    service.create_account(LOGIN)
    issued = service.create_device(LOGIN, printer())
    device = issued.credential
    assert device.kind is CredentialKind.DEVICE and device.id.startswith("dv_")
    assert device.scopes.allowed_networks == (f"{PRINTER}/32",)
    ok = auth(service, issued.secret)
    assert isinstance(ok, Principal) and ok.credential_kind is CredentialKind.DEVICE
    assert ok.scopes.allows_recipient("anyone@example.com") and not ok.scopes.allows_recipient("x@gmail.com")
    assert ok.scopes.allows_sender("scanner@example.com") and not ok.scopes.allows_sender("office@example.com")
    for listener in ("submission", "submissions"):
        refused = auth(service, issued.secret, listener=listener)
        assert isinstance(refused, AuthFailure) and refused.reason is FailureReason.DEVICE_LEGACY_ONLY
    elsewhere = auth(service, issued.secret, ip="192.0.2.41")
    assert isinstance(elsewhere, AuthFailure) and elsewhere.reason is FailureReason.IP_NOT_ALLOWED
    assert "no TLS: its traffic can be read on the network" in device.weaknesses
    assert device.to_json()["legacy"]["auth"] == "plain"


def test_the_legacy_listener_takes_nothing_but_device_secrets(service: CredentialService) -> None:
    service.create_account(LOGIN, password="tulip-anvil-orbit-quartz-59")
    app = service.create_app_password(LOGIN, "laptop")
    for secret in (app.secret, "tulip-anvil-orbit-quartz-59"):
        refused = auth(service, secret)
        assert isinstance(refused, AuthFailure) and refused.reason is FailureReason.NOT_A_DEVICE
    assert isinstance(auth(service, app.secret, listener="submission"), Principal)


def test_a_device_without_auth_is_known_by_its_address(service: CredentialService) -> None:
    service.create_account(LOGIN)
    issued = service.create_device(LOGIN, printer(name="ups", auth="none", network="192.0.2.48/29"))
    assert issued.secret == ""
    found = service.device_for_address("192.0.2.50")
    assert isinstance(found, Principal) and found.credential_id == issued.credential.id
    assert service.device_for_address("192.0.2.60") is None
    assert "no AUTH: known by its address alone" in issued.credential.weaknesses
    service.revoke(issued.credential.id)
    assert service.device_for_address("192.0.2.50") is None


@pytest.mark.parametrize("changes, error", [
    ({"network": "192.0.2.0/24"}, InvalidScope),          # more than 16 addresses
    ({"network": "192.0.2.1/28"}, InvalidScope),          # host bits
    ({"network": "printer"}, InvalidScope),
    ({"allow_to": ()}, InvalidScope),                     # the world is not a recipient list
    ({"allow_from": "@example.com"}, InvalidScope),       # one sender address, not a domain
    ({"auth": "cram"}, InvalidOperation),
    ({"tls": "sslv3"}, InvalidOperation),
    ({"max_per_day": 0}, InvalidScope),
    ({"name": " "}, InvalidOperation),
])
def test_device_requests_are_validated(service: CredentialService, changes: dict[str, object], error: type) -> None:
    service.create_account(LOGIN)
    with pytest.raises(error):
        service.create_device(LOGIN, printer(**changes))


@pytest.mark.timeout(400)
def test_device_add_through_the_cli(tmp_path) -> None:
    from tests.cli.conftest import _initialised

    cli = _initialised(tmp_path / "data")
    cli.ok("account", "add", LOGIN, "--no-password")
    made = cli.ok("device", "add", "printer-2f", "--account", LOGIN, "--ip", PRINTER, "--allow-from",
                  "scanner@example.com", "--allow-to", "@example.com", "--max-per-day", "40", "--json").json()
    assert made["kind"] == "device" and made["secret"].startswith("sgp_") and made["legacy"]["tls"] == "none"
    listed = cli.ok("device", "list", "--json").json()
    assert [d["id"] for d in listed] == [made["id"]] and "secret" not in listed[0]
    bad = cli("device", "add", "all", "--account", LOGIN, "--ip", "10.0.0.0/8", "--allow-from", "a@example.com",
              "--allow-to", "@example.com")
    assert bad.code == 2 and "at most 16" in bad.stderr


def test_creds_due_flags_a_device_silent_for_a_month(service: CredentialService, clock) -> None:
    service.create_account(LOGIN)
    quiet = service.create_device(LOGIN, printer(name="quiet"))
    busy = service.create_device(LOGIN, printer(name="busy", network="192.0.2.41"))
    clock.advance(days=29)
    assert isinstance(auth(service, busy.secret, ip="192.0.2.41"), Principal)
    service.flush_usage()
    assert quiet.credential.id not in {c.id for c in service.due()}
    clock.advance(days=2)
    due = {c.id for c in service.due()}
    assert quiet.credential.id in due and busy.credential.id not in due
    service.revoke(quiet.credential.id)
    assert quiet.credential.id not in {c.id for c in service.due()}


def test_a_device_principal_names_the_device_and_a_misused_secret_too(service: CredentialService) -> None:
    service.create_account(LOGIN)
    issued = service.create_device(LOGIN, printer(tls="legacy"))
    ok = auth(service, issued.secret)
    assert isinstance(ok, Principal) and (ok.device, ok.device_tls) == ("printer-2f", "legacy")
    for refused in (auth(service, issued.secret, listener="submission"), auth(service, issued.secret, ip="192.0.2.99")):
        assert isinstance(refused, AuthFailure) and refused.device == "printer-2f"
