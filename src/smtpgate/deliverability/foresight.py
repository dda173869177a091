"""Downstream rejection foreseen at submission: DMARC that the route cannot satisfy.

When a message's From: domain publishes DMARC p=reject or p=quarantine and the way its mail
leaves can align neither DKIM (no key for that domain here) nor SPF (the envelope domain is
not aligned, or its SPF record does not name the route), receivers will refuse or junk it.
The operator is told once per domain and day (an alert naming the record to publish), and by
`[deliverability] misaligned` the message is accepted anyway ("warn") or refused at the end
of DATA with 550 5.7.26 ("refuse"); "accept" does not look.

The verdict is cached per (From: domain, envelope domain) for `cache_ttl`, and DNS answers
too, so a busy domain costs a dictionary lookup; a change of the DKIM keys clears the cache.
DNS trouble never refuses mail: without an answer there is no verdict.
"""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from smtpgate.audit.store import Alert
from smtpgate.config import Config
from smtpgate.deliverability.dns import resolver_for
from smtpgate.deliverability.records import spf_term_for
from smtpgate.delivery.dkim import DkimError
from smtpgate.delivery.keyring import KeyringSigner, signer_from
from smtpgate.delivery.routes import route_for_domain
from smtpgate.mailauth import spf
from smtpgate.mailauth.dmarc import DmarcError, aligned, find_policy
from smtpgate.mailauth.resolver import DnsTrouble, Resolver

__all__ = ["Foresight", "Verdict"]

log = logging.getLogger("smtpgate.deliverability")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63}")


@dataclass(frozen=True)
class Verdict:
    domain: str           # the From: domain
    policy: str           # reject or quarantine
    spf_fix: str          # the SPF term to add (empty when SPF cannot align anyway)
    refuse: bool

    @property
    def missing(self) -> str:
        dkim = f"a DKIM key for {self.domain} (smtpgate dkim rotate {self.domain})"
        if self.spf_fix:
            return f"{dkim}, or {self.spf_fix} in the SPF record of {self.domain}"
        return dkim

    @property
    def reply(self) -> str:
        return (f"{self.domain} publishes DMARC p={self.policy} and this server cannot align DKIM or SPF for it; "
                f"missing: {self.missing}")

    @property
    def reply_lines(self) -> list[str]:
        """The reply in lines that keep each SMTP reply line within 512 octets (RFC 5321 4.5.3.1.5)."""
        return textwrap.wrap(self.reply, 400, break_on_hyphens=False)


class Foresight:
    def __init__(
        self,
        config: Config,
        *,
        resolver: Resolver | None = None,
        signer: KeyringSigner | None = None,
        alert: Callable[[Alert], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.mode = config.deliverability.misaligned
        self.ttl = config.deliverability.cache_ttl.total_seconds()
        self.resolver = resolver or resolver_for(config, timeout=3.0)
        if signer is None:
            try:
                signer = signer_from(config)
            except DkimError as exc:  # the server refuses to start on this; the CLI goes on without keys
                log.error("DKIM keys unreadable, foreseeing without them: %s", exc)
        self.signer = signer
        self.alert = alert
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Verdict | None]] = {}
        self._stamp: object = None
        self._alerted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- the session's side

    async def check(self, from_domain: str, mail_from: str) -> Verdict | None:
        """The verdict for this message (None: nothing to foresee); cheap when cached."""
        key = (from_domain.lower().rstrip("."), mail_from.rpartition("@")[2].lower().rstrip("."))
        if self.mode == "accept" or not all(_DOMAIN.fullmatch(d) for d in key if d) or not key[0]:
            return None  # a name no DNS can hold (it came from the network): nothing to look up
        hit = self._cached(key)
        if hit is not None and (hit[1] is None or self._alert_done(hit[1])):
            return hit[1]
        return await asyncio.to_thread(self.judge, *key)

    def _cached(self, key: tuple[str, str]) -> tuple[float, Verdict | None] | None:
        stamp = self.signer.keyring.stamp() if self.signer is not None else None
        with self._lock:
            if stamp != self._stamp:
                self._cache.clear()
                self._stamp = stamp
            hit = self._cache.get(key)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit

    def _alert_done(self, verdict: Verdict) -> bool:
        return (verdict.domain, _today(self.clock())) in self._alerted

    # ---------------------------------------------------------------- the judgement (in a thread)

    def judge(self, from_domain: str, envelope_domain: str) -> Verdict | None:
        hit = self._cached((from_domain, envelope_domain))
        verdict = hit[1] if hit is not None else self._judge(from_domain, envelope_domain)
        if hit is None:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[(from_domain, envelope_domain)] = (self.clock() + self.ttl, verdict)
        if verdict is not None:
            self._tell(verdict)
        return verdict

    def _judge(self, from_domain: str, envelope_domain: str) -> Verdict | None:
        route = route_for_domain(self.config, envelope_domain or from_domain)
        if route == "capture":
            return None
        try:
            policy, _ = find_policy(self.resolver, from_domain)
        except (DmarcError, DnsTrouble) as exc:
            log.info("DMARC of %s not judged: %s", from_domain, exc)
            return None
        if policy is None or policy.applies(from_domain) not in ("reject", "quarantine"):
            return None
        if self._dkim_aligns(from_domain, policy.adkim):
            return None
        term, addresses = spf_term_for(self.config, route)
        spf_can_align = bool(envelope_domain) and aligned(envelope_domain, from_domain, policy.aspf)
        if spf_can_align:
            try:
                if spf.route_named(self.resolver, envelope_domain, term, addresses).named:
                    return None
            except DnsTrouble as exc:
                log.info("SPF of %s not judged: %s", envelope_domain, exc)
                return None
        return Verdict(from_domain, policy.applies(from_domain), term if spf_can_align else "", self.mode == "refuse")

    def _dkim_aligns(self, from_domain: str, mode: str) -> bool:
        if self.signer is None:
            return False
        self.signer.refresh()
        labels = from_domain.split(".")
        for i in range(len(labels) - 1):
            domain = ".".join(labels[i:])
            if domain in self.signer.keys:
                return aligned(domain, from_domain, mode)
        return False

    def _tell(self, verdict: Verdict) -> None:
        day = _today(self.clock())
        with self._lock:
            if (verdict.domain, day) in self._alerted:
                return
            self._alerted.add((verdict.domain, day))
        log.warning("DMARC misalignment foreseen for %s (p=%s): %s", verdict.domain, verdict.policy, verdict.missing)
        if self.alert is None:
            return
        try:
            self.alert(Alert(
                rule="dmarc-misaligned",
                severity="critical" if verdict.refuse else "warning",
                summary=f"Mail from {verdict.domain} will be {'rejected' if verdict.policy == 'reject' else 'junked'} "
                        f"downstream (DMARC p={verdict.policy}, nothing aligns): publish {verdict.missing}"
                        + (" (refused here with 550 5.7.26)" if verdict.refuse else ""),
                dedupe_key=f"dmarc-misaligned:{day}:{verdict.domain}",   # the day first: the store keeps 255 characters
                time=datetime.fromtimestamp(self.clock(), UTC),
                details={"domain": verdict.domain, "policy": verdict.policy, "spf_term": verdict.spf_fix,
                         "dkim": f"smtpgate dkim rotate {verdict.domain}", "mode": self.mode},
            ))
        except Exception as exc:  # noqa: BLE001 - an alert that cannot be stored must not stop the mail
            log.error("cannot raise the DMARC alert for %s: %s", verdict.domain, type(exc).__name__)


def _today(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
