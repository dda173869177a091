"""Access tokens of the built-in issuer: issue, list, revoke; the signing keys."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from smtpgate.credentials.api_tokens import Role
from smtpgate.credentials.tokens import IssuedToken, TokenInfo
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration


class Tokens(Concern):
    def issue(self, actor: Actor, service_account: str, *, scope: str | None = None,
              lifetime: str | timedelta | None = None) -> IssuedToken:
        length = duration(lifetime, "lifetime")
        with self.journal.step(actor, "token.issue", service_account, scope=scope) as details:
            issued = self.rt.tokens.issue(service_account, scope=scope, lifetime=length)
            details["jti"] = issued.jti
        return issued

    def list(self, actor: Actor, *, service_account: str | None = None, include_expired: bool = False) -> builtins.list[TokenInfo]:
        return self.rt.tokens.list_tokens(service_account=service_account, include_expired=include_expired)

    def revoke(self, actor: Actor, jti: str, *, issuer: str | None = None) -> TokenInfo:
        with self.journal.step(actor, "token.revoke", jti, needs=Role.OPERATOR, issuer=issuer):
            return self.rt.tokens.revoke_token(jti, issuer=issuer, actor=actor.name)

    def rotate_key(self, actor: Actor) -> tuple[str, builtins.list[str]]:
        """The new signing key's kid, and every published kid."""
        with self.journal.step(actor, "token.rotate-key") as details:
            kid = self.rt.tokens.rotate_signing_key()
            details["kid"] = kid
        return kid, [k.kid for k in self.rt.tokens.keys.published()]

    def jwks(self, actor: Actor) -> dict[str, Any]:
        return self.rt.tokens.jwks()
