"""/api/v1/incidents: open (contain in one step), list, report, close; and /api/v1/leaks.

Opening and closing need the operator role (deleting held mail on close, admin); a
viewer reads. /api/v1/leaks is the one route here without an operator token: a secret
scanner signs its report instead (docs/incidents.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import Field

from smtpgate.admin.api.auth import actor, client_ip, operations
from smtpgate.admin.api.schemas import In, Out, Problem
from smtpgate.credentials.leak_reports import KEY_ID_HEADER, SIGNATURE_HEADER
from smtpgate.ops import Actor, Operations

router = APIRouter(tags=["incidents"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]
IncidentId = Annotated[int, Path(ge=1)]


class IncidentOpen(In):
    credential: str | None = Field(None, max_length=40, description="The leaked credential's id.")
    account: str | None = Field(None, max_length=320, description="Or the account whose credentials all leaked.")
    reason: str = Field("", max_length=2000)


class IncidentClose(In):
    held: Literal["release", "delete", "keep"] = Field("keep", description="What becomes of the held messages.")


class Revoked(Out):
    id: str
    kind: str
    name: str
    already: bool


class Banned(Out):
    network: str
    until: str


class Spared(Out):
    source: str
    why: str


class Incident(Out):
    id: int
    state: Literal["open", "closed"]
    opened_at: str
    opened_by: str
    credential: str | None = None
    account: str
    reason: str
    window_start: str
    revoked: list[Revoked]
    password_reset: bool
    held: list[str] = Field(description="Queued messages held (ids).")
    left: list[str] = Field(description="Messages of the window that had already left when it was opened (ids).")
    banned: list[Banned]
    spared: list[Spared] = Field(description="Sources that used it but were not banned, and why.")
    alert_id: int | None
    problems: list[str]
    closed_at: str | None
    closed_by: str | None
    resolution: Literal["released", "deleted", "kept"] | None


class TimelineEntry(Out):
    time: str
    what: Literal["login", "login-refused", "message", "message-refused"]
    remote_ip: str
    credential_id: str | None
    reason: str
    recipients: int
    domains: list[str]
    message_id: str | None
    fate: Literal["held", "left", "captured"] | None


class Report(Out):
    incident: Incident
    timeline: list[TimelineEntry]
    sources: list[str]


class LeakVerdict(Out):
    token_hash: str = Field(description="SHA-256 (hex) of the reported token.")
    token_type: str
    label: Literal["true_positive", "false_positive"]


def _incident(value: Any) -> Incident:
    return Incident.model_validate(value.to_json())


@router.post("/incidents", status_code=201, summary="Contain a leaked credential or account in one step (operator)")
async def open_incident(body: IncidentOpen, who: Who, ops: Ops) -> Incident:
    return _incident(await ops.incidents.open(who, credential=body.credential, account=body.account, reason=body.reason))


@router.get("/incidents", summary="Incidents, newest first")
def list_incidents(who: Who, ops: Ops, state: Literal["open", "closed"] | None = None) -> list[Incident]:
    return [_incident(i) for i in ops.incidents.list(who, state=state)]


@router.get("/incidents/{incident_id}", summary="The report: what was contained, and the timeline in the window",
            responses={200: {"content": {"text/html": {}}, "description": "JSON, or the HTML report with Accept: text/html."}})
def show_incident(incident_id: IncidentId, request: Request, who: Who, ops: Ops) -> Any:
    report = ops.incidents.report(who, incident_id)
    if "text/html" in request.headers.get("accept", "") and "json" not in request.headers.get("accept", ""):
        return HTMLResponse(report.to_html())
    return Report.model_validate(report.to_json())


@router.post("/incidents/{incident_id}/close", summary="Close; release, delete (admin) or keep what was held (operator)")
def close_incident(incident_id: IncidentId, body: IncidentClose, who: Who, ops: Ops) -> Incident:
    return _incident(ops.incidents.close(who, incident_id, release_held=body.held == "release",
                                         delete_held=body.held == "delete"))


# -------------------------------------------------------------- leak reports (signed, no token)

leaks = APIRouter(tags=["incidents"])
_LEAK_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text, "content": {"application/problem+json": {}}}
    for status, text in ((401, "Not signed."), (403, "Signed with an unknown key, or the signature does not match."),
                         (404, "Leak reports are not configured ([incidents] leak_report_keys)."),
                         (422, "Not a JSON array of {token, type, url, source}."))
}


@leaks.post("/leaks", responses=_LEAK_PROBLEMS,
            summary="A secret scanner's signed report of leaked tokens (GitHub's partner programme format)",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "array", "items": {"type": "object", "required": ["token"], "properties": {
                    "token": {"type": "string"}, "type": {"type": "string"}, "url": {"type": "string"},
                    "source": {"type": "string"}}}}}}}})
async def report_leaks(request: Request, ops: Ops) -> list[LeakVerdict]:
    body = await request.body()
    verdicts = await ops.leaks.report(body, key_id=request.headers.get(KEY_ID_HEADER),
                                      signature=request.headers.get(SIGNATURE_HEADER), remote_ip=client_ip(request))
    return [LeakVerdict.model_validate(v.reply()) for v in verdicts]


__all__ = ["leaks", "router"]
