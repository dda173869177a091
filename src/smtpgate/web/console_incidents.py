"""The console's incidents: open one on a credential or an account (after a confirmation
page, with a reason), the report (what was revoked, held, banned; the timeline), close it.

Every step is `ops.incidents`, so the roles are the API's: a viewer reads, an operator opens
and closes, deleting held mail on close is an admin's. The buttons a role cannot use are
not drawn; the POST is refused by the operations layer all the same.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Invalid, OpError
from smtpgate.ops import Actor
from smtpgate.web.console import _act, _operator, _page, _show
from smtpgate.web.pages import Visit, redirect, status_of

router = APIRouter(include_in_schema=False)
CLOSINGS = {"keep": "Keep them held", "release": "Release them (they are delivered)",
            "delete": "Delete them (admin)"}


@router.get("/console/incidents")
async def incidents(request: Request) -> Response:
    return await _show(request, lambda v, a: {"incidents": v.ops.incidents.list(a)}, "console_incidents.html",
                       "Incidents")


@router.get("/console/incidents/new")
async def confirm(request: Request, credential: str = "", account: str = "") -> Response:
    """The confirmation step: what opening the incident will do, to what, and the reason."""
    found = await _operator(request)
    if isinstance(found, Response):
        return found
    v, actor = found
    return await _confirmation(v, actor, credential.strip(), account.strip(), "")


async def _confirmation(v: Visit, actor: Actor, credential: str, account: str, reason: str, status: int = 200,
                        error: str = "") -> Response:
    subject: object = None
    try:
        if credential:
            subject = await run_in_threadpool(v.ops.credentials.get, actor, credential)
        elif account:
            subject = await run_in_threadpool(v.ops.accounts.get, actor, account)
        else:
            raise Invalid("name what leaked: one credential or one account", code="incident-subject-required",
                          field="credential")
    except OpError as exc:
        return _page(v, actor, "error.html", "Not found", status_of(exc), message=str(exc))
    return _page(v, actor, "console_incident_open.html", "Open an incident", status, credential=credential,
                 account=account, subject=subject, reason=reason, error=error, may_act=actor.may(Role.OPERATOR))


@router.post("/console/incidents")
async def open_incident(request: Request) -> Response:
    async def contain(v: Visit, actor: Actor, form: dict[str, str]) -> Response:
        credential, account = form.get("credential", "").strip(), form.get("account", "").strip()
        if form.get("confirm") != "yes":
            return await _confirmation(v, actor, credential, account, form.get("reason", ""), 422,
                                       "Tick the confirmation box: opening an incident cannot be undone.")
        opened = await v.ops.incidents.open(actor, credential=credential or None, account=account or None,
                                            reason=form.get("reason", "").strip())
        return redirect(f"/console/incidents/{opened.id}?done=incident-opened")

    return await _act(request, contain, "/console/incidents")


@router.get("/console/incidents/{incident_id}")
async def incident(request: Request, incident_id: int) -> Response:
    found = await _operator(request)
    if isinstance(found, Response):
        return found
    v, actor = found
    try:
        report = await run_in_threadpool(v.ops.incidents.report, actor, incident_id)
    except OpError as exc:
        return _page(v, actor, "error.html", "Not found", status_of(exc), message=str(exc))
    return _page(v, actor, "console_incident.html", f"Incident {incident_id}", report=report, i=report.incident,
                 c=report.incident.contained, closings=CLOSINGS, may_act=actor.may(Role.OPERATOR))


@router.post("/console/incidents/{incident_id}/close")
async def close(request: Request, incident_id: int) -> Response:
    def close_it(v: Visit, actor: Actor, form: dict[str, str]) -> Response:
        held = form.get("held", "keep")
        if held not in CLOSINGS:
            raise Invalid(f"{held!r} is not a choice: keep, release or delete", code="invalid-choice", field="held")
        v.ops.incidents.close(actor, incident_id, release_held=held == "release", delete_held=held == "delete")
        return redirect(f"/console/incidents/{incident_id}?done=incident-closed")

    return await _act(request, lambda v, a, f: run_in_threadpool(close_it, v, a, f), f"/console/incidents/{incident_id}")
