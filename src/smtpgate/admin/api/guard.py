"""/api/v1/bans: the sources the guard keeps out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.auth import actor, operations
from smtpgate.ops import Actor, Operations

router = APIRouter(tags=["bans"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]


@router.get("/bans", summary="Bans in force, soonest to end first")
def list_bans(who: Who, ops: Ops) -> list[s.BanRecord]:
    return [s.BanRecord.of(b) for b in ops.bans.list(who)]


@router.post("/bans", status_code=201, summary="Ban a source now (operator)")
async def add_ban(body: s.BanCreate, who: Who, ops: Ops) -> s.Ban:
    ban = await ops.bans.add(who, body.network, body.duration, reason=body.reason)
    return s.Ban(network=ban.network, until=datetime.fromtimestamp(ban.until, UTC), reason=ban.reason)


@router.delete("/bans/{network:path}", status_code=204, response_class=Response,
               summary="Lift a ban (operator); a network is written with %2F for its slash")
async def remove_ban(network: Annotated[str, Path(max_length=64)], who: Who, ops: Ops) -> Response:
    await ops.bans.remove(who, network)
    return Response(status_code=204)
