"""`smtpgate doctor --domain DOMAIN`: what a domain publishes against what its mail needs.

A client like the rest of the doctor: it reads DNS (and the MTA-STS policy over HTTPS) as
any receiver would. What the sending server expects (the SPF term naming its route, its DKIM
public keys, its outbound addresses, the blocklists to ask) comes in as plain data, an
`Expectation`, which smtpgate's CLI fills from its config; without one, the records are still
checked for presence and validity. Each finding says what was seen, why it matters and the fix.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from smtpgate.doctor.report import Check, Report, Status
from smtpgate.mailauth import dnsbl, spf
from smtpgate.mailauth.dmarc import DmarcError, find_policy
from smtpgate.mailauth.names import domain_name
from smtpgate.mailauth.mta_sts import MAX_POLICY_BYTES, PolicyError, parse_policy, parse_txt
from smtpgate.mailauth.resolver import DnsTrouble, Resolver
from smtpgate.mailauth.tags import TagError, dkim_public_key, parse_tags

__all__ = ["DomainOptions", "Expectation", "check_domain", "domain_name"]

_PROBE = "255.255.255.255"   # never a sender: SPF evaluated with it runs through the whole record


@dataclass
class Expectation:
    """What the sending server needs the domain to publish (empty: nothing known)."""

    route: str = ""                                      # relay, mx, capture; "" unknown
    spf_term: str = ""                                   # e.g. "a:smtp.provider.net" or "ip4:192.0.2.25"
    dkim: list[tuple[str, str, str]] = field(default_factory=list)   # (selector, p=, state)
    records: dict[str, str] = field(default_factory=dict)            # purpose -> a record to suggest
    mta_sts_policy: str = ""
    submission: dict[str, str] = field(default_factory=dict)         # SRV name -> "prio weight port host."
    client_setup: dict[str, str] = field(default_factory=dict)       # autoconfig./autodiscover. name -> "host."
    outbound_addresses: list[str] = field(default_factory=list)
    dnsbl: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return bool(self.route)


@dataclass
class DomainOptions:
    domain: str
    expect: Expectation = field(default_factory=Expectation)
    dns_server: tuple[str, int] | None = None
    timeout: float = 5.0
    policy_host: str = ""        # HOST:PORT to fetch the MTA-STS policy from instead (tests, staging)
    cafile: str = ""


def check_domain(options: DomainOptions, *, resolver: Resolver | None = None) -> Report:
    return DomainDoctor(options, resolver).run()


def _pair(cause: str, fix: str) -> dict[str, str]:
    return {"cause": cause, "fix": fix}


class DomainDoctor:
    def __init__(self, options: DomainOptions, resolver: Resolver | None = None) -> None:
        self.o = options
        self.domain = options.domain.strip().lower().rstrip(".")
        self.expect = options.expect
        self.dns = resolver or Resolver([options.dns_server] if options.dns_server else None, timeout=options.timeout)
        self.report = Report(self.domain)
        self.spf_names_route = False
        self.dkim_matches = False
        self.unanswered: set[str] = set()   # checks that are only "could not ask DNS"

    def run(self) -> Report:
        for step in (self._spf, self._dkim, self._dmarc, self._mta_sts, self._tls_rpt, self._srv, self._client_setup, self._ptr, self._dnsbl):
            self._guarded(step)
        if self.unanswered and all(c.id in self.unanswered or c.status is Status.SKIP for c in self.report.checks):
            # one lost answer is a warning; none at all is no verdict (exit 3, as an unreachable server)
            self.add("dns", "dns", Status.FAIL, f"no DNS answer about {self.domain}: nothing could be checked",
                     "The DNS server did not answer any question, so nothing published was seen.",
                     "Check the resolver the doctor asks: [delivery] dns_servers in the config, or --dns-server IP:PORT.")
        return self.report

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except DnsTrouble as exc:
            name = step.__name__.strip("_").replace("_", "-")
            self.unanswered.add(name)
            self.add(name, name, Status.WARN, f"could not ask DNS: {exc}",
                     "The DNS server did not answer (or answered with an error), so this was not checked.",
                     "Run the doctor again; if it persists, check the resolver (or --dns-server).")

    def add(self, check_id: str, title: str, status: Status, summary: str, cause: str = "", fix: str = "", **data: object) -> Check:
        return self.report.add(Check(check_id, title, status, summary, cause, fix, dict(data)))

    def _suggest(self, purpose: str, fallback: str) -> str:
        return self.expect.records.get(purpose, fallback)

    # ---------------------------------------------------------------- SPF

    def _spf(self) -> None:
        d, e = self.domain, self.expect
        if e.route == "capture":
            self.add("spf", "spf", Status.SKIP, f"mail from {d} is captured by this server: nothing leaves, no SPF needed")
            return
        suggestion = self._suggest("spf", f"{d}. TXT \"v=spf1 <your sending servers> ~all\"")
        records = spf.spf_records(self.dns.txt(d))
        if not records:
            self.add("spf", "spf", Status.FAIL, f"{d} publishes no SPF record",
                     "Receivers cannot tell which servers may send for the domain; without SPF, DMARC can only pass through DKIM.",
                     f"Publish {suggestion}.")
            return
        if len(records) > 1:
            self.add("spf", "spf", Status.FAIL, f"{d} publishes {len(records)} SPF records: they conflict",
                     "RFC 7208 allows one v=spf1 record per name; with two every receiver's SPF check ends in permerror, "
                     "which DMARC counts as a failure.",
                     "Merge them into one record (one v=spf1, the terms of both, one all at the end).", records=records)
            return
        try:
            spf.parse(records[0])
        except spf.SpfSyntaxError as exc:
            self.add("spf", "spf", Status.FAIL, f"the SPF record is invalid: {exc}",
                     "Receivers treat an SPF record they cannot parse as permerror: as if the mail failed SPF.",
                     f"Fix the record: {records[0]!r}. Expected shape: {suggestion}.", record=records[0])
            return
        tree = spf.lookup_tree(self.dns, d)
        if tree.lookups > spf.LOOKUP_LIMIT:
            self.add("spf", "spf", Status.FAIL, f"the SPF record needs {tree.lookups} DNS lookups; the limit is {spf.LOOKUP_LIMIT}",
                     "Receivers stop at 10 lookups (include, a, mx, ptr, exists, redirect, counted through every include) "
                     "and give permerror: SPF fails for all mail of the domain.",
                     "Remove includes you no longer use, or replace a: and mx: terms and nested includes by ip4:/ip6: ranges.",
                     record=records[0], lookups=tree.lookups)
            return
        if tree.problems:
            self.add("spf", "spf", Status.FAIL, f"the SPF record ends in permerror: {tree.problems[0]}",
                     "An include: that publishes no SPF record (or a broken one) makes the whole check permerror.",
                     "Remove or correct that include.", record=records[0], problems=tree.problems)
            return
        data: dict[str, object] = {"record": records[0], "lookups": tree.lookups}
        probe = spf.check_host(self.dns, _PROBE, d)   # an address nothing lists: every term is evaluated
        route = spf.route_named(self.dns, d, e.spf_term, e.outbound_addresses) if e.spf_term else None
        permerror = (route.permerror if route is not None else "") or (probe.reason if probe.result == "permerror" else "")
        if permerror:
            self.add("spf", "spf", Status.FAIL, f"the SPF record ends in permerror: {permerror}",
                     "Receivers stop evaluating and treat the mail as failing SPF (RFC 7208 section 4.6.4: "
                     "at most 10 lookups, at most 2 that find nothing).",
                     "Remove the terms whose names do not exist (or publish them), and keep the lookups within the limits.",
                     **data)
            return
        if probe.result == "temperror":
            raise DnsTrouble(f"SPF of {d}: {probe.reason}")
        if route is not None:
            self.spf_names_route = route.named
            if not self.spf_names_route:
                self.add("spf", "spf", Status.FAIL, f"the SPF record does not name this server's route ({e.route}: {e.spf_term})",
                         "Mail sent through this server fails SPF at receivers: it leaves from addresses the record does not list.",
                         f"Add {e.spf_term} to the record, before its all: {suggestion}.", **data)
                return
        self.add("spf", "spf", Status.PASS, f"{records[0]} ({tree.lookups} of {spf.LOOKUP_LIMIT} lookups)", "", "", **data)

    # ---------------------------------------------------------------- DKIM

    def _dkim(self) -> None:
        e = self.expect
        if e.route == "capture":
            return
        if not e.dkim:
            if e.known:
                self.add("dkim", "dkim", Status.FAIL, f"this server has no DKIM key for {self.domain}",
                         "Unsigned mail can pass DMARC only through SPF, and forwarding breaks SPF.",
                         f"Run `smtpgate dkim rotate {self.domain}` and publish the record it prints.")
            else:
                self.add("dkim", "dkim", Status.SKIP, "no DKIM selector known (run it with the sending server's config)")
            return
        for selector, public, state in e.dkim:
            name = f"{selector}._domainkey.{self.domain}"
            check_id, title = f"dkim:{selector}", f"dkim {selector}"
            wanted = f"{name}. TXT \"v=DKIM1; p={public[:24]}...\" (the whole record: `smtpgate dns records {self.domain}`)"
            found = self.dns.txt(name)
            if not found:
                status = Status.WARN if state.startswith("pending") else Status.FAIL
                self.add(check_id, title, status, f"{name} is not published (key {state})",
                         "Receivers cannot verify signatures made with this key: DKIM fails for that mail."
                         if not state.startswith("pending") else "This key signs once its record is visible.",
                         f"Publish {wanted}.", state=state)
                continue
            if len(found) > 1:
                self.add(check_id, title, Status.FAIL, f"{name} has {len(found)} TXT records",
                         "A selector must hold one key record; receivers may pick either.", "Keep only the current one.", state=state)
                continue
            try:
                _, published = dkim_public_key(found[0])
            except TagError as exc:
                self.add(check_id, title, Status.FAIL, f"{name} is not a valid DKIM key record: {exc}",
                         "Receivers cannot use it, so every signature with this selector fails.", f"Replace it: {wanted}.",
                         state=state)
                continue
            if published != public:
                self.add(check_id, title, Status.FAIL, f"{name} publishes a different key than the one this server signs with",
                         "An old or mistyped key: every signature with this selector fails verification.",
                         f"Replace the record's p= with this server's: {wanted}.", state=state)
                continue
            if state == "active" or state.startswith("active"):
                self.dkim_matches = True
            self.add(check_id, title, Status.PASS, f"{name} matches the private key (key {state})", state=state)

    # ---------------------------------------------------------------- DMARC

    def _dmarc(self) -> None:
        d = self.domain
        suggestion = self._suggest("dmarc", f"_dmarc.{d}. TXT \"v=DMARC1; p=none; rua=mailto:postmaster@{d}\"")
        try:
            policy, records = find_policy(self.dns, d)
        except DmarcError as exc:
            self.add("dmarc", "dmarc", Status.FAIL, f"the DMARC record is unusable: {exc}",
                     "Receivers ignore a broken or duplicated DMARC record, as if there were none.", f"Publish one record: {suggestion}.")
            return
        if policy is None:
            self.add("dmarc", "dmarc", Status.WARN, f"{d} publishes no DMARC record",
                     "Large mailbox providers expect one from bulk senders, and without it no reports tell you who sends as you.",
                     f"Start with {suggestion}.")
            return
        applied = policy.applies(d)
        data: dict[str, object] = {"record": records[0], "policy": applied, "found_at": policy.domain}
        if applied in ("quarantine", "reject") and self.expect.known and self.expect.route != "capture":
            if not (self.spf_names_route or self.dkim_matches):
                self.add("dmarc", "dmarc", Status.FAIL,
                         f"p={applied}, and mail sent through this server can align neither DKIM nor SPF",
                         f"Receivers will {'reject' if applied == 'reject' else 'junk'} it: no published DKIM key matches this "
                         "server's, and SPF does not name its route.",
                         f"Publish the DKIM record (`smtpgate dkim rotate {d}`), or add {self.expect.spf_term} to the SPF record.", **data)
                return
        aligned = [n for n, ok in (("DKIM", self.dkim_matches), ("SPF", self.spf_names_route)) if ok]
        how = f", aligned through {' and '.join(aligned)}" if aligned else ""
        self.add("dmarc", "dmarc", Status.PASS, f"p={applied}{how}" + (f" (found at {policy.domain})" if policy.domain != d else ""),
                 "", "", **data)

    # ---------------------------------------------------------------- MTA-STS

    def _mta_sts(self) -> None:
        d = self.domain
        records = [t for t in self.dns.txt(f"_mta-sts.{d}") if t.replace(" ", "").startswith("v=STSv1")]
        expected = self.expect.mta_sts_policy
        if not records:
            if expected:
                suggestion = self._suggest("mta-sts", f'_mta-sts.{d}. TXT "v=STSv1; id=..."')
                self.add("mta-sts", "mta-sts", Status.FAIL, f"_mta-sts.{d} is not published",
                         "Without the TXT record, senders never look for the policy this server serves.",
                         f"Publish {suggestion}.")
            else:
                self.add("mta-sts", "mta-sts", Status.SKIP, "no MTA-STS policy published (optional)")
            return
        policy_id = parse_txt(records)
        if policy_id is None:
            self.add("mta-sts", "mta-sts", Status.FAIL, f"_mta-sts.{d} is invalid or duplicated: {records}",
                     "Senders need exactly one \"v=STSv1; id=...\" record.", "Publish one record with an id.")
            return
        url = f"https://mta-sts.{d}/.well-known/mta-sts.txt"
        try:
            text = self._fetch_policy(d)
            policy = parse_policy(text, policy_id)
        except (httpx.HTTPError, PolicyError, ssl.SSLError, OSError) as exc:
            self.add("mta-sts", "mta-sts", Status.FAIL, f"the policy at {url} cannot be used: {exc}",
                     "Senders that find the TXT record but not a valid policy over verified HTTPS ignore MTA-STS.",
                     f"Serve the policy at {url} with a valid certificate for mta-sts.{d} (smtpgate's admin listener serves "
                     "it at /.well-known/mta-sts.txt behind your HTTPS proxy).")
            return
        mx = self.dns.mx_hosts(d)
        outside = [h for h in mx if not policy.allows(h)]
        data: dict[str, object] = {"mode": policy.mode, "mx": list(policy.mx), "max_age": policy.max_age, "published_mx": mx}
        if outside and policy.mode != "none":
            self.add("mta-sts", "mta-sts", Status.FAIL, f"MX {', '.join(outside)} is not named by the policy ({', '.join(policy.mx)})",
                     "In enforce mode senders refuse to deliver to an MX the policy does not name.",
                     "Add the MX host to the policy's mx: lines (or fix the MX record), then change the TXT record's id.", **data)
            return
        if expected and parse_policy(expected).mx != policy.mx:
            self.add("mta-sts", "mta-sts", Status.WARN, "the policy served differs from the one configured here",
                     "Another server or an old copy answers at mta-sts." + d + ".",
                     "Point mta-sts." + d + " at this server's admin listener (behind HTTPS).", **data)
            return
        self.add("mta-sts", "mta-sts", Status.PASS, f"mode {policy.mode}, mx {', '.join(policy.mx)}, matches MX {', '.join(mx) or '-'}",
                 "", "", **data)

    def _fetch_policy(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        url = f"https://{self.o.policy_host or host}/.well-known/mta-sts.txt"
        headers = {"Host": host} if self.o.policy_host else {}
        tls = ssl.create_default_context(cafile=self.o.cafile or None)
        with httpx.Client(verify=tls, follow_redirects=False, timeout=self.o.timeout) as client:
            # the certificate is checked for mta-sts.<domain>, wherever the connection goes
            response = client.get(url, headers=headers, extensions={"sni_hostname": host})
        if response.status_code != 200:
            raise PolicyError(f"HTTP {response.status_code}")
        if not response.headers.get("content-type", "").lower().startswith("text/plain"):
            raise PolicyError("the policy is not served as text/plain")
        if len(response.content) > MAX_POLICY_BYTES:
            raise PolicyError("the policy is larger than 64 KiB")
        return response.text

    # ---------------------------------------------------------------- TLS-RPT, SRV

    def _tls_rpt(self) -> None:
        d = self.domain
        records = [t for t in self.dns.txt(f"_smtp._tls.{d}") if t.replace(" ", "").startswith("v=TLSRPTv1")]
        suggestion = self._suggest("tls-rpt", f"_smtp._tls.{d}. TXT \"v=TLSRPTv1; rua=mailto:postmaster@{d}\"")
        if not records:
            self.add("tls-rpt", "tls-rpt", Status.WARN, f"_smtp._tls.{d} is not published",
                     "Senders have nowhere to report TLS failures delivering to you.", f"Publish {suggestion}.")
            return
        try:
            rua = parse_tags(records[0]).get("rua", "")
        except TagError:
            rua = ""
        if len(records) > 1 or not rua:
            self.add("tls-rpt", "tls-rpt", Status.FAIL, f"_smtp._tls.{d} is invalid or duplicated",
                     "Reporters need one record with rua= (mailto: or https:).", f"Publish one: {suggestion}.")
            return
        self.add("tls-rpt", "tls-rpt", Status.PASS, f"reports go to {rua}")

    def _srv(self) -> None:
        d, wanted = self.domain, self.expect.submission
        for service in ("_submissions._tcp", "_submission._tcp"):
            name = f"{service}.{d}"
            found = [v.rstrip(".").lower() for v in self.dns.query(name, "SRV")]
            expected = wanted.get(name, "")
            if not found:
                self.add(f"srv:{service.split('.')[0][1:]}", f"srv {service.split('.')[0][1:]}", Status.WARN,
                         f"{name} is not published",
                         "Mail clients set up from an address alone (RFC 6186) will not find the submission server.",
                         f"Publish {name}. SRV {expected or '0 1 PORT HOST.'}")
                continue
            if expected and expected.rstrip(".").lower() not in found:
                self.add(f"srv:{service.split('.')[0][1:]}", f"srv {service.split('.')[0][1:]}", Status.WARN,
                         f"{name} points at {', '.join(found)}, not at this server ({expected})",
                         "Clients set up from the address go to another server.", f"Publish {name}. SRV {expected}")
                continue
            self.add(f"srv:{service.split('.')[0][1:]}", f"srv {service.split('.')[0][1:]}", Status.PASS, f"{name} -> {found[0]}")

    def _client_setup(self) -> None:
        """autoconfig.<domain> and autodiscover.<domain>: where Thunderbird and Outlook look for settings."""
        d = self.domain
        for label, client in (("autoconfig", "Thunderbird"), ("autodiscover", "Outlook")):
            name = f"{label}.{d}"
            expected = self.expect.client_setup.get(name, "").rstrip(".").lower()
            fix = f"Publish {name}. CNAME {expected or 'HOST'}. (docs/autoconfig.md)"
            targets = [t.rstrip(".").lower() for t in self.dns.query(name, "CNAME")]
            if targets:
                if expected and expected not in targets:
                    self.add(label, label, Status.WARN, f"{name} points at {', '.join(targets)}, not at this server ({expected})",
                             f"{client} asks that name for its settings and gets another server's, or none.", fix)
                else:
                    self.add(label, label, Status.PASS, f"{name} -> {targets[0]}")
                continue
            addresses = self.dns.addresses(name)
            if not addresses:
                self.add(label, label, Status.WARN, f"{name} is not published",
                         f"{client} cannot fetch the settings: people type the server, port and TLS mode by hand.", fix)
            elif expected and not set(addresses) & set(self.dns.addresses(expected)):
                self.add(label, label, Status.WARN, f"{name} has the addresses {', '.join(addresses)}, not this server's ({expected})",
                         f"{client} asks that name for its settings and gets another server's, or none.", fix)
            else:
                self.add(label, label, Status.PASS, f"{name} -> {', '.join(addresses)}")

    # ---------------------------------------------------------------- the outbound addresses

    def _ptr(self) -> None:
        for ip in self.expect.outbound_addresses:
            names = self.dns.ptr(ip)
            if not names:
                self.add(f"ptr:{ip}", f"ptr {ip}", Status.FAIL, f"{ip} has no PTR record",
                         "Many receivers refuse or junk mail from an address without reverse DNS.",
                         f"Ask whoever provides {ip} to set its PTR to this server's name.")
                continue
            back = [n for n in names if ip in self.dns.addresses(n)]
            if not back:
                self.add(f"ptr:{ip}", f"ptr {ip}", Status.FAIL, f"{ip} -> {names[0]}, but {names[0]} does not resolve back to {ip}",
                         "Forward-confirmed reverse DNS fails: receivers treat the name as forged.",
                         f"Add an A/AAAA record {names[0]} -> {ip}, or set the PTR to a name that has it.")
                continue
            self.add(f"ptr:{ip}", f"ptr {ip}", Status.PASS, f"{ip} -> {back[0]} -> {ip}")

    def _dnsbl(self) -> None:
        for ip in self.expect.outbound_addresses:
            for zone in self.expect.dnsbl:
                listing = dnsbl.check(self.dns, ip, zone)
                check_id, title = f"dnsbl:{zone}:{ip}", f"dnsbl {zone} {ip}"
                if listing.status == "listed":
                    self.add(check_id, title, Status.FAIL, f"{ip} is listed on {zone} ({', '.join(listing.codes)})"
                             + (f": {listing.reason}" if listing.reason else ""),
                             "Receivers using this list refuse mail from the address.",
                             "Find out why (a leaked credential sending spam? `smtpgate audit`), stop it, then ask the list "
                             "for delisting through its website.", codes=list(listing.codes))
                elif listing.status == "refused":
                    self.add(check_id, title, Status.WARN, f"{zone} refused the query ({', '.join(listing.codes)})",
                             "Some lists do not answer queries from public resolvers or without a subscription.",
                             "Query it through your own resolver, or remove it from [reputation] dnsbl.")
                else:
                    self.add(check_id, title, Status.PASS, f"{ip} is not listed on {zone}")
