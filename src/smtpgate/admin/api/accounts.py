"""/api/v1/accounts and their app passwords."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.auth import actor, operations
from smtpgate.credentials import ScopeRequest
from smtpgate.ops import Actor, Operations
from smtpgate.ops.accounts import AccountWithPassword

router = APIRouter(tags=["accounts"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]
Login = Annotated[str, Path(max_length=320, description="The account's login (an email address).")]


def scope_request(body: s.ScopeFields) -> ScopeRequest:
    return ScopeRequest(
        allowed_senders=tuple(body.allow_from), allowed_networks=tuple(body.allow_ip), max_per_hour=body.max_per_hour,
        max_per_day=body.max_per_day, max_rcpt_per_hour=body.max_rcpt_per_hour, max_rcpt_per_day=body.max_rcpt_per_day,
        allow_foreign_sender=body.allow_foreign_sender,
    )


@router.get("/accounts", summary="List every account")
def list_accounts(who: Who, ops: Ops) -> list[s.Account]:
    return [s.Account.of(a) for a in ops.accounts.list(who)]


@router.post("/accounts", status_code=201, summary="Create an account (admin)")
def create_account(body: s.AccountCreate, who: Who, ops: Ops) -> s.AccountCreated:
    created = ops.accounts.create(
        who, body.login, password=body.password, generate=body.generate, display_name=body.display_name,
        owner=body.owner, notes=body.notes, require_app_passwords=body.require_app_passwords,
        invite=body.invite, invite_expires=body.invite_expires, role=body.role,
        require_second_factor=body.require_second_factor,
    )
    return s.AccountCreated.model_validate({**created.account.to_json(), "password": created.password,
                                            "invite": _invite(created)})


def _invite(created: AccountWithPassword) -> dict[str, object] | None:
    return {**created.invite.info.to_json(), "url": created.invite_url} if created.invite else None


@router.post("/accounts/{login}/invite", status_code=201, summary="A new one-time link to set the password (admin)")
def invite(login: Login, who: Who, ops: Ops, body: s.InviteCreate | None = None) -> s.Invite:
    return s.Invite.model_validate(_invite(ops.accounts.invite(who, login, expires=body.expires if body else None)))


@router.get("/accounts/{login}", summary="Show one account")
def get_account(login: Login, who: Who, ops: Ops) -> s.Account:
    return s.Account.of(ops.accounts.get(who, login))


@router.patch("/accounts/{login}", summary="Change an account (admin; disabling alone: operator)")
def patch_account(login: Login, body: s.AccountPatch, who: Who, ops: Ops) -> s.Account:
    if body.model_fields_set == {"enabled"} and body.enabled is not None:
        return s.Account.of(ops.accounts.set_enabled(who, login, body.enabled))
    return s.Account.of(ops.accounts.update(
        who, login, display_name=body.display_name, owner=body.owner, notes=body.notes,
        require_app_passwords=body.require_app_passwords, enabled=body.enabled, role=body.role,
        require_second_factor=body.require_second_factor,
    ))


@router.post("/accounts/{login}/password", summary="Set the account password (admin)")
def set_password(login: Login, body: s.PasswordSet, who: Who, ops: Ops) -> s.AccountCreated:
    changed = ops.accounts.set_password(who, login, password=body.password, generate=body.generate)
    return s.AccountCreated.model_validate({**changed.account.to_json(), "password": changed.password})


@router.post("/accounts/{login}/app-passwords", status_code=201, summary="Create an app password (admin)")
def create_app_password(login: Login, body: s.AppPasswordCreate, who: Who, ops: Ops) -> s.IssuedCredential:
    issued = ops.app_passwords.create(who, login, body.name, scopes=scope_request(body), expires=body.expires,
                                      notes=body.notes)
    return s.IssuedCredential.model_validate({**issued.credential.to_json(), "secret": issued.secret})
