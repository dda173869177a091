"""The operators' console: dashboard, accounts, credential inventory, bans, audit, alerts, queue
(incidents: `console_incidents`).

Open to a signed-in owner whose account has a console role and a second factor
(`ops.console.operator`); the actor carries that role, so each action is allowed or refused
by the operations layer exactly as for an API token of the same role. Every form is a POST
with the session's CSRF token; every page is server-rendered, the charts inline SVG.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from smtpgate.credentials import CredentialState
from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import OpError
from smtpgate.ops import Actor
from smtpgate.ops.queue import Selection
from smtpgate.web import charts
from smtpgate.web import security as sec
from smtpgate.web.pages import Visit, read_form, redirect, render, sec_same, status_of, visit

router = APIRouter(include_in_schema=False)
SHOWS = {"all": "Every credential", "dormant": "Dormant (unused for long)", "expiring": "Expiring soon",
         "never-used": "Never used", "revoked": "Revoked", "silent": "Silent devices (no mail for a month)"}
CHART_CSS = {"logins_ok": "ok", "logins_failed": "fail", "messages": "msg", "alerts": "alert"}


async def _operator(request: Request) -> tuple[Visit, Actor] | Response:
    v = await visit(request)
    if v is None:
        return redirect("/signin")
    try:
        actor = await run_in_threadpool(v.ops.console.operator, v.session.login, sec.client_ip(request))
    except OpError as exc:
        return render(request, "error.html", 403, title="Not for this account", message=str(exc), csrf=v.csrf,
                      login=v.session.login)
    return v, actor


def _page(v: Visit, actor: Actor, name: str, title: str, status: int = 200, **context: Any) -> Response:
    return render(v.request, name, status, title=title, csrf=v.csrf, login=v.session.login, role=str(actor.role),
                  console=True, **context)


Action = Callable[[Visit, Actor, dict[str, str]], Any]
Read = Callable[[Visit, Actor], dict[str, Any]]


async def _show(request: Request, read: Read, name: str, title: str) -> Response:
    """A console page that only reads: session and role, then `read` (in a thread) gives the template its values."""
    found = await _operator(request)
    if isinstance(found, Response):
        return found
    v, actor = found
    return _page(v, actor, name, title, **await run_in_threadpool(read, v, actor))


async def _act(request: Request, action: Action, back: str) -> Response:
    """A console form: session, CSRF, role (by ops); then back to the list, or the refusal on an error page."""
    found = await _operator(request)
    if isinstance(found, Response):
        return found
    v, actor = found
    form = await read_form(request)
    if not sec_same(form.get(sec.CSRF_FIELD, ""), v.csrf):
        return render(request, "error.html", 403, title="Form expired", message="Reload the page and send the form again.")
    try:
        result = action(v, actor, form)
        if inspect.isawaitable(result):
            result = await result
    except OpError as exc:
        return render(request, "error.html", status_of(exc), title="Not done", message=str(exc), csrf=v.csrf,
                      login=v.session.login, console=True)
    return result if isinstance(result, Response) else redirect(back)


# ------------------------------------------------------------------ dashboard

@router.get("/console")
async def dashboard(request: Request, window: str = "hour") -> Response:
    def read(v: Visit, actor: Actor) -> dict[str, Any]:
        board = v.ops.console.dashboard(actor, window)
        return {"board": board, "charts": [charts.bar_chart(s.label, s.points, board.starts, board.bucket,
                                                            CHART_CSS[s.name]) for s in board.series]}

    return await _show(request, read, "console_dashboard.html", "Operators' console")


# ------------------------------------------------------------------ accounts

@router.get("/console/accounts")
async def accounts(request: Request) -> Response:
    return await _show(request, lambda v, a: {"accounts": v.ops.accounts.list(a), "may_act": a.may(Role.OPERATOR)},
                       "console_accounts.html", "Accounts")


@router.post("/console/accounts")
async def invite(request: Request) -> Response:
    def create(v: Visit, actor: Actor, form: dict[str, str]) -> Response:
        created = v.ops.accounts.create(actor, form.get("login", ""), invite=True, invite_expires=form.get("expires") or None,
                                        require_second_factor=form.get("require_2fa") == "1")
        return _page(v, actor, "console_accounts.html", "Accounts", accounts=v.ops.accounts.list(actor),
                     invite_url=created.invite_url, may_act=actor.may(Role.OPERATOR))

    return await _act(request, lambda v, a, f: run_in_threadpool(create, v, a, f), "/console/accounts")


@router.post("/console/accounts/{login}/{change}")
async def enable_or_disable(request: Request, login: str, change: str) -> Response:
    enabled = {"enable": True, "disable": False}.get(change)
    if enabled is None:
        return redirect("/console/accounts")
    return await _act(request, lambda v, a, f: run_in_threadpool(v.ops.accounts.set_enabled, a, login, enabled),
                      "/console/accounts")


# ------------------------------------------------------------------ credentials

@router.get("/console/credentials")
async def credentials(request: Request, show: str = "all", account: str = "", app: str = "") -> Response:
    found = await _operator(request)
    if isinstance(found, Response):
        return found
    v, actor = found
    state = {"dormant": CredentialState.DORMANT, "expiring": CredentialState.EXPIRING,
             "revoked": CredentialState.REVOKED}.get(show)
    try:
        listed = await run_in_threadpool(lambda: v.ops.credentials.list(actor, account=account.strip() or None, state=state))
        silent = {c.id for c in await run_in_threadpool(v.ops.credentials.silent_devices, actor)}
    except OpError as exc:
        return _page(v, actor, "console_credentials.html", "Credentials", status_of(exc), error=str(exc), creds=[],
                     shows=SHOWS, show=show, account=account, app=app, silent=set(), may_act=False)
    if show == "silent":
        listed = [c for c in listed if c.id in silent]
    if show == "never-used":
        listed = [c for c in listed if c.last_used_at is None and c.state != CredentialState.REVOKED]
    if app.strip():
        listed = [c for c in listed if app.strip().lower() in c.name.lower()]
    return _page(v, actor, "console_credentials.html", "Credentials", creds=listed, shows=SHOWS,
                 show=show if show in SHOWS else "all", account=account, app=app, silent=silent,
                 may_act=actor.may(Role.OPERATOR))


@router.post("/console/credentials/{credential_id}/revoke")
async def revoke(request: Request, credential_id: str) -> Response:
    return await _act(request, lambda v, a, f: run_in_threadpool(v.ops.credentials.revoke, a, credential_id),
                      "/console/credentials")


# ------------------------------------------------------------------ bans

@router.get("/console/bans")
async def bans(request: Request) -> Response:
    return await _show(request, lambda v, a: {"bans": [b for b in v.ops.bans.list(a) if b.lifted_at is None]},
                       "console_bans.html", "Bans")


@router.post("/console/bans")
async def ban(request: Request) -> Response:
    return await _act(request, lambda v, a, f: v.ops.bans.add(a, f.get("network", ""), f.get("length") or "1h",
                                                              reason=f.get("reason", "")), "/console/bans")


@router.post("/console/bans/remove")
async def unban(request: Request) -> Response:
    return await _act(request, lambda v, a, f: v.ops.bans.remove(a, f.get("network", "")), "/console/bans")


# ------------------------------------------------------------------ audit, alerts

@router.get("/console/audit")
async def audit(request: Request, account: str = "", kind: str = "", result: str = "", since: str = "1d") -> Response:
    found = await _operator(request)
    if isinstance(found, Response):
        return found
    v, actor = found
    query = {"account": account, "kind": kind, "result": result, "since": since}
    try:
        events = await run_in_threadpool(lambda: v.ops.audit.events(
            actor, since_=since or None, account=account.strip() or None, kind=kind or None, result=result or None,
            limit=200))
    except OpError as exc:
        return _page(v, actor, "console_audit.html", "Audit", status_of(exc), error=str(exc), events=[], q=query)
    return _page(v, actor, "console_audit.html", "Audit", events=events, q=query)


@router.get("/console/alerts")
async def alerts(request: Request) -> Response:
    return await _show(request, lambda v, a: {"alerts": v.ops.alerts.list(a, since_=timedelta(days=30), limit=200)},
                       "console_alerts.html", "Alerts")


# ------------------------------------------------------------------ queue

@router.get("/console/queue")
async def queue(request: Request) -> Response:
    return await _show(request, lambda v, a: {"messages": v.ops.queue.list(a)}, "console_queue.html", "Queue")


@router.post("/console/queue/{message_id}/{action}")
async def queue_action(request: Request, message_id: str, action: str) -> Response:
    calls: dict[str, Callable[[Visit, Actor], Awaitable[Any] | Any]] = {
        "hold": lambda v, a: v.ops.queue.hold(a, Selection(message_id=message_id)),
        "release": lambda v, a: v.ops.queue.release(a, Selection(message_id=message_id)),
        "retry": lambda v, a: v.ops.queue.retry(a, message_id),
        "delete": lambda v, a: v.ops.queue.delete(a, Selection(message_id=message_id)),
    }
    call = calls.get(action)
    if call is None:
        return redirect("/console/queue")
    return await _act(request, lambda v, a, f: run_in_threadpool(call, v, a), "/console/queue")
