"""Addresses and the networks they belong to, as the guard counts and bans them.

Integer arithmetic instead of `ipaddress` objects on the hot path: a connection's ban
check builds a handful of network strings, and that should cost microseconds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NotANetwork(ValueError):
    """A CIDR or address that does not parse; the message says what is expected."""


@dataclass(frozen=True)
class Source:
    """A client address, normalised (IPv4-mapped IPv6 becomes IPv4)."""

    ip: str
    version: int  # 4 or 6
    value: int

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    def network(self, prefix: int) -> str:
        """The canonical CIDR of the network of this address with `prefix` bits."""
        prefix = min(prefix, self.bits)
        mask = ((1 << prefix) - 1) << (self.bits - prefix) if prefix else 0
        base = self.value & mask
        if self.version == 4:
            return f"{base >> 24}.{(base >> 16) & 255}.{(base >> 8) & 255}.{base & 255}/{prefix}"
        return f"{ipaddress.IPv6Address(base).compressed}/{prefix}"

    def networks(self, prefixes: Iterable[int]) -> list[str]:
        return [self.network(p) for p in prefixes]

    def all_networks(self) -> list[str]:
        """Every network that contains this address, from /0 to the address itself."""
        return self.networks(range(self.bits + 1))


def parse_source(address: str) -> Source | None:
    """The address of a peer, or None when it is not an IP address (a Unix socket, say)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return Source(str(ip), ip.version, int(ip))


def parse_network(text: str) -> IPNetwork:
    """A CIDR (or a single address) as a network; NotANetwork with the fix otherwise."""
    try:
        net = ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise NotANetwork(
            f"{text!r} is not a network: use CIDR notation such as 192.0.2.0/24, 2001:db8::/48 "
            "or a single address"
        ) from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


def canonical(text: str) -> str:
    return str(parse_network(text))


class NetworkSet:
    """A fixed list of networks (the allow-list) with a membership test."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = tuple(parse_network(n) for n in networks)

    def __contains__(self, source: Source | IPNetwork) -> bool:
        if isinstance(source, Source):
            ip = ipaddress.ip_address(source.ip)
            return any(ip in net for net in self.networks if net.version == source.version)
        return any(
            source.version == net.version and source.subnet_of(net)  # type: ignore[arg-type]
            for net in self.networks
        )

    def overlaps(self, network: IPNetwork) -> list[str]:
        return [str(n) for n in self.networks if n.version == network.version and n.overlaps(network)]  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return bool(self.networks)
