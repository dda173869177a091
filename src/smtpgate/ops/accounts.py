"""Accounts: create, list, show, change, enable or disable, set the password."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import timedelta

from smtpgate.credentials import AccountInfo
from smtpgate.credentials.api_tokens import Role
from smtpgate.credentials.invites import IssuedInvite
from smtpgate.errors import Invalid
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration

INVITE_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class AccountWithPassword:
    """An account, and its password when smtpgate generated it (the only time it is shown),
    or the invitation link where its owner sets one (shown once too)."""

    account: AccountInfo
    password: str | None = field(default=None, repr=False)
    invite: IssuedInvite | None = None
    invite_url: str | None = field(default=None, repr=False)


class Accounts(Concern):
    def create(
        self, actor: Actor, login: str, *, password: str | None = None, generate: bool = False,
        display_name: str = "", owner: str = "", notes: str = "", require_app_passwords: bool = False,
        invite: bool = False, invite_expires: str | timedelta | None = None, role: str | None = None,
        require_second_factor: bool = False,
    ) -> AccountWithPassword:
        """With neither a password nor `generate`, the account has no password (app passwords only);
        with `invite`, its owner sets the password through a one-time link."""
        if password is not None and generate:
            raise Invalid("give a password or ask for one to be generated, not both", code="password-and-generate",
                          field="generate")
        if invite and (password is not None or generate):
            raise Invalid("an invited owner sets the password: give no password", code="password-and-invite",
                          field="invite")
        lifetime = duration(invite_expires, "expires") or INVITE_LIFETIME
        with self.journal.step(actor, "account.create", login, generate=generate, require_app_passwords=require_app_passwords,
                               invite=invite or None, role=role, require_second_factor=require_second_factor or None) as details:
            secret = self.rt.credentials.generate_password() if generate else password
            account = self.rt.credentials.create_account(
                login, password=secret, display_name=display_name, owner=owner, notes=notes,
                require_app_passwords=require_app_passwords, actor=actor.name,
            )
            if role is not None or require_second_factor:
                account = self.rt.credentials.set_account_policy(
                    login, role=role, require_second_factor=require_second_factor or None)
            issued = self.rt.credentials.create_invite(login, expires_in=lifetime, actor=actor.name) if invite else None
            if issued is not None:
                details["invite"] = issued.info.id
        return AccountWithPassword(account, secret if generate else None, issued, self._link(issued))

    def invite(self, actor: Actor, login: str, *, expires: str | timedelta | None = None) -> AccountWithPassword:
        """A new one-time link for an existing account (an older open one ends)."""
        lifetime = duration(expires, "expires") or INVITE_LIFETIME
        with self.journal.step(actor, "account.invite", login, expires=str(expires) if expires else None) as details:
            issued = self.rt.credentials.create_invite(login, expires_in=lifetime, actor=actor.name)
            details["invite"] = issued.info.id
        return AccountWithPassword(self.rt.credentials.get_account(login), None, issued, self._link(issued))

    def set_policy(self, actor: Actor, login: str, *, role: str | None = None,
                   require_second_factor: bool | None = None) -> AccountInfo:
        """The console role (viewer, operator, admin, or none) and whether a second factor is required."""
        with self.journal.step(actor, "account.policy", login, role=role, require_second_factor=require_second_factor):
            return self.rt.credentials.set_account_policy(login, role=role, require_second_factor=require_second_factor)

    def _link(self, issued: IssuedInvite | None) -> str | None:
        return f"{self.rt.config.console_url}/invite/{issued.secret}" if issued else None

    def list(self, actor: Actor) -> builtins.list[AccountInfo]:
        return self.rt.credentials.list_accounts()

    def get(self, actor: Actor, login: str) -> AccountInfo:
        return self.rt.credentials.get_account(login)

    def update(
        self, actor: Actor, login: str, *, display_name: str | None = None, owner: str | None = None,
        notes: str | None = None, require_app_passwords: bool | None = None, enabled: bool | None = None,
        role: str | None = None, require_second_factor: bool | None = None,
    ) -> AccountInfo:
        changed = [k for k, v in (("display_name", display_name), ("owner", owner), ("notes", notes),
                                  ("require_app_passwords", require_app_passwords), ("enabled", enabled),
                                  ("role", role), ("require_second_factor", require_second_factor)) if v is not None]
        with self.journal.step(actor, "account.update", login, changed=changed):
            if enabled is not None:
                self.rt.credentials.set_account_enabled(login, enabled)
            if role is not None or require_second_factor is not None:
                self.rt.credentials.set_account_policy(login, role=role, require_second_factor=require_second_factor)
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
