"""Accounts: create, list, show, change, enable or disable, set the password."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from smtpgate.credentials import AccountInfo
from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Invalid
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


@dataclass(frozen=True)
class AccountWithPassword:
    """An account, and its password when smtpgate generated it (the only time it is shown)."""

    account: AccountInfo
    password: str | None = field(default=None, repr=False)


class Accounts(Concern):
    def create(
        self, actor: Actor, login: str, *, password: str | None = None, generate: bool = False,
        display_name: str = "", owner: str = "", notes: str = "", require_app_passwords: bool = False,
    ) -> AccountWithPassword:
        """With neither a password nor `generate`, the account has no password (app passwords only)."""
        if password is not None and generate:
            raise Invalid("give a password or ask for one to be generated, not both", code="password-and-generate",
                          field="generate")
        with self.journal.step(actor, "account.create", login, generate=generate, require_app_passwords=require_app_passwords):
            secret = self.rt.credentials.generate_password() if generate else password
            account = self.rt.credentials.create_account(
                login, password=secret, display_name=display_name, owner=owner, notes=notes,
                require_app_passwords=require_app_passwords, actor=actor.name,
            )
        return AccountWithPassword(account, secret if generate else None)

    def list(self, actor: Actor) -> builtins.list[AccountInfo]:
        return self.rt.credentials.list_accounts()

    def get(self, actor: Actor, login: str) -> AccountInfo:
        return self.rt.credentials.get_account(login)

    def update(
        self, actor: Actor, login: str, *, display_name: str | None = None, owner: str | None = None,
        notes: str | None = None, require_app_passwords: bool | None = None, enabled: bool | None = None,
    ) -> AccountInfo:
        changed = [k for k, v in (("display_name", display_name), ("owner", owner), ("notes", notes),
                                  ("require_app_passwords", require_app_passwords), ("enabled", enabled)) if v is not None]
        with self.journal.step(actor, "account.update", login, changed=changed):
            if enabled is not None:
                self.rt.credentials.set_account_enabled(login, enabled)
            return self.rt.credentials.update_account(
                login, display_name=display_name, owner=owner, notes=notes, require_app_passwords=require_app_passwords,
            )

    def set_enabled(self, actor: Actor, login: str, enabled: bool) -> AccountInfo:
        """Disabling stops every credential of the account at once, so an operator may do it."""
        with self.journal.step(actor, "account.enable" if enabled else "account.disable", login,
                               needs=Role.ADMIN if enabled else Role.OPERATOR):
            return self.rt.credentials.set_account_enabled(login, enabled)

    def set_password(self, actor: Actor, login: str, *, password: str | None = None,
                     generate: bool = False) -> AccountWithPassword:
        if (password is None) == (not generate):
            raise Invalid("give a password or ask for one to be generated", code="password-required", field="password")
        with self.journal.step(actor, "account.set-password", login, generate=generate):
            secret = self.rt.credentials.generate_password() if generate else password
            assert secret is not None
            account = self.rt.credentials.set_password(login, secret, actor=actor.name)
        return AccountWithPassword(account, secret if generate else None)
