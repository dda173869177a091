"""DNS for the doctor: addresses of the server, MX of a mail domain, SRV of its submission service.

dnspython gives the answers a person needs to act on (the name does not exist, exists
without that record, the DNS server is silent) where getaddrinfo only says "failed". With the
system resolver, getaddrinfo still decides addresses first, because that is what every mail
client uses (it sees /etc/hosts). `server="127.0.0.1:5353"` points every lookup at one DNS
server, for a network's own resolver or a test's.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

import dns.exception
import dns.rdata
import dns.rdtypes.ANY.MX
import dns.rdtypes.IN.SRV
import dns.resolver


@dataclass
class Answer:
    values: list[str] = field(default_factory=list)
    error: str = ""  # "", nxdomain, noanswer, timeout, other
    message: str = ""
    source: str = "dns"  # dns, or system (getaddrinfo: /etc/hosts and the like)


@dataclass(frozen=True)
class MxHost:
    preference: int
    host: str


@dataclass(frozen=True)
class SrvTarget:
    priority: int
    weight: int
    port: int
    host: str


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_server(value: str) -> tuple[str, int]:
    """`IP` or `IP:PORT` or `[IPv6]:PORT` -> (ip, port); ValueError when it is not that."""
    value = value.strip()
    if value.startswith("["):
        host, _, port = value[1:].partition("]:")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, "53"
    if not is_ip(host.rstrip("]")) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not IP or IP:PORT")
    return host.rstrip("]"), int(port)


class Lookup:
    def __init__(self, server: str | None = None, timeout: float = 5.0) -> None:
        self.system = server is None
        if server is None:
            try:
                self._resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._resolver = dns.resolver.Resolver(configure=False)
                self._resolver.nameservers = ["127.0.0.1"]
        else:
            ip, port = parse_server(server)
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [ip]
            self._resolver.port = port
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout

    def _query(self, name: str, rdtype: str) -> tuple[list[dns.rdata.Rdata], str, str]:
        try:
            answer = self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return [], "nxdomain", f"{name} does not exist"
        except dns.resolver.NoAnswer:
            return [], "noanswer", f"no {rdtype} record for {name}"
        except dns.exception.Timeout:
            return [], "timeout", "the DNS server did not answer"
        except (dns.resolver.NoNameservers, dns.exception.DNSException) as exc:
            return [], "other", str(exc)
        return list(answer), "", ""

    def addresses(self, host: str) -> Answer:
        """IPv4 and IPv6 addresses of `host`."""
        if self.system:
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except socket.gaierror:
                pass
            else:
                found = list(dict.fromkeys(str(info[4][0]) for info in infos))
                return Answer(values=found, source="system")
        values: list[str] = []
        errors: list[tuple[str, str]] = []
        for rdtype in ("A", "AAAA"):
            records, error, message = self._query(host, rdtype)
            values += [r.to_text() for r in records]
            if error:
                errors.append((error, message))
        if values:
            return Answer(values=values)
        kinds = [e for e, _ in errors]
        kind = "nxdomain" if "nxdomain" in kinds else "timeout" if "timeout" in kinds else (
            "noanswer" if "noanswer" in kinds else "other")
        return Answer(error=kind, message=next(m for e, m in errors if e == kind))

    def mx(self, domain: str) -> tuple[list[MxHost], Answer]:
        records, error, message = self._query(domain, "MX")
        hosts = sorted(
            (MxHost(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in records if isinstance(r, dns.rdtypes.ANY.MX.MX)),
            key=lambda m: m.preference,
        )
        return hosts, Answer(values=[f"{m.preference} {m.host}" for m in hosts], error=error, message=message)

    def srv(self, name: str) -> list[SrvTarget]:
        """SRV targets, best first; empty when there are none (or the lookup failed)."""
        records, _, _ = self._query(name, "SRV")
        targets = [
            SrvTarget(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in records if isinstance(r, dns.rdtypes.IN.SRV.SRV)
        ]
        return sorted((t for t in targets if t.host not in ("", ".")), key=lambda t: (t.priority, -t.weight))
