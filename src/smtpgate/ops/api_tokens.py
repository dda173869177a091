"""Operator API tokens: create (shown once), list, revoke. Only an admin manages them."""

from __future__ import annotations

import builtins
from datetime import timedelta

from smtpgate.credentials.api_tokens import ApiTokenInfo, IssuedApiToken, Role
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration


class ApiTokens(Concern):
    def create(self, actor: Actor, name: str, role: str, *, expires: str | timedelta | None = None,
               allow_ip: tuple[str, ...] = (), notes: str = "") -> IssuedApiToken:
        lifetime = duration(expires, "expires")
        with self.journal.step(actor, "api-token.create", name, role=role, allow_ip=list(allow_ip),
                               expires=str(expires) if expires else None) as details:
            issued = self.rt.credentials.api_tokens.create(
                name, role, expires_in=lifetime, allowed_networks=allow_ip, notes=notes, actor=actor.name,
            )
            details["id"] = issued.info.id
        return issued

    def list(self, actor: Actor) -> builtins.list[ApiTokenInfo]:
        self.journal.allow(actor, Role.ADMIN, "api-token.list")  # who holds which token is an admin's business
        return self.rt.credentials.api_tokens.list()

    def revoke(self, actor: Actor, ref: str) -> ApiTokenInfo:
        with self.journal.step(actor, "api-token.revoke", ref):
            return self.rt.credentials.api_tokens.revoke(ref, actor=actor.name)
