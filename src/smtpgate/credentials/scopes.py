"""What a credential may do: send as whom, from where, how much.

Every credential carries its scopes. An empty network list means any network; the
sender list is never empty (it defaults to the account's own address), because a
credential that may send as anyone is how a leak becomes phishing in your name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from smtpgate.cidr import HostBitsSet, exact_network
from smtpgate.credentials.errors import ForeignSender, InvalidScope

MAX_LIMIT = 2**31 - 1
"""The largest rate limit: what a PostgreSQL INTEGER column holds (about 2 billion, far past any real quota)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_address(address: str) -> str:
    """Lower-case an address for comparison (local parts are matched case-insensitively)."""
    return address.strip().lower()


def parse_sender_pattern(pattern: str) -> str:
    """Validate `user@example.com` or `@example.com` (a whole domain)."""
    value = normalize_address(pattern)
    local, at, domain = value.rpartition("@")
    if not at or not domain or "." not in domain.strip(".") or " " in value:
        raise InvalidScope(
            f"{pattern!r} is not a sender address or domain",
            "Use a full address (billing@example.com) or a whole domain (@example.com).",
            code="invalid-sender", field="allow_from", value=pattern,
        )
    return value if local else "@" + domain


def parse_network(text: str) -> IPNetwork:
    try:
        return exact_network(text)
    except HostBitsSet as exc:
        raise InvalidScope(
            str(exc), f"Write --allow-ip {exc.network} for the whole network, or {exc.address} for that one address."
        ) from None
    except ValueError:
        raise InvalidScope(
            f"{text!r} is not a network",
            "Use CIDR notation such as 192.0.2.0/24, 2001:db8::/32 or a single address.",
            code="invalid-network", field="allow_ip", value=text,
        ) from None


def _as_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class Scopes:
    allowed_senders: tuple[str, ...]
    allowed_networks: tuple[str, ...] = ()
    max_per_hour: int | None = None
    max_per_day: int | None = None
    max_rcpt_per_hour: int | None = None
    max_rcpt_per_day: int | None = None
    allowed_recipients: tuple[str, ...] = ()   # empty: any (only devices are limited here)

    @classmethod
    def of(cls, row: Any) -> Scopes:
        """The scopes stored on a row (a credential or a service account: same columns)."""
        return cls(
            allowed_senders=tuple(row.allowed_senders),
            allowed_networks=tuple(row.allowed_networks),
            max_per_hour=row.max_per_hour,
            max_per_day=row.max_per_day,
            max_rcpt_per_hour=row.max_rcpt_per_hour,
            max_rcpt_per_day=row.max_rcpt_per_day,
            allowed_recipients=tuple(getattr(row, "allowed_recipients", None) or ()),
        )

    def allows_recipient(self, address: str) -> bool:
        """True when recipients are not limited, or the address or its domain is listed."""
        if not self.allowed_recipients:
            return True
        value = normalize_address(address)
        _, at, domain = value.rpartition("@")
        return value in self.allowed_recipients or (bool(at) and "@" + domain in self.allowed_recipients)

    def allows_sender(self, address: str) -> bool:
        """True when the address, or its whole domain, is in the allowed list."""
        value = normalize_address(address)
        if value in self.allowed_senders:
            return True
        _, at, domain = value.rpartition("@")
        return bool(at) and ("@" + domain) in self.allowed_senders

    def allows_ip(self, address: str) -> bool:
        if not self.allowed_networks:
            return True
        ip = _as_ip(address)
        if ip is None:
            return False
        return any(ip in ipaddress.ip_network(net) for net in self.allowed_networks)

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed_senders": list(self.allowed_senders),
            "allowed_networks": list(self.allowed_networks),
            "max_per_hour": self.max_per_hour,
            "max_per_day": self.max_per_day,
            "max_rcpt_per_hour": self.max_rcpt_per_hour,
            "max_rcpt_per_day": self.max_rcpt_per_day,
            **({"allowed_recipients": list(self.allowed_recipients)} if self.allowed_recipients else {}),
        }


def foreign_senders(account_login: str, senders: tuple[str, ...]) -> list[str]:
    """The allowed senders outside the domain of the account's own address (its subdomains
    are its own: mail.example.com belongs to whoever holds example.com)."""
    own = normalize_address(account_login).rpartition("@")[2]
    return [s for s in senders if not _within(s.rpartition("@")[2], own)]


def _within(domain: str, own: str) -> bool:
    return domain == own or domain.endswith("." + own)


@dataclass(frozen=True)
class ScopeRequest:
    """Scopes as asked for by an operator, validated into Scopes by `resolve`."""

    allowed_senders: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    max_per_hour: int | None = None
    max_per_day: int | None = None
    max_rcpt_per_hour: int | None = None
    max_rcpt_per_day: int | None = None
    allow_foreign_sender: bool = False  # senders outside the account's domain, asked for explicitly

    def resolve(self, account_login: str) -> Scopes:
        senders = tuple(dict.fromkeys(parse_sender_pattern(p) for p in self.allowed_senders))
        foreign = foreign_senders(account_login, senders)
        if foreign and not self.allow_foreign_sender:
            own = normalize_address(account_login).rpartition("@")[2]
            raise ForeignSender(
                f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} outside {own}, the domain of "
                f"{normalize_address(account_login)}: a leaked secret could then send as "
                f"{'them' if len(foreign) > 1 else 'it'}",
                "If this credential really sends for another domain, say so with --allow-foreign-sender.",
            )
        networks = tuple(dict.fromkeys(str(parse_network(n)) for n in self.allowed_networks))
        for name in ("max_per_hour", "max_per_day", "max_rcpt_per_hour", "max_rcpt_per_day"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_LIMIT:
                raise InvalidScope(f"{name.replace('_', '-')} must be between 1 and {MAX_LIMIT}, got {value}",
                                   code="invalid-limit", field=name, value=value)
        return Scopes(
            allowed_senders=senders or (normalize_address(account_login),),
            allowed_networks=networks,
            max_per_hour=self.max_per_hour,
            max_per_day=self.max_per_day,
            max_rcpt_per_hour=self.max_rcpt_per_hour,
            max_rcpt_per_day=self.max_rcpt_per_day,
        )
