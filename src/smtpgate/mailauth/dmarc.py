"""DMARC (RFC 7489) records: find the policy that applies to a From: domain and read it.

The record is looked up at `_dmarc.<domain>`, then at the organizational domain. Without a
public suffix list the organizational domain is taken as the last two labels (three when the
second-level label is short and the top level is a country code, as in example.co.uk): good
enough to foresee a receiver's verdict, and said so where it matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["DmarcError", "DmarcPolicy", "find_policy", "organizational_domain", "parse"]


class Dns(Protocol):
    def txt(self, name: str) -> list[str]: ...


class DmarcError(ValueError):
    pass


@dataclass(frozen=True)
class DmarcPolicy:
    domain: str          # where the record was found
    text: str
    policy: str          # none, quarantine, reject
    subdomain_policy: str
    adkim: str           # r or s
    aspf: str
    pct: int
    rua: tuple[str, ...]

    def applies(self, from_domain: str) -> str:
        """The policy for mail from this domain (sp= for subdomains of the record's domain)."""
        return self.policy if from_domain.lower().rstrip(".") == self.domain else self.subdomain_policy

    @property
    def strict(self) -> bool:
        return self.policy in ("quarantine", "reject")


def organizational_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def dmarc_records(txts: list[str]) -> list[str]:
    return [t for t in txts if t.replace(" ", "").lower().startswith("v=dmarc1")]


def parse(text: str, domain: str) -> DmarcPolicy:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if not key.strip():
            continue
        if not sep:
            raise DmarcError(f"{part.strip()!r} is not tag=value")
        tags[key.strip().lower()] = value.strip()
    if tags.get("v") != "DMARC1":
        raise DmarcError("the record must start with v=DMARC1")
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        raise DmarcError(f"p={tags.get('p', '')!r}: expected none, quarantine or reject" if "p" in tags else "the p= tag is missing")
    subdomain = tags.get("sp", policy).lower()
    if subdomain not in ("none", "quarantine", "reject"):
        raise DmarcError(f"sp={subdomain!r}: expected none, quarantine or reject")
    for tag in ("adkim", "aspf"):
        if tags.get(tag, "r").lower() not in ("r", "s"):
            raise DmarcError(f"{tag}={tags[tag]!r}: expected r (relaxed) or s (strict)")
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        raise DmarcError(f"pct={tags['pct']!r} is not a number") from None
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())
    for uri in rua:
        if not uri.lower().startswith("mailto:"):
            raise DmarcError(f"rua {uri!r}: reporting addresses are mailto: URIs")
    return DmarcPolicy(domain, text, policy, subdomain, tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower(), pct, rua)


def find_policy(dns: Dns, from_domain: str) -> tuple[DmarcPolicy | None, list[str]]:
    """(the policy that applies, the raw records at the name where they were found).

    DmarcError when the record there is broken or there are several.
    """
    domain = from_domain.lower().rstrip(".")
    for candidate in dict.fromkeys([domain, organizational_domain(domain)]):
        found = dmarc_records(dns.txt(f"_dmarc.{candidate}"))
        if len(found) > 1:
            raise DmarcError(f"_dmarc.{candidate} has {len(found)} DMARC records; receivers ignore them all")
        if found:
            return parse(found[0], candidate), found
    return None, []


def aligned(a: str, b: str, mode: str) -> bool:
    """Identifier alignment: the same domain (strict), or the same organizational domain (relaxed)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if mode == "s" else organizational_domain(a) == organizational_domain(b)
