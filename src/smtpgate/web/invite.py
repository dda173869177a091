"""The invitation page: `/invite/<link token>`, where a new account's owner sets the password.

The link's token is the authority: an unknown token counts in the guard against the source,
like a failed sign-in, and a banned source is refused before the token is looked at. The
form carries the pre-sign-in CSRF token (as the sign-in form). Once the password is set the
owner is signed in, and sent to add a second factor first when the account's policy says so,
else to Apps and devices, where the first app password is made.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from smtpgate.credentials.invites import InviteInfo, InviteInvalid
from smtpgate.errors import OpError
from smtpgate.ops import Operations
from smtpgate.web import security as sec
from smtpgate.web.pages import forbidden_csrf, read_form, redirect, render, sec_same

router = APIRouter(include_in_schema=False)
GUARD_LOGIN = "-invite-"   # the guard's login counter for bad links: never a real login


def _ops(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def _refused(request: Request, exc: OpError) -> Response:
    return render(request, "error.html", 404 if exc.code == "invite-unknown" else 410, title="This link cannot be used",
                  message=f"{str(exc).capitalize()}. Ask the person who sent it for a new invitation.")


async def _checked(request: Request, token: str) -> InviteInfo | Response:
    ops, ip = _ops(request), sec.client_ip(request)
    if ip and await ops.runtime.guard.check_connection(ip) is not None:
        return render(request, "error.html", 429, title="Not available",
                      message="Too many failed attempts from your network; try again later.")
    try:
        return await run_in_threadpool(ops.onboarding.invitation, token[:200])
    except InviteInvalid as exc:
        if exc.code == "invite-unknown" and ip:
            await ops.runtime.guard.auth_failed(ip, GUARD_LOGIN)
        return _refused(request, exc)


def _form(request: Request, info: InviteInfo, status: int = 200, error: str = "", reasons: list[str] | None = None) -> Response:
    nonce = request.cookies.get(sec.NONCE_COOKIE) or sec.new_nonce()
    response = render(request, "invite.html", status, title="Welcome", invite=info, error=error, reasons=reasons or [],
                      csrf=_ops(request).portal.anonymous_csrf_token(nonce))
    sec.set_cookie(request, response, sec.NONCE_COOKIE, nonce)
    return response


@router.get("/invite/{token}")
async def invitation(request: Request, token: str) -> Response:
    info = await _checked(request, token)
    return info if isinstance(info, Response) else _form(request, info)


@router.post("/invite/{token}")
async def accept(request: Request, token: str) -> Response:
    info = await _checked(request, token)
    if isinstance(info, Response):
        return info
    form = await read_form(request)
    nonce = request.cookies.get(sec.NONCE_COOKIE, "")
    if not nonce or not sec_same(form.get(sec.CSRF_FIELD, ""), _ops(request).portal.anonymous_csrf_token(nonce)):
        return forbidden_csrf(request)
    password = form.get("password", "")
    if password != form.get("confirm", ""):
        return _form(request, info, 400, "The two passwords are not the same.")
    ops, ip = _ops(request), sec.client_ip(request)
    try:
        account = await run_in_threadpool(lambda: ops.onboarding.accept(token[:200], password, remote_ip=ip))
    except InviteInvalid as exc:
        return _refused(request, exc)
    except OpError as exc:
        return _form(request, info, 400, str(exc), list(getattr(exc, "reasons", [])))
    signed = await ops.portal.sign_in(account.login, password, ip=ip, user_agent=request.headers.get("user-agent", ""))
    response = redirect("/two-factor?done=welcome-2fa" if account.require_second_factor else "/apps?done=welcome")
    sec.set_cookie(request, response, sec.SESSION_COOKIE, signed.token)
    return response
