"""Outlook's autodiscover, the plain-old-XML (POX) form: `POST /autodiscover/autodiscover.xml`.

The request names the address (`EMailAddress`) and the response schema it accepts; the
answer lists the mailbox server and the submission server as `Protocol` blocks. The
request is parsed by the standard library's expat after refusing any DTD: with no
DOCTYPE there are no entities to expand or fetch, and the body is size-capped first
(a dependency such as defusedxml would do the same for this one small document).
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from smtpgate.autoconfig.settings import AutoconfigUnavailable, ClientSettings
from smtpgate.errors import Kind

REQUEST_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
OUTER_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
MAX_REQUEST = 16 * 1024


def _bad(message: str) -> AutoconfigUnavailable:
    return AutoconfigUnavailable(message, code="autodiscover-bad-request", kind=Kind.INVALID, field="body")


def requested_address(body: bytes) -> str:
    """The `EMailAddress` of a POX request; refuses DTDs, other schemas and oversized bodies."""
    if len(body) > MAX_REQUEST:
        raise _bad(f"the request is larger than {MAX_REQUEST} bytes")
    if b"<!" in body:
        raise _bad("a DOCTYPE or entity declaration is not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise _bad("the request is not well-formed XML") from None
    ns = {"r": REQUEST_SCHEMA}
    if root.tag != f"{{{REQUEST_SCHEMA}}}Autodiscover":
        raise _bad("expected an Autodiscover request of the Outlook 2006 request schema")
    schema = (root.findtext("r:Request/r:AcceptableResponseSchema", default="", namespaces=ns) or "").strip()
    if schema and schema != RESPONSE_SCHEMA:
        raise _bad("only the Outlook 2006a response schema is offered")
    address = (root.findtext("r:Request/r:EMailAddress", default="", namespaces=ns) or "").strip()
    if not address:
        raise _bad("the request names no EMailAddress")
    return address


def _protocol(parent: ET.Element, kind: str, host: str, port: int, security: str, login: str) -> None:
    block = ET.SubElement(parent, "Protocol")
    fields = [("Type", kind), ("Server", host), ("Port", str(port)), ("DomainRequired", "off"), ("LoginName", login),
              ("SPA", "off"), ("SSL", "off" if security == "plain" else "on"),
              ("Encryption", {"SSL": "SSL", "STARTTLS": "TLS"}.get(security, "None")), ("AuthRequired", "on")]
    if kind == "SMTP":
        fields += [("UsePOPAuth", "off"), ("SMTPLast", "off")]
    for name, value in fields:
        ET.SubElement(block, name).text = value


def response(settings: ClientSettings, address: str) -> str:
    """The answer for an address (checked by the caller with `check_address`)."""
    incoming = settings.incoming
    assert incoming is not None
    root = ET.Element("Autodiscover", xmlns=OUTER_SCHEMA)
    answer = ET.SubElement(root, "Response", xmlns=RESPONSE_SCHEMA)
    ET.SubElement(ET.SubElement(answer, "User"), "DisplayName").text = address
    account = ET.SubElement(answer, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    _protocol(account, incoming.protocol.upper(), incoming.host, incoming.port,
              incoming.security, address)
    _protocol(account, "SMTP", settings.host, settings.submissions_port, "SSL", address)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
