"""SPF (RFC 7208): parse a record, count its DNS lookups, evaluate check_host().

`check_host` follows section 4: at most 10 terms that cause DNS lookups (include, a, mx,
ptr, exists, redirect) over the whole evaluation, at most 2 void lookups, at most 10 MX
names per mx mechanism; beyond them the result is permerror. `lookup_tree` counts the
lookups of the whole tree, whatever address is tested, which is what a receiver may have to
do and what an operator needs to see. Macros are expanded for the letters s, l, o, d, i, h
(with digit and r transformers); the deprecated ptr mechanism counts as a lookup and never
matches.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Protocol

from smtpgate.mailauth.resolver import DnsTrouble

__all__ = ["LOOKUP_LIMIT", "RouteCheck", "SpfRecord", "SpfResult", "SpfSyntaxError", "check_host", "lookup_tree", "parse",
           "route_named", "spf_records"]

LOOKUP_LIMIT = 10
VOID_LIMIT = 2
_LOOKUP_MECHANISMS = ("include", "a", "mx", "ptr", "exists")
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-", re.IGNORECASE)


class Dns(Protocol):
    def txt(self, name: str) -> list[str]: ...
    def query(self, name: str, rdtype: str) -> list[str]: ...
    def mx_hosts(self, name: str) -> list[str]: ...


class SpfSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    qualifier: str          # pass, fail, softfail, neutral (mechanisms); "" for modifiers
    name: str               # all, include, a, mx, ptr, ip4, ip6, exists; redirect, exp, other modifiers
    value: str = ""         # domain spec or network
    cidr4: int | None = None
    cidr6: int | None = None

    @property
    def is_lookup(self) -> bool:
        return self.name in _LOOKUP_MECHANISMS or self.name == "redirect"


@dataclass(frozen=True)
class SpfRecord:
    text: str
    terms: tuple[Term, ...]

    @property
    def mechanisms(self) -> list[Term]:
        return [t for t in self.terms if t.qualifier]

    def modifier(self, name: str) -> str | None:
        return next((t.value for t in self.terms if not t.qualifier and t.name == name), None)


@dataclass
class SpfResult:
    result: str               # pass fail softfail neutral none permerror temperror
    reason: str = ""
    lookups: int = 0
    voids: int = 0
    matched: str = ""         # the mechanism that decided


def spf_records(txts: list[str]) -> list[str]:
    return [t for t in txts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def _cidr(text: str, name: str) -> tuple[str, int | None, int | None]:
    cidr4 = cidr6 = None
    m = re.search(r"(?:/(\d+))?(?://(\d+))?$", text)
    if m and (m.group(1) or m.group(2)):
        text = text[: m.start()]
        if m.group(1):
            cidr4 = int(m.group(1))
            if cidr4 > 32:
                raise SpfSyntaxError(f"{name}: /{cidr4} is not an IPv4 prefix length")
        if m.group(2):
            cidr6 = int(m.group(2))
            if cidr6 > 128:
                raise SpfSyntaxError(f"{name}: //{cidr6} is not an IPv6 prefix length")
    return text, cidr4, cidr6


def parse(text: str) -> SpfRecord:
    """Parse one "v=spf1 ..." record; SpfSyntaxError names the bad term."""
    parts = text.split()
    if not parts or parts[0].lower() != "v=spf1":
        raise SpfSyntaxError("the record does not start with v=spf1")
    terms: list[Term] = []
    seen_modifiers: set[str] = set()
    for raw in parts[1:]:
        m = re.fullmatch(r"([a-zA-Z][a-zA-Z0-9_.\-]*)=(.*)", raw)
        if m:
            name = m.group(1).lower()
            if name in ("redirect", "exp"):
                if name in seen_modifiers:
                    raise SpfSyntaxError(f"{name}= appears twice")
                seen_modifiers.add(name)
                if not m.group(2):
                    raise SpfSyntaxError(f"{name}= needs a domain")
            terms.append(Term("", name, m.group(2)))
            continue
        qualifier = "pass"
        if raw[0] in _QUALIFIERS:
            qualifier, raw = _QUALIFIERS[raw[0]], raw[1:]
        cidr4 = cidr6 = None
        am = re.fullmatch(r"(a|mx)(?::([^/]+))?((?:/\d+)?(?://\d+)?)", raw, re.IGNORECASE)
        if am:
            name, sep, value = am.group(1).lower(), "", am.group(2) or ""
            _, cidr4, cidr6 = _cidr(am.group(3), name)
        else:
            name, sep, value = raw.partition(":")
            name = name.lower()
        if name not in _MECHANISMS:
            raise SpfSyntaxError(f"unknown mechanism {raw!r}")
        if name == "all" and sep:
            raise SpfSyntaxError("all takes no value")
        if name in ("include", "exists", "ip4", "ip6") and not value:
            raise SpfSyntaxError(f"{name} needs a value ({name}:...)")
        if name == "ip4":
            try:
                ipaddress.IPv4Network(value, strict=False)
            except ValueError:
                raise SpfSyntaxError(f"ip4:{value} is not an IPv4 address or network") from None
        if name == "ip6":
            try:
                ipaddress.IPv6Network(value, strict=False)
            except ValueError:
                raise SpfSyntaxError(f"ip6:{value} is not an IPv6 address or network") from None
        terms.append(Term(qualifier, name, value, cidr4, cidr6))
    return SpfRecord(text, tuple(terms))


def expand(spec: str, *, ip: str, domain: str, sender: str, helo: str = "") -> str:
    """Macro expansion (RFC 7208 section 7) for the letters smtpgate can know."""
    local, _, sender_domain = sender.rpartition("@")
    address = ipaddress.ip_address(ip) if ip else None
    if address is None:
        i = ""
    elif address.version == 4:
        i = str(address)
    else:
        i = ".".join(address.exploded.replace(":", ""))
    values = {"s": sender, "l": local or "postmaster", "o": sender_domain or domain, "d": domain, "i": i,
              "h": helo or domain, "v": "in-addr" if address is None or address.version == 4 else "ip6",
              "p": "unknown", "c": ip, "r": "unknown", "t": "0"}

    def one(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "%%":
            return "%"
        if text == "%_":
            return " "
        if text == "%-":
            return "%20"
        value = values[m.group(1).lower()]
        delimiters = m.group(4) or "."
        labels = re.split("[" + re.escape(delimiters) + "]", value)
        if m.group(3):
            labels.reverse()
        if m.group(2):
            labels = labels[-int(m.group(2)):]
        return ".".join(labels)

    return _MACRO.sub(one, spec)


def _in_network(ip: str, addresses: list[str], cidr4: int | None, cidr6: int | None) -> bool:
    address = ipaddress.ip_address(ip)
    for other in addresses:
        try:
            candidate = ipaddress.ip_address(other)
        except ValueError:
            continue
        if candidate.version != address.version:
            continue
        prefix = (cidr4 if cidr4 is not None else 32) if address.version == 4 else (cidr6 if cidr6 is not None else 128)
        if address in ipaddress.ip_network(f"{candidate}/{prefix}", strict=False):
            return True
    return False


class _Evaluation:
    def __init__(self, dns: Dns, ip: str, sender: str) -> None:
        self.dns = dns
        self.ip = ip
        self.sender = sender
        self.lookups = 0
        self.voids = 0

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > LOOKUP_LIMIT:
            raise _PermError(f"more than {LOOKUP_LIMIT} DNS lookups")

    def void(self, values: list[str]) -> list[str]:
        if not values:
            self.voids += 1
            if self.voids > VOID_LIMIT:
                raise _PermError(f"more than {VOID_LIMIT} lookups found nothing (void lookups)")
        return values

    def address_query(self, name: str) -> list[str]:
        version = ipaddress.ip_address(self.ip).version
        return self.void(self.dns.query(name, "A" if version == 4 else "AAAA"))

    def check(self, domain: str, depth: int = 0) -> tuple[str, str]:
        if depth > LOOKUP_LIMIT:
            raise _PermError("include or redirect loop")
        records = spf_records(self.dns.txt(domain))
        if not records:
            return "none", f"{domain} publishes no SPF record"
        if len(records) > 1:
            raise _PermError(f"{domain} publishes {len(records)} SPF records (one is allowed)")
        try:
            record = parse(records[0])
        except SpfSyntaxError as exc:
            raise _PermError(f"{domain}: {exc}") from None
        for term in record.mechanisms:
            if term.is_lookup:
                self.count()
            target = expand(term.value, ip=self.ip, domain=domain, sender=self.sender) if term.value else domain
            if self.matches(term, target, depth):
                return term.qualifier, f"{domain}: {_show(term)}"
        redirect = record.modifier("redirect")
        if redirect:
            self.count()
            target = expand(redirect, ip=self.ip, domain=domain, sender=self.sender)
            result, why = self.check(target, depth + 1)
            if result == "none":
                raise _PermError(f"redirect={target} has no SPF record")
            return result, why
        return "neutral", f"{domain}: nothing matched"

    def matches(self, term: Term, target: str, depth: int) -> bool:
        name = term.name
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            try:
                return ipaddress.ip_address(self.ip) in ipaddress.ip_network(term.value, strict=False)
            except TypeError:
                return False
        if name == "a":
            return _in_network(self.ip, self.address_query(target), term.cidr4, term.cidr6)
        if name == "mx":
            hosts = self.void(self.dns.mx_hosts(target))
            if len(hosts) > LOOKUP_LIMIT:
                raise _PermError(f"mx:{target} has more than {LOOKUP_LIMIT} MX names")
            return any(_in_network(self.ip, self.address_query(h), term.cidr4, term.cidr6) for h in hosts)
        if name == "exists":
            return bool(self.void(self.dns.query(target, "A")))
        if name == "include":
            result, _ = self.check(target, depth + 1)
            if result == "none":
                raise _PermError(f"include:{target} has no SPF record")
            return result == "pass"
        return False  # ptr: deprecated (RFC 7208 5.5); never relied upon


class _PermError(Exception):
    pass


def _show(term: Term) -> str:
    sign = {"pass": "", "fail": "-", "softfail": "~", "neutral": "?"}[term.qualifier]
    return f"{sign}{term.name}{':' + term.value if term.value else ''}"


def check_host(dns: Dns, ip: str, domain: str, sender: str = "") -> SpfResult:
    """What a receiver's SPF check says about mail from `ip` with this envelope domain."""
    evaluation = _Evaluation(dns, ip, sender or f"postmaster@{domain}")
    try:
        result, reason = evaluation.check(domain.lower().rstrip("."))
    except _PermError as exc:
        return SpfResult("permerror", str(exc), evaluation.lookups, evaluation.voids)
    except DnsTrouble as exc:
        return SpfResult("temperror", str(exc), evaluation.lookups, evaluation.voids)
    return SpfResult(result, reason, evaluation.lookups, evaluation.voids, reason if result != "none" else "")


@dataclass
class Tree:
    """The whole SPF tree of a domain, for people: every lookup counted, every include read."""

    lookups: int = 0
    includes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)   # ip4/ip6 values anywhere in the tree
    texts: list[str] = field(default_factory=list)      # every record read, the domain's own first


def lookup_tree(dns: Dns, domain: str) -> Tree:
    tree = Tree()
    _walk(dns, domain.lower().rstrip("."), tree, set(), 0)
    return tree


def _walk(dns: Dns, domain: str, tree: Tree, seen: set[str], depth: int) -> None:
    if domain in seen or depth > 20:
        tree.problems.append(f"include loop at {domain}")
        return
    seen = seen | {domain}
    records = spf_records(dns.txt(domain))
    if len(records) != 1:
        if depth:
            count = f"{len(records)} SPF records" if records else "no SPF record"
            tree.problems.append(f"{domain} publishes {count}")
        return
    tree.texts.append(records[0])
    try:
        record = parse(records[0])
    except SpfSyntaxError as exc:
        tree.problems.append(f"{domain}: {exc}")
        return
    for term in record.terms:
        if term.name in ("ip4", "ip6"):
            tree.networks.append(term.value)
        if not term.is_lookup:
            continue
        tree.lookups += 1
        if term.name == "mx" and "%" not in term.value:
            try:
                hosts = dns.mx_hosts(term.value or domain)
            except DnsTrouble:
                hosts = []
            if len(hosts) > LOOKUP_LIMIT:
                tree.problems.append(f"mx:{term.value or domain} has more than {LOOKUP_LIMIT} MX names")
        if term.name in ("include", "redirect") and "%" not in term.value:
            tree.includes.append(term.value.lower())
            _walk(dns, term.value.lower().rstrip("."), tree, seen, depth + 1)


@dataclass(frozen=True)
class RouteCheck:
    named: bool
    permerror: str = ""     # why mail leaving by the route meets permerror, when it does


def route_named(dns: Dns, domain: str, term: str, addresses: list[str] | None = None) -> RouteCheck:
    """Does `domain`'s SPF authorise mail that leaves by the route `term` names?

    Answered as a receiver would wherever an address is known: ip4:/ip6: values, `addresses`,
    and the addresses of an a:HOST term are each run through check_host (so an include that
    covers the smarthost counts, and a permerror is told apart). A term without addresses
    (include:, the term a provider documents) must appear somewhere in the record's tree.
    DnsTrouble when a temperror leaves the question open.
    """
    wanted = list(addresses or [])
    literal: list[str] = []
    for word in term.split():
        name, _, value = word.lstrip("+").partition(":")
        name = name.lower()
        if name in ("ip4", "ip6") and value:
            wanted.append(value.partition("/")[0])
        elif name == "a" and value and "/" not in value:
            found = dns.query(value, "A") + dns.query(value, "AAAA")
            if found:
                wanted.extend(found)
            else:
                literal.append(word)
        else:
            literal.append(word)
    for ip in dict.fromkeys(wanted):
        result = check_host(dns, ip, domain)
        if result.result == "temperror":
            raise DnsTrouble(f"SPF of {domain}: {result.reason}")
        if result.result == "permerror":
            return RouteCheck(False, result.reason)
        if result.result != "pass":
            return RouteCheck(False)
    if literal:
        words = {w.lstrip("+").lower() for text in lookup_tree(dns, domain).texts for w in text.split()[1:]}
        if any(w.lstrip("+").lower() not in words for w in literal):
            return RouteCheck(False)
    return RouteCheck(bool(wanted or literal))
