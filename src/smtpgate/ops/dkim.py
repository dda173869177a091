"""DKIM keys: make one, rotate, and the DNS records that must be published now.

Keys live in the keyring (`delivery/keyring.py`): a new key is pending until its record
is visible in DNS, then signs; the old one retires later. No config edit, no restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpgate.delivery.dkim import ALGORITHMS, DkimError
from smtpgate.errors import Conflict, Invalid, OpError
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


@dataclass(frozen=True)
class DkimRecord:
    domain: str
    selector: str
    algorithm: str
    state: str
    dns_name: str
    dns_txt: str
    key_file: str = ""
    config: str = ""

    def to_json(self) -> dict[str, Any]:
        data = {"domain": self.domain, "selector": self.selector, "algorithm": self.algorithm, "state": self.state,
                "dns_name": self.dns_name, "dns_txt": self.dns_txt}
        if self.key_file:
            data.update(key_file=self.key_file, config=self.config)
        return data


def checked_domain(domain: str) -> str:
    """The domain as DNS holds it; Invalid (a usage error) when it is not a domain name."""
    from smtpgate.deliverability.records import domain_name

    try:
        return domain_name(domain)
    except ValueError as exc:
        raise Invalid(str(exc), "Give the domain of the From: address, e.g. example.com.",
                      code="invalid-domain", field="domain", domain=domain[:253]) from None


def check(domain: str, algorithm: str, bits: int) -> str:
    """The domain, normalised, once the key request is sound."""
    domain = checked_domain(domain)
    if algorithm not in ALGORITHMS:
        raise Invalid(f"unknown algorithm {algorithm!r}", f"Use one of: {', '.join(ALGORITHMS)}.",
                      code="invalid-algorithm", field="algorithm", algorithm=algorithm)
    if algorithm == "rsa" and not 1024 <= bits <= 8192:
        raise Invalid(f"{bits} bits is out of range", "Use 2048 (or 1024 to 8192).", code="invalid-bits",
                      field="bits", bits=bits)
    return domain


class Dkim(Concern):
    def keygen(self, actor: Actor, domain: str, *, selector: str | None = None, algorithm: str = "rsa",
               bits: int = 2048) -> DkimRecord:
        """A new pending key (0600 in the data dir, never overwriting one) and the record to publish."""
        from smtpgate.delivery.keyring import keyring_from

        domain = check(domain, algorithm, bits)
        with self.journal.step(actor, "dkim.keygen", domain, selector=selector, algorithm=algorithm) as details:
            keyring = keyring_from(self.rt.config)
            try:
                entry = keyring.add(domain, selector=selector or "", algorithm=algorithm, bits=bits)
            except DkimError as exc:
                text = str(exc)
                if "already" in text:
                    raise Conflict(text.replace("already", "exists already"), "Keys are never overwritten.",
                                   code="dkim-key-exists", field="selector", domain=domain) from None
                raise Invalid(text, code="invalid-selector", field="selector", domain=domain) from None
            details["selector"] = entry.selector
            name, value = next((n, v) for e, n, v in keyring.published(domain) if e.selector == entry.selector)
            path = keyring.folder / entry.file
        base = self.rt.config.base_dir
        relative = path.relative_to(base) if path.is_relative_to(base) else path
        snippet = f'"{domain}" = {{ selector = "{entry.selector}", key_file = "{relative}" }}'
        return DkimRecord(domain, entry.selector, entry.algorithm, entry.state, name, value, str(path), snippet)

    def rotate(self, actor: Actor, domain: str, *, selector: str | None = None, algorithm: str = "rsa",
               bits: int = 2048) -> Any:
        """New key unless one waits, switch when visible, retire the old one later (a `Rotation`)."""
        from smtpgate.deliverability.rotation import rotate

        domain = check(domain, algorithm, bits)
        with self.journal.step(actor, "dkim.rotate", domain, algorithm=algorithm) as details:
            try:
                result = rotate(self.rt.config, domain, algorithm=algorithm, bits=bits, selector=selector or "")
            except DkimError as exc:
                raise OpError(str(exc), code="dkim-failed", domain=domain) from None
            details["changes"] = list(result.changes)
        return result

    def records(self, actor: Actor, domain: str | None = None) -> list[DkimRecord]:
        """The keys (with their state) whose TXT records must be published now."""
        from smtpgate.delivery.dkim import load_key, txt_record
        from smtpgate.delivery.keyring import PUBLISHED, keyring_from

        domain = checked_domain(domain) if domain else None
        rows: list[DkimRecord] = []
        try:
            keyring = keyring_from(self.rt.config)
            for entry in keyring.entries(domain):
                if entry.state in PUBLISHED:
                    name, value = txt_record(keyring.load(entry))
                    rows.append(DkimRecord(entry.domain, entry.selector, entry.algorithm, entry.state, name, value))
            for d, k in sorted(self.rt.config.delivery.dkim.items()):
                wanted = not domain or d == domain.lower().rstrip(".")
                if not wanted or any(r.domain == d and r.selector == k.selector for r in rows):
                    continue
                key = load_key(d, k.selector, self.rt.config.path(k.key_file))
                name, value = txt_record(key)
                rows.append(DkimRecord(d, k.selector, key.algorithm, "config", name, value))
        except DkimError as exc:
            raise OpError(str(exc), code="dkim-key-unreadable") from None
        return rows
