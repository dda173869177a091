"""/api/v1/audit (cursor pagination) and /api/v1/alerts."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.auth import actor, operations
from smtpgate.errors import Invalid
from smtpgate.ops import Actor, Operations

router = APIRouter(tags=["audit"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]
Since = Annotated[str | None, Query(max_length=40, description="Only the last DURATION, e.g. 1h, 7d.")]


def _cursor(kind: str, last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{last_id}".encode()).decode().rstrip("=")


def _before(cursor: str | None, kind: str) -> int | None:
    """The id a cursor continues before; a cursor is only good for the kind it came from."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        made_for, _, value = text.partition(":")
        if made_for == kind and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise Invalid("not a cursor from a previous page of this query", code="invalid-cursor", field="cursor")


@router.get("/audit", summary="Audit events, newest first; kind=operator for the operator trail")
def audit(
    who: Who, ops: Ops,
    kind: Annotated[Literal["auth", "message", "connect", "operator"] | None, Query()] = None,
    since: Since = None,
    account: Annotated[str | None, Query(max_length=320)] = None,
    credential: Annotated[str | None, Query(max_length=40)] = None,
    result: Annotated[Literal["ok", "fail"] | None, Query()] = None,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=200, description="kind=operator: who.")] = None,
    action: Annotated[str | None, Query(max_length=64, description="kind=operator: e.g. credential.revoke.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100, description="next_cursor of the previous page.")] = None,
) -> s.AuditPage:
    items: list[s.AuditEvent | s.OperatorEvent]
    if kind == "operator":
        before = _before(cursor, "operator")
        found = ops.audit.operator(who, since_=since, who=actor_name, action=action, limit=limit, before_id=before)
        items = [s.OperatorEvent.of(e) for e in found]
        ids = [e.id for e in found]
    else:
        before = _before(cursor, "events")
        events = ops.audit.events(who, since_=since, account=account, credential=credential, result=result, kind=kind,
                                  limit=limit, before_id=before)
        items = [s.AuditEvent.of(e) for e in events]
        ids = [e.id for e in events]
    more = len(ids) == limit
    return s.AuditPage(items=items, next_cursor=_cursor("operator" if kind == "operator" else "events", ids[-1])
                       if more and ids else None)


@router.get("/alerts", summary="Anomaly alerts, newest first")
def alerts(
    who: Who, ops: Ops, since: Since = None,
    rule: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[s.Alert]:
    return [s.Alert.of(a) for a in ops.alerts.list(who, since_=since, rule=rule, limit=limit)]
