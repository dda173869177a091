"""/api/v1/credentials: the inventory; revoke and rotate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.auth import actor, operations
from smtpgate.credentials import CredentialState
from smtpgate.ops import Actor, Operations

router = APIRouter(tags=["credentials"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]
CredentialId = Annotated[str, Path(max_length=40)]
APPLE_PROFILE = "application/x-apple-aspen-config"


@router.get("/credentials", summary="The credential inventory")
def list_credentials(
    who: Who, ops: Ops,
    account: Annotated[str | None, Query(max_length=320, description="Only this account's.")] = None,
    state: Annotated[CredentialState | None, Query(description="Only credentials in this state.")] = None,
) -> list[s.Credential]:
    return [s.Credential.of(c) for c in ops.credentials.list(who, account=account, state=state)]


@router.get("/credentials/due", summary="App passwords due for rotation")
def due(who: Who, ops: Ops) -> list[s.Credential]:
    return [s.Credential.of(c) for c in ops.credentials.due(who)]


@router.get("/credentials/{credential_id}", summary="One credential")
def get_credential(credential_id: CredentialId, who: Who, ops: Ops) -> s.Credential:
    return s.Credential.of(ops.credentials.get(who, credential_id))


@router.get("/credentials/{credential_id}/apple-profile", summary="An Apple configuration profile for an app password",
            response_class=Response, responses={200: {"content": {APPLE_PROFILE: {}}}})
def apple_profile(credential_id: CredentialId, who: Who, ops: Ops) -> Response:
    """The `.mobileconfig` that sets up Apple Mail with this app password (never with its secret)."""
    profile = ops.client_setup.apple_profile(who, credential_id)
    filename = "".join(c for c in credential_id if c.isalnum() or c in "_-") or "smtpgate"
    return Response(profile, media_type=APPLE_PROFILE, headers={
        "Content-Disposition": f'attachment; filename="{filename}.mobileconfig"', "Cache-Control": "no-store"})


@router.post("/credentials/{credential_id}/revoke", summary="Revoke now (operator)")
def revoke(credential_id: CredentialId, who: Who, ops: Ops) -> s.Credential:
    return s.Credential.of(ops.credentials.revoke(who, credential_id))


@router.post("/credentials/{credential_id}/rotate", summary="Issue a successor; the old one ends after the overlap (operator)")
def rotate(credential_id: CredentialId, who: Who, ops: Ops, body: s.RotateRequest | None = None) -> s.Rotated:
    issued, old = ops.credentials.rotate(who, credential_id, overlap=body.overlap if body else None)
    return s.Rotated(new=s.IssuedCredential.model_validate({**issued.credential.to_json(), "secret": issued.secret}),
                     old=s.Credential.of(old))
