"""Bans: the sources the guard keeps out. Adding and lifting are async (the guard's backend)."""

from __future__ import annotations

import builtins
from datetime import timedelta

from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import NotFound, Unavailable
from smtpgate.guard import Ban, GuardUnavailable
from smtpgate.guard.bans import BanRecord
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration


class Bans(Concern):
    def list(self, actor: Actor) -> builtins.list[BanRecord]:
        return self.rt.guard.recorded_bans()

    async def add(self, actor: Actor, network: str, length: str | timedelta = "1h", *, reason: str = "") -> Ban:
        """Recorded in the database and put in place in the backend; servers refuse the source at connect."""
        span = duration(length, "duration")
        assert span is not None
        with self.journal.step(actor, "ban.add", network, needs=Role.OPERATOR, duration=str(length), reason=reason):
            try:
                return await self.rt.guard.ban_network(network, span, reason=reason, actor=actor.name)
            except GuardUnavailable as exc:
                raise Unavailable(f"the ban is recorded but the guard backend is unreachable: {exc}",
                                  code="ban-recorded-backend-down", network=network) from None

    async def remove(self, actor: Actor, network: str) -> None:
        """Lift a ban now, and forget the failures counted against that source."""
        with self.journal.step(actor, "ban.remove", network, needs=Role.OPERATOR):
            try:
                lifted = await self.rt.guard.unban_network(network, actor=actor.name)
            except GuardUnavailable as exc:
                raise Unavailable(f"the ban is lifted in the database but the guard backend is unreachable: {exc}",
                                  code="unban-recorded-backend-down", network=network) from None
            if not lifted:
                raise NotFound(f"{network} is not banned", code="not-banned", field="network", network=network)

    async def close(self) -> None:
        """Close the guard backend's connections (a face that ran the operations above in its own loop)."""
        await self.rt.guard.close()
