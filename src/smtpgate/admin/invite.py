"""The invitation page: `/invite/<link token>`, where a new account's owner sets the password.

A page of its own until the web console's base carries it; it works without JavaScript or
CSS (plain HTML form, every value escaped). The link's token is the authority: an unknown
token counts in the guard against the source, like a failed login, and a banned source is
refused before the token is looked at. Headers: no caching, no referrer (the token is in
the URL), no framing, a CSP that allows nothing but posting the form back here.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from smtpgate.admin.api.auth import client_ip, operations
from smtpgate.credentials.errors import WeakPassword
from smtpgate.credentials.invites import InviteInfo, InviteInvalid
from smtpgate.errors import OpError

router = APIRouter(include_in_schema=False)
GUARD_LOGIN = "-invite-"   # the guard's login counter for bad links: never a real login
MAX_FORM = 8 * 1024
HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
            f"</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def _form(info: InviteInfo, problems: list[str] | None = None) -> str:
    errors = ""
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        errors = f'<div role="alert" id="problems"><p>That password cannot be used:</p><ul>{items}</ul></div>'
    then = " Next you will add a second factor (an authenticator app or a security key)." if info.require_second_factor else ""
    return (f"<p>Choose the password of <strong>{html.escape(info.login)}</strong>. It is for signing in here; "
            f"your mail apps get app passwords of their own.{html.escape(then)}</p>{errors}"
            '<form method="post" autocomplete="on">'
            f'<input type="hidden" name="username" autocomplete="username" value="{html.escape(info.login)}">'
            '<p><label for="password">New password</label><br>'
            '<input id="password" name="password" type="password" autocomplete="new-password" required minlength="8" '
            'maxlength="1024" aria-describedby="password-help"></p>'
            '<p id="password-help">Four or more random words make a strong password.</p>'
            '<p><label for="confirm">The same password again</label><br>'
            '<input id="confirm" name="confirm" type="password" autocomplete="new-password" required maxlength="1024"></p>'
            '<p><button type="submit">Set my password</button></p></form>'
            f"<p>This link works once, until {html.escape(info.expires_at.strftime('%Y-%m-%d %H:%M'))} UTC.</p>")


def _refused(exc: OpError) -> HTMLResponse:
    return _page("This link cannot be used", f"<p>{html.escape(str(exc).capitalize())}.</p>"
                 "<p>Ask the person who sent it for a new invitation.</p>", 404 if exc.code == "invite-unknown" else 410)


async def _checked(request: Request, token: str) -> InviteInfo | HTMLResponse:
    ops, ip = operations(request), client_ip(request)
    if ip and await ops.runtime.guard.check_connection(ip) is not None:
        return _page("Not available", "<p>Too many failed attempts from your network; try again later.</p>", 403)
    try:
        return await run_in_threadpool(ops.onboarding.invitation, token[:200])
    except InviteInvalid as exc:
        if exc.code == "invite-unknown" and ip:
            await ops.runtime.guard.auth_failed(ip, GUARD_LOGIN)
        return _refused(exc)


@router.get("/invite/{token}")
async def invitation(request: Request, token: str) -> HTMLResponse:
    info = await _checked(request, token)
    return info if isinstance(info, HTMLResponse) else _page("Welcome", _form(info))


@router.post("/invite/{token}")
async def accept(request: Request, token: str) -> HTMLResponse:
    info = await _checked(request, token)
    if isinstance(info, HTMLResponse):
        return info
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return _page("Welcome", _form(info, ["the form is too large"]), 413)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    password, confirm = (form.get("password") or [""])[0], (form.get("confirm") or [""])[0]
    if password != confirm:
        return _page("Welcome", _form(info, ["the two passwords differ"]), 422)
    try:
        account = await run_in_threadpool(operations(request).onboarding.accept, token[:200], password,
                                          remote_ip=client_ip(request))
    except WeakPassword as exc:
        return _page("Welcome", _form(info, [*exc.reasons, exc.hint]), 422)
    except InviteInvalid as exc:
        return _refused(exc)
    then = ("<p>Next: add a second factor before anything else.</p>" if account.require_second_factor else "")
    return _page("Your password is set", f"<p>The account <strong>{html.escape(account.login)}</strong> is ready.</p>{then}"
                 "<p>Your mail apps use app passwords, one per app or device; the server settings are found "
                 "automatically from your address.</p>")
