"""A small synchronous DNS client over dnspython, with an optional answer cache.

The answers mail authentication needs are lists of strings; "the name does not exist" and
"no record of that type" both give an empty list (SPF counts both as a void lookup), while a
silent or failing server raises `DnsTrouble` (SPF's temperror), because "not published" and
"could not ask" must never be confused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import dns.exception
import dns.resolver
import dns.reversename

__all__ = ["DnsTrouble", "Resolver"]


class DnsTrouble(Exception):
    """The DNS server did not answer, or answered with an error other than NXDOMAIN."""


class Resolver:
    """`servers`: [(ip, port)]; empty uses /etc/resolv.conf. `cache_ttl` > 0 keeps answers."""

    def __init__(
        self,
        servers: list[tuple[str, int]] | None = None,
        *,
        timeout: float = 5.0,
        cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [servers[0][0]]
            resolver.port = servers[0][1]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = ["127.0.0.1"]
        resolver.lifetime = timeout
        resolver.timeout = timeout
        self._resolver = resolver
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self.queries = 0  # answers fetched from the network (not from the cache)

    def query(self, name: str, rdtype: str) -> list[str]:
        key = (name.lower().rstrip("."), rdtype)
        if self.cache_ttl > 0:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] > self._clock():
                return hit[1]
        values = self._ask(key[0], rdtype)
        if self.cache_ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (self._clock() + self.cache_ttl, values)
        return values

    def _ask(self, name: str, rdtype: str) -> list[str]:
        self.queries += 1
        try:
            answer = self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DnsTrouble(f"{rdtype} {name}: the DNS server did not answer") from None
        except dns.exception.DNSException as exc:
            raise DnsTrouble(f"{rdtype} {name}: {exc}") from None
        if rdtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]  # type: ignore[attr-defined]
        if rdtype == "MX":
            return [f"{r.preference} {r.exchange.to_text(omit_final_dot=True)}" for r in answer]  # type: ignore[attr-defined]
        return [r.to_text().rstrip(".") if rdtype in ("PTR", "CNAME") else r.to_text() for r in answer]

    def txt(self, name: str) -> list[str]:
        return self.query(name, "TXT")

    def addresses(self, name: str) -> list[str]:
        return self.query(name, "A") + self.query(name, "AAAA")

    def mx_hosts(self, name: str) -> list[str]:
        """MX host names, best preference first (a null MX gives ["."] -> [])."""
        pairs = sorted((int(p), h) for p, _, h in (v.partition(" ") for v in self.query(name, "MX")))
        return [h for _, h in pairs if h not in ("", ".")]

    def ptr(self, ip: str) -> list[str]:
        return self.query(dns.reversename.from_address(ip).to_text(omit_final_dot=True), "PTR")
