"""Device credentials: what a printer, a scanner or a UPS may do on the legacy listener.

Such devices speak plain SMTP, old TLS, or no AUTH at all. Rather than open a relay for
their network (Postfix's ``mynetworks``), each device gets a credential bound to one
address (or a network of at most 16), one sender, a list of allowed recipients or
recipient domains, and a low daily quota. Its secret, if it has one, works on the legacy
listener only, never on 587 or 465, and the legacy listener takes nothing else.

This module validates a device request and names what a device lacks; the credential
service stores it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from smtpgate.credentials.errors import InvalidOperation, InvalidScope
from smtpgate.credentials.scopes import normalize_address, parse_sender_pattern

__all__ = ["AUTH_CHOICES", "DEVICE_SILENT_AFTER", "TLS_CHOICES", "DeviceRequest", "weaknesses", "MAX_DEVICE_ADDRESSES"]

AUTH_CHOICES = ("none", "plain")
TLS_CHOICES = ("none", "legacy", "modern")
MAX_DEVICE_ADDRESSES = 16
DEFAULT_MAX_PER_DAY = 200
DEVICE_SILENT_AFTER = timedelta(days=30)  # `creds due` flags a device that has not sent for this long


@dataclass(frozen=True)
class DeviceRequest:
    name: str
    network: str                  # one address, or a network of at most 16 addresses
    allow_from: str               # the one sender address
    allow_to: tuple[str, ...]     # addresses or @domains
    auth: str = "plain"           # none: known by its address alone
    tls: str = "none"             # none, legacy (TLS 1.0/1.1), modern (1.2+)
    max_per_day: int = DEFAULT_MAX_PER_DAY

    def validated(self) -> DeviceRequest:
        name = self.name.strip()
        if not name:
            raise InvalidOperation("a device needs a name", "Name it after the device: printer-2nd-floor")
        if self.auth not in AUTH_CHOICES:
            raise InvalidOperation(f"--auth {self.auth!r}: expected one of {', '.join(AUTH_CHOICES)}")
        if self.tls not in TLS_CHOICES:
            raise InvalidOperation(f"--tls {self.tls!r}: expected one of {', '.join(TLS_CHOICES)}")
        if self.max_per_day < 1:
            raise InvalidScope("a device's daily quota must be at least 1", "Use --max-per-day 50, say.")
        if not self.allow_to:
            raise InvalidScope("a device needs the recipients it may send to",
                               "Name them with --allow-to ADDRESS or --allow-to @company-domain (repeatable).")
        sender = normalize_address(self.allow_from)
        if sender.startswith("@") or "@" not in sender:
            raise InvalidScope(f"--allow-from {self.allow_from!r}: a device sends as one address, not a domain")
        recipients = tuple(dict.fromkeys(parse_sender_pattern(r) for r in self.allow_to))
        return DeviceRequest(name, _device_network(self.network), sender, recipients, self.auth, self.tls, self.max_per_day)


def _device_network(text: str) -> str:
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise InvalidScope(f"--ip {text!r} is not an address or a network",
                           "Give the device's address, e.g. --ip 192.0.2.40") from None
    if network.num_addresses > MAX_DEVICE_ADDRESSES:
        raise InvalidScope(f"--ip {network} has {network.num_addresses} addresses; a device is one address "
                           f"or a network of at most {MAX_DEVICE_ADDRESSES}",
                           "Give each device its own credential.")
    return str(network)


def weaknesses(auth: str | None, tls: str | None) -> list[str]:
    """What a device lacks, in the words the inventory and doctor use."""
    found = []
    if tls == "none":
        found.append("no TLS: its traffic can be read on the network")
    elif tls == "legacy":
        found.append("weak TLS (1.0/1.1)")
    if auth == "none":
        found.append("no AUTH: known by its address alone")
    elif tls == "none":
        found.append("its password crosses the network in clear")
    return found
