"""DNS blocklists (RFC 5782): is this address listed on that zone, and why."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Listing", "check", "query_name"]


class Dns(Protocol):
    def query(self, name: str, rdtype: str) -> list[str]: ...


@dataclass(frozen=True)
class Listing:
    address: str
    zone: str
    status: str          # listed, clear, refused (the list answered outside 127.0.0.0/8 or with 127.255.255.x)
    codes: tuple[str, ...] = ()
    reason: str = ""


def query_name(address: str, zone: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        head = ".".join(reversed(str(ip).split(".")))
    else:
        head = ".".join(reversed(ip.exploded.replace(":", "")))
    return f"{head}.{zone.rstrip('.')}"


def check(dns: Dns, address: str, zone: str) -> Listing:
    """DnsTrouble propagates: "could not ask" is not "not listed"."""
    name = query_name(address, zone)
    codes = tuple(dns.query(name, "A"))
    if not codes:
        return Listing(address, zone, "clear")
    if any(not c.startswith("127.") or c.startswith("127.255.255.") for c in codes):
        return Listing(address, zone, "refused", codes)
    reason = " ".join(dns.query(name, "TXT"))[:300]
    return Listing(address, zone, "listed", codes, reason)
