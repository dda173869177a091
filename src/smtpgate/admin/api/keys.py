"""/api/v1/dkim and /api/v1/upstream: signing keys and the smarthost credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.auth import actor, operations
from smtpgate.ops import Actor, Operations

router = APIRouter(tags=["dkim and upstream"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]


@router.get("/dkim", summary="The DNS TXT records of the configured keys")
def dkim_records(who: Who, ops: Ops, domain: Annotated[str | None, Query(max_length=253)] = None) -> list[s.DkimRecord]:
    return [s.DkimRecord.of(r) for r in ops.dkim.records(who, domain)]


@router.post("/dkim/keys", status_code=201, summary="Make a new key (admin); it signs once its record is in DNS")
def dkim_keygen(body: s.DkimKeygen, who: Who, ops: Ops) -> s.DkimRecord:
    return s.DkimRecord.of(ops.dkim.keygen(who, body.domain, selector=body.selector, algorithm=body.algorithm,
                                           bits=body.bits))


@router.get("/upstream", summary="Where the relay goes and whether a password is set (never the password)")
def upstream(who: Who, ops: Ops) -> s.UpstreamState:
    return s.UpstreamState.of(ops.upstream.show(who))


@router.put("/upstream/password", status_code=204, response_class=Response,
            summary="Store or rotate the smarthost password, encrypted (admin)")
def upstream_password(body: s.UpstreamPassword, who: Who, ops: Ops) -> Response:
    ops.upstream.set_password(who, body.password)
    return Response(status_code=204)
