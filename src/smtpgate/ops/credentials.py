"""The credential inventory: list, show, revoke, rotate, and what is due for rotation."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from smtpgate.credentials import CredentialInfo, CredentialKind, CredentialState, IssuedSecret
from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Invalid
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration


def parse_state(value: str | CredentialState | None) -> CredentialState | None:
    if value is None or isinstance(value, CredentialState):
        return value
    try:
        return CredentialState(value)
    except ValueError:
        raise Invalid(f"{value!r} is not a credential state; use one of {', '.join(CredentialState)}",
                      code="invalid-state", field="state", value=value) from None


class Credentials(Concern):
    def list(self, actor: Actor, *, account: str | None = None,
             state: str | CredentialState | None = None) -> builtins.list[CredentialInfo]:
        return self.rt.credentials.list_credentials(account=account, state=parse_state(state))

    def get(self, actor: Actor, credential_id: str) -> CredentialInfo:
        return self.rt.credentials.get_credential(credential_id)

    def revoke(self, actor: Actor, credential_id: str) -> CredentialInfo:
        with self.journal.step(actor, "credential.revoke", credential_id, needs=Role.OPERATOR):
            return self.rt.credentials.revoke(credential_id, actor=actor.name)

    def rotate(self, actor: Actor, credential_id: str, *, overlap: str | timedelta | None = None,
               target: Any = None, hook: tuple[str, ...] | None = None) -> tuple[IssuedSecret, CredentialInfo]:
        """The successor (its secret shown once, or delivered to `target`) and the old credential with its new end."""
        window = duration(overlap, "overlap")
        with self.journal.step(actor, "credential.rotate", credential_id, needs=Role.OPERATOR,
                               overlap=str(overlap) if overlap else None, delivered=target is not None) as details:
            issued = self.rt.credentials.rotate(credential_id, overlap=window, actor=actor.name, target=target, hook=hook)
            details["successor"] = issued.credential.id
        return issued, self.rt.credentials.get_credential(credential_id)

    def due(self, actor: Actor) -> builtins.list[CredentialInfo]:
        return self.rt.credentials.due()

    def silent_devices(self, actor: Actor) -> builtins.list[CredentialInfo]:
        """Legacy devices that have not sent for `DEVICE_SILENT_AFTER` (the `creds due` rule):
        unplugged, or replaced by one that still holds the secret; either way, look."""
        return [c for c in self.rt.credentials.due() if c.kind is CredentialKind.DEVICE]
