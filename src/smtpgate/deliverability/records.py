"""The records a domain should publish for the way smtpgate sends its mail.

Everything is derived from the config and the DKIM keyring, never from DNS: this is what
*should* be published, which `doctor --domain` then compares with what *is*.

SPF names the route: the smarthost (`[deliverability] relay_spf`, else `a:<relay host>`) or
the outbound addresses of direct delivery (else `a:<hostname>`). DKIM lists every key that
must be visible now (pending, active, retiring). DMARC starts at p=none with aggregate
reports, the safe first step. MTA-STS and TLS-RPT, the RFC 6186 SRV records and the
autoconfig/autodiscover names complete the set.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from smtpgate.config import Config
from smtpgate.delivery.dkim import DkimError, load_key, txt_record
from smtpgate.delivery.keyring import keyring_from
from smtpgate.delivery.routes import route_for_domain
from smtpgate.mailauth.names import domain_name

__all__ = ["DomainPlan", "Record", "domain_name", "mta_sts_policy", "plan_for", "zone_fragment"]


@dataclass(frozen=True)
class Record:
    type: str        # TXT, SRV, CNAME
    name: str        # fully qualified, without the final dot
    value: str
    purpose: str     # spf, dkim, dmarc, mta-sts, tls-rpt, srv, autoconfig
    note: str = ""

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "name": self.name, "value": self.value, "purpose": self.purpose, "note": self.note}


@dataclass
class DomainPlan:
    """What the domain should publish, and what the doctor needs to judge what it does."""

    domain: str
    route: str
    records: list[Record] = field(default_factory=list)
    spf_term: str = ""                                       # the term naming the route
    outbound_addresses: list[str] = field(default_factory=list)
    dkim: list[tuple[str, str, str]] = field(default_factory=list)   # (selector, p=, state)
    mta_sts_policy: str = ""
    dnsbl: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "domain": self.domain, "route": self.route, "records": [r.to_json() for r in self.records],
            "mta_sts_policy": self.mta_sts_policy, "notes": self.notes,
        }


def spf_term_for(config: Config, route: str) -> tuple[str, list[str]]:
    """(the SPF term that names the route, the addresses mail leaves from when known)."""
    d = config.deliverability
    if route == "relay":
        if d.relay_spf:
            return d.relay_spf, []
        host = config.delivery.relay.host
        try:
            return f"ip{ipaddress.ip_address(host).version}:{host}", []   # the smarthost's address is not ours to watch
        except ValueError:
            return f"a:{host}", []
    addresses = [a.strip() for a in d.outbound_addresses]
    if not addresses:
        return f"a:{config.hostname}", []
    terms = [f"ip{ipaddress.ip_address(a).version}:{a}" for a in addresses]
    return " ".join(terms), addresses


def mta_sts_policy(config: Config) -> str:
    """The policy file served at /.well-known/mta-sts.txt; empty when none is configured."""
    m = config.deliverability.mta_sts
    if not m.mx:
        return ""
    lines = ["version: STSv1", f"mode: {m.mode}", *(f"mx: {mx}" for mx in m.mx), f"max_age: {int(m.max_age.total_seconds())}"]
    return "\r\n".join(lines) + "\r\n"


def _port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def plan_for(config: Config, domain: str) -> DomainPlan:
    domain = domain_name(domain)
    route = route_for_domain(config, domain)
    d = config.deliverability
    plan = DomainPlan(domain, route, dnsbl=list(config.reputation.dnsbl))
    host = config.hostname.rstrip(".")
    mailbox = f"mailto:postmaster@{domain}"
    if route == "capture":
        plan.notes.append(f"mail from {domain} is captured ([delivery] mode or routes): nothing leaves this "
                          "server, so no SPF or DKIM record is needed for it yet")
    else:
        term, addresses = spf_term_for(config, route)
        plan.spf_term, plan.outbound_addresses = term, addresses
        plan.records.append(Record("TXT", domain, f"v=spf1 {term} ~all", "spf",
                                   "one SPF record per domain: merge this term into an existing one"))
        if route == "mx" and not addresses:
            plan.notes.append("set [deliverability] outbound_addresses to the addresses direct delivery leaves "
                              "from: SPF can name them, and their PTR and blocklist listing get checked")
        for selector, public, state, name, value in _dkim_rows(config, domain):
            plan.dkim.append((selector, public, state))
            plan.records.append(Record("TXT", name, value, "dkim", f"key {state}"))
        if not plan.dkim:
            plan.notes.append(f"no DKIM key for {domain}: make one with `smtpgate dkim rotate {domain}`")
        plan.records.append(Record("TXT", f"_dmarc.{domain}", f"v=DMARC1; p=none; rua={d.dmarc_rua or mailbox}; adkim=r; aspf=r",
                                   "dmarc", "start with p=none, read the reports, then go to quarantine and reject"))
    policy = mta_sts_policy(config)
    if policy:
        plan.mta_sts_policy = policy
        policy_id = hashlib.sha256(policy.encode()).hexdigest()[:20]
        plan.records.append(Record("TXT", f"_mta-sts.{domain}", f"v=STSv1; id={policy_id}", "mta-sts",
                                   "the id changes whenever the policy does"))
        plan.records.append(Record("CNAME", f"mta-sts.{domain}", f"{host}.", "mta-sts",
                                   "serve https://mta-sts.<domain>/.well-known/mta-sts.txt from the admin listener behind HTTPS"))
    plan.records.append(Record("TXT", f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua={d.tlsrpt_rua or mailbox}", "tls-rpt"))
    plan.records.append(Record("SRV", f"_submissions._tcp.{domain}", f"0 1 {_port(config.smtp.submissions)} {host}.", "srv",
                               "RFC 6186/8314: mail clients find the implicit-TLS submission port"))
    plan.records.append(Record("SRV", f"_submission._tcp.{domain}", f"0 1 {_port(config.smtp.submission)} {host}.", "srv",
                               "RFC 6186: the STARTTLS submission port"))
    plan.records.append(Record("CNAME", f"autoconfig.{domain}", f"{host}.", "autoconfig", "Thunderbird-style client set-up"))
    plan.records.append(Record("CNAME", f"autodiscover.{domain}", f"{host}.", "autoconfig", "Outlook-style client set-up"))
    return plan


def _dkim_rows(config: Config, domain: str) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for entry, name, value in keyring_from(config).published(domain):
        rows.append((entry.selector, value.rpartition("p=")[2], entry.state, name, value))
    k = config.delivery.dkim.get(domain)
    if k is not None and all(r[0] != k.selector for r in rows):
        try:
            name, value = txt_record(load_key(domain, k.selector, config.path(k.key_file)))
        except DkimError:
            return rows
        rows.append((k.selector, value.rpartition("p=")[2], "active ([delivery.dkim])", name, value))
    return rows


def _quoted(value: str) -> str:
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


def zone_fragment(plan: DomainPlan, ttl: int = 3600) -> str:
    lines = [f"; smtpgate: records for {plan.domain} (route: {plan.route})"]
    for r in plan.records:
        value = _quoted(r.value) if r.type == "TXT" else r.value
        lines.append(f"{r.name}. {ttl} IN {r.type} {value}")
    return "\n".join(lines) + "\n"
