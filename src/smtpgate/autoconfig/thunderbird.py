"""Thunderbird's autoconfig document (`clientConfig` version 1.1).

Fetched from `https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=...` and
`https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml`. Implicit TLS (465) is listed
before STARTTLS (587), as RFC 8314 prefers; the login is the address itself.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from smtpgate.autoconfig.settings import ClientSettings

PLACEHOLDER = "%EMAILADDRESS%"   # Thunderbird puts the address typed in here


def _server(parent: ET.Element, tag: str, kind: str, host: str, port: int, socket_type: str) -> None:
    server = ET.SubElement(parent, tag, type=kind)
    for name, value in (("hostname", host), ("port", str(port)), ("socketType", socket_type),
                        ("username", PLACEHOLDER), ("authentication", "password-cleartext")):
        ET.SubElement(server, name).text = value


def config_v11(settings: ClientSettings, domain: str) -> str:
    """The document for one mail domain (checked by the caller with `check_domain`)."""
    incoming = settings.incoming
    assert incoming is not None
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = settings.provider
    ET.SubElement(provider, "displayShortName").text = settings.provider.split(".")[0]
    _server(provider, "incomingServer", incoming.protocol, incoming.host, incoming.port, incoming.security)
    _server(provider, "outgoingServer", "smtp", settings.host, settings.submissions_port, "SSL")
    _server(provider, "outgoingServer", "smtp", settings.host, settings.submission_port, "STARTTLS")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
