"""App passwords: one per app or device, generated, shown once."""

from __future__ import annotations

from datetime import timedelta

from smtpgate.credentials import IssuedSecret, ScopeRequest
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration


class AppPasswords(Concern):
    def create(
        self, actor: Actor, login: str, name: str, *, scopes: ScopeRequest = ScopeRequest(),
        expires: str | timedelta | None = None, notes: str = "", canary: bool = False,
    ) -> IssuedSecret:
        """`canary`: a decoy that must never be used; any use of it raises an alert."""
        lifetime = duration(expires, "expires")
        with self.journal.step(actor, "app-password.create", login, name=name,
                               allow_from=list(scopes.allowed_senders), allow_ip=list(scopes.allowed_networks),
                               expires=str(expires) if expires else None, canary=canary) as details:
            issued = self.rt.credentials.create_app_password(
                login, name, scopes=scopes, expires_in=lifetime, notes=notes, actor=actor.name, canary=canary,
            )
            details["credential"] = issued.credential.id
        return issued
