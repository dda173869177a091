"""Client auto-configuration over real HTTP: Thunderbird's autoconfig, Outlook's autodiscover, Apple's profile."""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest

from smtpgate.autoconfig import AutoconfigUnavailable, settings_from
from smtpgate.autoconfig.autodiscover import REQUEST_SCHEMA, RESPONSE_SCHEMA
from smtpgate.config import ConfigError, load_config
from smtpgate.errors import Invalid
from smtpgate.ops import Actor, Operations
from tests.admin.conftest import Api, start_api

IMAP = "imap.example.com"
ADDRESS = "ada@example.com"
AUTOCONFIG = '[autoconfig]\nincoming = "imap:imap.example.com:993:SSL"\ndomains = ["example.com"]\nprovider_name = "Example Mail"\n'


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server, api = start_api(tmp_path_factory.mktemp("autoconfig") / "data", extra_config=AUTOCONFIG)
    server.credentials.create_account(ADDRESS)
    yield api
    server.close()


def _smtp(api: Api) -> tuple[str, int, int]:
    config = api.server.config
    return config.hostname, int(config.smtp.submission.rpartition(":")[2]), int(config.smtp.submissions.rpartition(":")[2])


def _servers(provider: ET.Element, tag: str) -> list[dict[str, str]]:
    return [{child.tag: (child.text or "") for child in server} | {"type": server.get("type", "")}
            for server in provider.findall(tag)]


@pytest.mark.parametrize("path", ["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"])
def test_thunderbird_autoconfig_names_both_servers(api: Api, path: str) -> None:
    host, submission, submissions = _smtp(api)
    response = httpx.get(api.base + path, params={"emailaddress": ADDRESS}, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.com"
    assert provider.findtext("domain") == "example.com" and provider.findtext("displayName") == "Example Mail"
    assert _servers(provider, "incomingServer") == [{
        "type": "imap", "hostname": IMAP, "port": "993", "socketType": "SSL", "username": "%EMAILADDRESS%",
        "authentication": "password-cleartext"}]
    outgoing = _servers(provider, "outgoingServer")
    assert [(s["type"], s["hostname"], s["port"], s["socketType"]) for s in outgoing] == [
        ("smtp", host, str(submissions), "SSL"), ("smtp", host, str(submission), "STARTTLS")]
    assert {s["username"] for s in outgoing} == {"%EMAILADDRESS%"}
    assert {s["authentication"] for s in outgoing} == {"password-cleartext"}


def test_autoconfig_host_without_address_takes_the_domain_from_the_name(api: Api) -> None:
    response = httpx.get(api.base + "/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.com"}, timeout=10)
    assert response.status_code == 200
    assert ET.fromstring(response.content).find("emailProvider").get("id") == "example.com"  # type: ignore[union-attr]


@pytest.mark.parametrize(("address", "status", "code"), [
    ("bob@other.example", 404, "autoconfig-unavailable"),
    ("not-an-address", 422, "autoconfig-bad-address"),
    ("<x>@example.com", 422, "autoconfig-bad-address"),
])
def test_autoconfig_refuses_what_it_does_not_serve(api: Api, address: str, status: int, code: str) -> None:
    response = httpx.get(api.base + "/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": address},
                         timeout=10)
    assert response.status_code == status and response.json()["code"] == code
    assert "<x>" not in response.text


def _pox(address: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{REQUEST_SCHEMA}"><Request>'
            f"<EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>{RESPONSE_SCHEMA}"
            "</AcceptableResponseSchema></Request></Autodiscover>").encode()


@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"])
def test_outlook_autodiscover_answers_the_pox_schema(api: Api, path: str) -> None:
    host, _, submissions = _smtp(api)
    response = httpx.post(api.base + path, content=_pox(ADDRESS.upper()), headers={"Content-Type": "text/xml"}, timeout=10)
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    ns = {"a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006", "r": RESPONSE_SCHEMA}
    assert root.tag == f"{{{ns['a']}}}Autodiscover"
    account = root.find("r:Response/r:Account", ns)
    assert account is not None and account.findtext("r:Action", namespaces=ns) == "settings"
    protocols = {p.findtext("r:Type", namespaces=ns): {c.tag.split("}")[1]: c.text for c in p}
                 for p in account.findall("r:Protocol", ns)}
    assert protocols["IMAP"]["Server"] == IMAP
    assert (protocols["IMAP"]["Port"], protocols["IMAP"]["SSL"], protocols["IMAP"]["Encryption"]) == ("993", "on", "SSL")
    smtp = protocols["SMTP"]
    assert (smtp["Server"], smtp["Port"], smtp["SSL"], smtp["Encryption"], smtp["AuthRequired"]) == (
        host, str(submissions), "on", "SSL", "on")
    assert smtp["LoginName"] == ADDRESS and protocols["IMAP"]["LoginName"] == ADDRESS


@pytest.mark.parametrize(("body", "status"), [
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Autodiscover/>', 422),
    (b"<Autodiscover><Request>", 422),
    (b'<Autodiscover xmlns="urn:other"><Request><EMailAddress>ada@example.com</EMailAddress></Request></Autodiscover>', 422),
    (_pox("eve@elsewhere.example"), 404),
    (b"<a>" + b"x" * 20_000 + b"</a>", 422),
])
def test_autodiscover_refuses_bad_requests(api: Api, body: bytes, status: int) -> None:
    response = httpx.post(api.base + "/autodiscover/autodiscover.xml", content=body, timeout=10)
    assert response.status_code == status, response.text


def test_apple_profile_through_the_api_has_no_secret(api: Api) -> None:
    host, _, submissions = _smtp(api)
    issued = api.server.credentials.create_app_password(ADDRESS, "iphone")
    response = api.client("viewer").get(f"/api/v1/credentials/{issued.credential.id}/apple-profile")
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-apple-aspen-config"
    profile = plistlib.loads(response.content)
    assert profile["PayloadType"] == "Configuration" and len(profile["PayloadContent"]) == 1
    mail = profile["PayloadContent"][0]
    assert mail["PayloadType"] == "com.apple.mail.managed" and mail["EmailAddress"] == ADDRESS
    assert (mail["EmailAccountType"], mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"],
            mail["IncomingMailServerUseSSL"]) == ("EmailTypeIMAP", IMAP, 993, True)
    assert (mail["OutgoingMailServerHostName"], mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"],
            mail["OutgoingMailServerAuthentication"], mail["OutgoingMailServerUsername"]) == (
        host, submissions, True, "EmailAuthPassword", ADDRESS)
    assert "OutgoingPassword" not in mail and issued.secret.encode() not in response.content
    assert api.client(None).get(f"/api/v1/credentials/{issued.credential.id}/apple-profile").status_code == 401


def test_apple_profile_embeds_the_secret_only_when_asked_and_only_its_own(api: Api) -> None:
    ops, actor = Operations(api.server.runtime), Actor.local()
    issued = api.server.credentials.create_app_password(ADDRESS, "ipad")
    other = api.server.credentials.create_app_password(ADDRESS, "mac")
    mail = plistlib.loads(ops.client_setup.apple_profile(actor, issued.credential.id, password=issued.secret))
    assert mail["PayloadContent"][0]["OutgoingPassword"] == issued.secret
    with pytest.raises(Invalid) as refused:
        ops.client_setup.apple_profile(actor, issued.credential.id, password=other.secret)
    assert refused.value.code == "secret-mismatch" and other.secret not in str(refused.value)


def test_without_an_incoming_server_nothing_is_offered(tmp_path: Path) -> None:
    config = tmp_path / "smtpgate.toml"
    config.write_text("")
    settings = settings_from(load_config(config))
    with pytest.raises(AutoconfigUnavailable, match="no incoming"):
        settings.check_address(ADDRESS)


@pytest.mark.parametrize("value", ["imap:host:993", "smtp:host:25:SSL", "imap:host:99999:SSL", "imap:host:993:TLS"])
def test_a_bad_incoming_server_is_a_config_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "smtpgate.toml"
    config.write_text(f'[autoconfig]\nincoming = "{value}"\n')
    with pytest.raises(ConfigError, match="autoconfig.incoming"):
        load_config(config)
