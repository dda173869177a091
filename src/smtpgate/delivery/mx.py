"""The mx route: direct delivery to each recipient domain's mail exchangers.

RFC 5321 section 5: MX records in preference order (equal preferences shuffled); a
domain without MX records (but existing) is its own implicit MX (its A/AAAA records);
a domain that does not exist is a permanent failure. RFC 7505: a null MX (one MX of
"." ) means the domain takes no mail, a permanent 556 5.1.10. STARTTLS is used whenever
the server offers it; without an MTA-STS policy in enforce mode that TLS is
opportunistic (certificate not checked, and a failed handshake is retried once in
clear, as Postfix's "may" level does). With an enforced policy only the MX hosts the
policy names are used, STARTTLS is required and the certificate must be valid for the
MX host name, or the attempt fails temporarily.

DNS goes through dnspython's async resolver; `[delivery] dns_servers` points it at given
servers (and ports), otherwise it reads /etc/resolv.conf. A connection is made per
attempt to the MX's own address and the TLS server name is the MX host name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import ssl
from collections import defaultdict
from dataclasses import dataclass

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from smtpgate.delivery.mta_sts import MtaStsPolicy, MtaStsResolver
from smtpgate.delivery.outcome import (
    ConnectionProblem,
    Outcome,
    Outgoing,
    all_recipients,
    send_transaction,
)

__all__ = ["DnsLookup", "MxRoute", "MxSettings"]

log = logging.getLogger("smtpgate.delivery.mx")


class NullMx(Exception):
    pass


class NoSuchDomain(Exception):
    pass


class DnsTemporary(Exception):
    pass


class DnsLookup:
    """The few lookups delivery needs, over dnspython's async resolver."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float = 10.0) -> None:
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.lifetime = timeout
        self.resolver = resolver

    async def _query(self, name: str, rdtype: str) -> list:
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise NoSuchDomain(name) from None
        except dns.resolver.NoAnswer:
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsTemporary(f"{rdtype} {name}: {exc}") from None
        return list(answer)

    async def mx_hosts(self, domain: str) -> list[str]:
        """MX host names, best first; [domain] when it has none (implicit MX)."""
        records = await self._query(domain, "MX")
        if not records:
            return [domain]
        if any(r.exchange.to_text() == "." for r in records):
            if len(records) == 1 and records[0].preference == 0:
                raise NullMx(domain)
            records = [r for r in records if r.exchange.to_text() != "."]
        by_pref: dict[int, list[str]] = defaultdict(list)
        for r in records:
            by_pref[r.preference].append(r.exchange.to_text().rstrip("."))
        hosts: list[str] = []
        for pref in sorted(by_pref):
            group = by_pref[pref]
            random.shuffle(group)
            hosts.extend(group)
        return hosts

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.address for r in await self._query(host, rdtype)]
            except NoSuchDomain:
                return []
        return found

    async def txt(self, name: str) -> list[str]:
        try:
            records = await self._query(name, "TXT")
        except NoSuchDomain:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records]


@dataclass(frozen=True)
class MxSettings:
    port: int
    timeout: float
    local_hostname: str
    ca_file: str = ""


class MxRoute:
    name = "mx"

    def __init__(self, settings: MxSettings, dns_lookup: DnsLookup, mta_sts: MtaStsResolver | None) -> None:
        self.settings = settings
        self.dns = dns_lookup
        self.mta_sts = mta_sts
        self._verified = ssl.create_default_context(cafile=settings.ca_file or None)
        self._opportunistic = ssl.create_default_context()
        self._opportunistic.check_hostname = False
        self._opportunistic.verify_mode = ssl.CERT_NONE

    async def close(self) -> None:
        return None  # one connection per attempt: nothing is kept open

    async def deliver(self, message: Outgoing) -> dict[str, Outcome]:
        by_domain: dict[str, list[str]] = defaultdict(list)
        for rcpt in message.recipients:
            by_domain[rcpt.rpartition("@")[2].lower().rstrip(".")].append(rcpt)
        results = await asyncio.gather(*(self._deliver_domain(d, message, tuple(r)) for d, r in by_domain.items()))
        merged: dict[str, Outcome] = {}
        for result in results:
            merged.update(result)
        return merged

    async def _deliver_domain(self, domain: str, message: Outgoing, rcpts: tuple[str, ...]) -> dict[str, Outcome]:
        try:
            hosts = await self.dns.mx_hosts(domain)
        except NullMx:
            return all_recipients(rcpts, Outcome("permanent", f"556 5.1.10 {domain} does not accept mail (null MX, RFC 7505)"))
        except NoSuchDomain:
            return all_recipients(rcpts, Outcome("permanent", f"550 5.1.2 {domain}: no such domain"))
        except DnsTemporary as exc:
            return all_recipients(rcpts, Outcome("temporary", f"451 4.4.3 DNS lookup failed: {exc}"))
        policy = await self.mta_sts.policy(domain) if self.mta_sts is not None else None
        if policy is not None and policy.mode != "none":
            allowed = [h for h in hosts if policy.allows(h)]
            if policy.enforced:
                if not allowed:
                    return all_recipients(rcpts, Outcome("temporary", f"451 4.7.5 no MX host of {domain} matches its MTA-STS policy"))
                hosts = allowed
            elif len(allowed) != len(hosts):
                log.info("MTA-STS testing for %s: %s would be refused", domain, sorted(set(hosts) - set(allowed)))
        last = Outcome("temporary", f"451 4.4.4 no MX host of {domain} could be reached")
        for host in hosts:
            try:
                addresses = await self.dns.addresses(host)
            except DnsTemporary as exc:
                last = Outcome("temporary", f"451 4.4.3 DNS lookup failed: {exc}", host)
                continue
            for address in addresses:
                try:
                    return await self._attempt(host, address, message, rcpts, policy)
                except ConnectionProblem as exc:
                    log.info("mx %s[%s] for %s: %s", host, address, domain, exc)
                    last = Outcome("temporary", f"451 4.4.1 {exc}", f"{host}[{address}]")
        return all_recipients(rcpts, last)

    async def _attempt(
        self, host: str, address: str, message: Outgoing, rcpts: tuple[str, ...], policy: MtaStsPolicy | None
    ) -> dict[str, Outcome]:
        enforce = policy is not None and policy.enforced
        try:
            return await self._session(host, address, message, rcpts, enforce=enforce, use_tls=True)
        except _TlsFailed as exc:
            if enforce:
                raise ConnectionProblem(f"TLS required by MTA-STS failed: {exc}") from None
            log.info("mx %s[%s]: STARTTLS failed (%s); retrying without TLS", host, address, exc)
            return await self._session(host, address, message, rcpts, enforce=False, use_tls=False)

    async def _session(
        self, host: str, address: str, message: Outgoing, rcpts: tuple[str, ...], *, enforce: bool, use_tls: bool
    ) -> dict[str, Outcome]:
        s = self.settings
        client = aiosmtplib.SMTP(hostname=address, port=s.port, start_tls=False, local_hostname=s.local_hostname, timeout=s.timeout)
        remote = f"{host}[{address}]"
        try:
            try:
                await client.connect()
                await client.ehlo()
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise ConnectionProblem(f"{remote}: {exc}") from None
            if use_tls and client.supports_extension("starttls"):
                try:
                    await client.starttls(server_hostname=host, tls_context=self._verified if enforce else self._opportunistic)
                except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                    raise _TlsFailed(str(exc)) from None
                ssl_object = client.get_transport_info("ssl_object")
                remote += f" ({ssl_object.version() if ssl_object else 'TLS'})"
            elif enforce:
                raise ConnectionProblem(f"{remote} does not offer STARTTLS, which the domain's MTA-STS policy requires")
            outgoing = dataclasses.replace(message, recipients=rcpts)
            outcomes = await send_transaction(client, outgoing, remote)
            try:
                await asyncio.wait_for(client.quit(), 5)
            except Exception:  # noqa: BLE001 - the mail is through; QUIT is a courtesy
                pass
            return outcomes
        finally:
            client.close()


class _TlsFailed(Exception):
    pass
