"""An Apple configuration profile (`.mobileconfig`) with one `com.apple.mail.managed` payload.

Offered right after an app password is made: opened on an iPhone or a Mac it sets up the
account with the submission server, implicit TLS on 465, and the address as login. The
app password goes in only when asked for (`OutgoingPassword`); otherwise the device asks
for it once. The mailbox password is never ours: the device asks for it.
Identifiers and UUIDs derive from the credential, so the same credential gives the same
profile and installing it again replaces the old one instead of adding a second account.
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass, field

from smtpgate.autoconfig.settings import ClientSettings

_NAMESPACE = uuid.UUID("1f6f5a52-5f0e-4a8e-9a57-6d7a0c1b2c3d")


@dataclass(frozen=True)
class ProfileRequest:
    address: str           # the account's login, its email address
    credential_id: str     # the app password this profile is for
    name: str              # the app password's name: the account's description on the device
    password: str | None = field(default=None, repr=False)   # embedded only when given


def _identifier(host: str) -> str:
    return ".".join(reversed(host.split("."))) + ".smtpgate"


def mobileconfig(settings: ClientSettings, request: ProfileRequest) -> bytes:
    incoming = settings.incoming
    assert incoming is not None
    base = _identifier(settings.host)
    mail: dict[str, object] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.mail.{request.credential_id}",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"mail:{settings.host}:{request.credential_id}")).upper(),
        "PayloadDisplayName": f"Mail: {request.address}",
        "EmailAccountDescription": f"{request.address} ({request.name})",
        "EmailAccountName": request.address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": request.address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": incoming.security != "plain",
        "IncomingMailServerUsername": request.address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": settings.host,
        "OutgoingMailServerPortNumber": settings.submissions_port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": request.address,
        "OutgoingPasswordSameAsIncomingPassword": False,
        "PreventMove": False,
        "SMIMEEnabled": False,
    }
    if request.password is not None:
        mail["OutgoingPassword"] = request.password
    profile = {
        "PayloadContent": [mail],
        "PayloadDisplayName": f"{settings.provider}: {request.address}",
        "PayloadDescription": f"Sends mail from {request.address} through {settings.host} with the app password "
                              f"{request.name!r}.",
        "PayloadIdentifier": f"{base}.profile.{request.credential_id}",
        "PayloadOrganization": settings.provider,
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"profile:{settings.host}:{request.credential_id}")).upper(),
        "PayloadVersion": 1,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
