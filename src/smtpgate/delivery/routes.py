"""Which way a message leaves: capture, relay or mx, chosen per sender domain.

The envelope sender's domain (or its nearest parent) in `[delivery.routes]` picks the
route, `[delivery] mode` is the rest. A bounce has no sender, so it goes the way mail
*to* its recipient's domain would be sent if that domain were a sender: usually the same
smarthost or capture that its original took.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from smtpgate.config import Config, dns_server_address
from smtpgate.delivery.capture import CapturedMessage, Envelope
from smtpgate.delivery.outcome import Outcome, Outgoing
from smtpgate.delivery.spool import CaptureBox
from smtpgate.delivery.upstream import upstream_secrets

__all__ = ["CaptureRoute", "Route", "RouteTable", "build_routes", "route_for_domain", "upstream_secrets"]


class Route(Protocol):
    name: str

    async def deliver(self, message: Outgoing) -> dict[str, Outcome]:
        """Per pending recipient: delivered, temporary or permanent."""
        ...

    async def close(self) -> None: ...


class CaptureRoute:
    """Keeps the message in the capture store (`smtpgate capture list`)."""

    name = "capture"

    def __init__(self, store: CaptureBox) -> None:
        self.store = store

    async def deliver(self, message: Outgoing) -> dict[str, Outcome]:
        def write() -> CapturedMessage:
            writer = self.store.begin(
                Envelope(
                    mail_from=message.mail_from,
                    rcpt_to=message.recipients,
                    credential_id=message.credential_id,
                    account=message.account,
                    client_ip="",
                    helo="",
                    received_at=datetime.now(timezone.utc),
                )
            )
            try:
                writer.write(message.data)
                return writer.commit()
            finally:
                writer.abort()  # a no-op after commit()

        stored = await asyncio.to_thread(write)
        return {r: Outcome("delivered", f"250 2.0.0 captured as {stored.id}", "capture") for r in message.recipients}

    async def close(self) -> None:
        return None


def _lookup(table: dict[str, str], domain: str) -> str | None:
    labels = domain.lower().rstrip(".").split(".")
    for i in range(len(labels)):
        found = table.get(".".join(labels[i:]))
        if found is not None:
            return found
    return None


def route_for_domain(config: Config, domain: str) -> str:
    """The route mail from this sender domain takes: capture, relay or mx."""
    return _lookup(dict(config.delivery.routes), domain) or config.delivery.mode


@dataclass
class RouteTable:
    default: str
    by_domain: dict[str, str]
    routes: dict[str, Route]

    def name_for(self, message: CapturedMessage) -> str:
        if message.mail_from:
            return _lookup(self.by_domain, message.mail_from.rpartition("@")[2]) or self.default
        for rcpt in message.rcpt_to:
            found = _lookup(self.by_domain, rcpt.rpartition("@")[2])
            if found:
                return found
        return self.default

    def route_for(self, message: CapturedMessage) -> Route:
        return self.routes[self.name_for(message)]

    async def close(self) -> None:
        for route in self.routes.values():
            await route.close()


def build_routes(config: Config, capture: CaptureBox) -> RouteTable:
    """The routes the config uses, and nothing else (an unused relay needs no password)."""
    d = config.delivery
    used = {d.mode, *d.routes.values()}
    routes: dict[str, Route] = {}
    if "capture" in used:
        routes["capture"] = CaptureRoute(capture)
    if "relay" in used:  # imported here only so that a server without a relay never loads aiosmtplib
        from smtpgate.delivery.relay import RelayRoute

        routes["relay"] = RelayRoute.from_config(config)
    if "mx" in used:
        from smtpgate.delivery.mta_sts import MtaStsResolver
        from smtpgate.delivery.mx import DnsLookup, MxRoute, MxSettings

        lookup = DnsLookup([dns_server_address(s) for s in d.dns_servers], timeout=min(30.0, d.mx.timeout.total_seconds()))
        mta_sts = (
            MtaStsResolver(
                lookup.txt,
                policy_host=d.mx.mta_sts_policy_host,
                ca_file=str(config.path(d.mx.mta_sts_ca_file)) if d.mx.mta_sts_ca_file else "",
            )
            if d.mx.mta_sts
            else None
        )
        routes["mx"] = MxRoute(
            MxSettings(
                port=d.mx.port,
                timeout=d.mx.timeout.total_seconds(),
                local_hostname=config.hostname,
                ca_file=str(config.path(d.mx.ca_file)) if d.mx.ca_file else "",
            ),
            lookup,
            mta_sts,
        )
    return RouteTable(d.mode, dict(d.routes), routes)
