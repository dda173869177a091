"""Service accounts: machines that send with short-lived access tokens."""

from __future__ import annotations

import builtins
from datetime import timedelta

from smtpgate.credentials import ScopeRequest
from smtpgate.credentials.api_tokens import Role
from smtpgate.credentials.service_accounts import IssuedClient, ServiceAccountInfo
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration


class ServiceAccounts(Concern):
    def create(
        self, actor: Actor, login: str, *, name: str = "", scopes: ScopeRequest = ScopeRequest(),
        token_lifetime: str | timedelta | None = None, notes: str = "",
    ) -> IssuedClient:
        lifetime = duration(token_lifetime, "token_lifetime")
        with self.journal.step(actor, "service-account.create", login, name=name,
                               allow_from=list(scopes.allowed_senders), allow_ip=list(scopes.allowed_networks)) as details:
            issued = self.rt.tokens.create_service_account(
                login, name=name, scopes=scopes, token_lifetime=lifetime, notes=notes, actor=actor.name,
            )
            details["client_id"] = issued.account.id
        return issued

    def list(self, actor: Actor) -> builtins.list[ServiceAccountInfo]:
        return self.rt.tokens.list_service_accounts()

    def get(self, actor: Actor, ref: str) -> ServiceAccountInfo:
        return self.rt.tokens.get_service_account(ref)

    def revoke(self, actor: Actor, ref: str) -> ServiceAccountInfo:
        with self.journal.step(actor, "service-account.revoke", ref, needs=Role.OPERATOR):
            return self.rt.tokens.revoke_service_account(ref, actor=actor.name)

    def reset_secret(self, actor: Actor, ref: str) -> IssuedClient:
        with self.journal.step(actor, "service-account.reset-secret", ref):
            return self.rt.tokens.reset_client_secret(ref)
