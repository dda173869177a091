"""The resolver deliverability uses: `[delivery] dns_servers`, answers cached for `cache_ttl`."""

from __future__ import annotations

from smtpgate.config import Config, dns_server_address
from smtpgate.mailauth.resolver import DnsTrouble, Resolver
from smtpgate.mailauth.tags import TagError, dkim_public_key

__all__ = ["record_visible", "resolver_for"]


def resolver_for(config: Config, *, cached: bool = True, timeout: float = 5.0) -> Resolver:
    servers = [dns_server_address(s) for s in config.delivery.dns_servers]
    ttl = config.deliverability.cache_ttl.total_seconds() if cached else 0.0
    return Resolver(servers, timeout=timeout, cache_ttl=ttl)


def record_visible(resolver: Resolver, name: str, value: str) -> bool:
    """Is this DKIM key record published (the same public key at that name)?"""
    wanted = value.rpartition("p=")[2].strip()
    try:
        found = resolver.txt(name)
    except DnsTrouble:
        return False
    for text in found:
        try:
            if dkim_public_key(text)[1] == wanted:
                return True
        except TagError:
            continue
    return False
