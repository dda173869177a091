"""/api/v1/service-accounts, their tokens, and operator API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.accounts import scope_request
from smtpgate.admin.api.auth import actor, operations
from smtpgate.ops import Actor, Operations

router = APIRouter(tags=["service accounts and tokens"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]
Ref = Annotated[str, Path(max_length=320, description="Client id or login.")]


@router.get("/service-accounts", summary="Every service account")
def list_service_accounts(who: Who, ops: Ops) -> list[s.ServiceAccount]:
    return [s.ServiceAccount.of(a) for a in ops.service_accounts.list(who)]


@router.post("/service-accounts", status_code=201, summary="Create a service account (admin)")
def create_service_account(body: s.ServiceAccountCreate, who: Who, ops: Ops) -> s.ServiceAccountIssued:
    issued = ops.service_accounts.create(who, body.login, name=body.name, scopes=scope_request(body),
                                         token_lifetime=body.token_lifetime, notes=body.notes)
    return s.ServiceAccountIssued.model_validate({**issued.account.to_json(), "client_secret": issued.client_secret})


@router.get("/service-accounts/{ref}", summary="One service account")
def get_service_account(ref: Ref, who: Who, ops: Ops) -> s.ServiceAccount:
    return s.ServiceAccount.of(ops.service_accounts.get(who, ref))


@router.post("/service-accounts/{ref}/revoke", summary="Revoke: its tokens stop at once (operator)")
def revoke_service_account(ref: Ref, who: Who, ops: Ops) -> s.ServiceAccount:
    return s.ServiceAccount.of(ops.service_accounts.revoke(who, ref))


@router.post("/service-accounts/{ref}/reset-secret", summary="A new client secret; the old one stops (admin)")
def reset_secret(ref: Ref, who: Who, ops: Ops) -> s.ServiceAccountIssued:
    issued = ops.service_accounts.reset_secret(who, ref)
    return s.ServiceAccountIssued.model_validate({**issued.account.to_json(), "client_secret": issued.client_secret})


@router.get("/tokens", summary="Access tokens issued here (never the tokens)")
def list_tokens(
    who: Who, ops: Ops,
    service_account: Annotated[str | None, Query(max_length=320)] = None,
    include_expired: bool = False,
) -> list[s.Token]:
    return [s.Token.of(t) for t in ops.tokens.list(who, service_account=service_account, include_expired=include_expired)]


@router.post("/tokens/{jti}/revoke", summary="Revoke one access token (operator)")
def revoke_token(
    jti: Annotated[str, Path(max_length=200)], who: Who, ops: Ops,
    issuer: Annotated[str | None, Query(max_length=500, description="An external IdP's issuer.")] = None,
) -> s.Token:
    return s.Token.of(ops.tokens.revoke(who, jti, issuer=issuer))


@router.get("/api-tokens", summary="Operator API tokens (admin; never the tokens)")
def list_api_tokens(who: Who, ops: Ops) -> list[s.ApiToken]:
    return [s.ApiToken.of(t) for t in ops.api_tokens.list(who)]


@router.post("/api-tokens", status_code=201, summary="Create an operator API token (admin)")
def create_api_token(body: s.ApiTokenCreate, who: Who, ops: Ops) -> s.ApiTokenIssued:
    issued = ops.api_tokens.create(who, body.name, body.role, expires=body.expires, allow_ip=tuple(body.allow_ip),
                                   notes=body.notes)
    return s.ApiTokenIssued.model_validate({**issued.info.to_json(), "token": issued.secret})


@router.post("/api-tokens/{ref}/revoke", summary="Revoke an operator API token (admin)")
def revoke_api_token(ref: Annotated[str, Path(max_length=200)], who: Who, ops: Ops) -> s.ApiToken:
    return s.ApiToken.of(ops.api_tokens.revoke(who, ref))
