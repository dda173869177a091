"""DKIM key rotation as the operator asks for it: make, publish, switch when visible, retire.

`rotate(domain)` makes a new pending key unless one is waiting already, then moves the
domain's keys on (`Keyring.advance`): the switch happens only once the new record is seen
in DNS, and the old key stays published for `[deliverability] dkim_retire_after`. The server
calls `advance_all` on a schedule, so a published key starts signing without anyone coming
back to it. No config edit and no restart: the signer follows the keyring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smtpgate.config import Config
from smtpgate.deliverability.dns import record_visible, resolver_for
from smtpgate.delivery.dkim import DkimError
from smtpgate.delivery.keyring import PENDING, RETIRING, KeyEntry, Keyring, keyring_from
from smtpgate.mailauth.resolver import Resolver

__all__ = ["Rotation", "advance_all", "rotate"]


@dataclass
class Rotation:
    domain: str
    made: KeyEntry | None = None
    changes: list[str] = field(default_factory=list)
    keys: list[KeyEntry] = field(default_factory=list)
    publish: list[tuple[str, str]] = field(default_factory=list)   # (name, TXT value) to be in DNS now

    def to_json(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "made": self.made.selector if self.made else None,
            "changes": self.changes,
            "keys": [{"selector": k.selector, "algorithm": k.algorithm, "state": k.state, "dns_name": k.dns_name,
                      "created": k.created, "activated": k.activated, "retire_after": k.retire_after} for k in self.keys],
            "publish": [{"dns_name": n, "dns_txt": v} for n, v in self.publish],
        }


def _visible(resolver: Resolver):  # type: ignore[no-untyped-def]
    return lambda name, value: record_visible(resolver, name, value)


def rotate(config: Config, domain: str, *, algorithm: str = "rsa", bits: int = 2048, selector: str = "",
           keyring: Keyring | None = None, resolver: Resolver | None = None) -> Rotation:
    keyring = keyring or keyring_from(config)
    resolver = resolver or resolver_for(config, cached=False)
    result = Rotation(domain.strip().lower().rstrip("."))
    waiting = next((e for e in keyring.entries(result.domain) if e.state == PENDING), None)
    if waiting is None:
        result.made = keyring.add(result.domain, selector=selector, algorithm=algorithm, bits=bits)
    elif selector and selector != waiting.selector:
        raise DkimError(f"{waiting.dns_name} is still waiting to be published; publish it and run "
                        f"`smtpgate dkim rotate {result.domain}` (without --selector) to move on, before making another key")
    result.changes = keyring.advance(result.domain, _visible(resolver))
    return _described(keyring, result)


def status(config: Config, domain: str, *, keyring: Keyring | None = None) -> Rotation:
    keyring = keyring or keyring_from(config)
    return _described(keyring, Rotation(domain.strip().lower().rstrip(".")))


def _described(keyring: Keyring, result: Rotation) -> Rotation:
    result.keys = keyring.entries(result.domain)
    result.publish = [(name, value) for _, name, value in keyring.published(result.domain)]
    return result


def advance_all(config: Config, *, keyring: Keyring | None = None, resolver: Resolver | None = None) -> dict[str, list[str]]:
    """What the server does on its schedule: every domain with a key waiting moves on."""
    keyring = keyring or keyring_from(config)
    resolver = resolver or resolver_for(config, cached=False)
    waiting = sorted({e.domain for e in keyring.entries() if e.state in (PENDING, RETIRING)})
    return {domain: keyring.advance(domain, _visible(resolver)) for domain in waiting}
