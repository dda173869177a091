"""Networks as operators write them: `10.0.0.1/8` is refused, not silently read as 10.0.0.0/8.

A CIDR with host bits set is ambiguous (the whole network, or the one address?), and
guessing wrong widens a scope or a ban by millions of addresses. Both the credential
scopes and the guard's bans parse operator input here.
"""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class HostBitsSet(ValueError):
    """`text` names an address inside a network; `network` and `address` are the readings meant."""

    def __init__(self, text: str, network: IPNetwork, address: IPNetwork) -> None:
        super().__init__(f"{text!r} has host bits set: did you mean {network} or {address}?")
        self.network = network
        self.address = address


def exact_network(text: str) -> IPNetwork:
    """The network `text` names exactly (a bare address is its /32 or /128).

    ValueError when it is not a network at all, HostBitsSet when its prefix cuts through
    the address."""
    value = text.strip()
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        loose = ipaddress.ip_network(value, strict=False)  # ValueError again: not a network
        ip = ipaddress.ip_interface(value).ip
        raise HostBitsSet(text, loose, ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")) from None
