"""The owners' pages: sign-in, Apps and devices, Sign-in activity, Alerts, Password,
Two-factor. Each route turns a form into one call on `ops.Operations.portal` and renders
what comes back; an `OpError` becomes a message on the same page.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from smtpgate.credentials.web_sessions import WebSession, WebSessions
from smtpgate.errors import Kind, OpError
from smtpgate.ops import Actor, Operations
from smtpgate.web import security as sec
from smtpgate.web.clients import CLIENTS, setup_for

router = APIRouter(include_in_schema=False)
templates = Environment(loader=PackageLoader("smtpgate.web", "templates"), autoescape=select_autoescape(default=True))
ASSETS = {"console.css": "text/css", "console.js": "text/javascript", "webauthn.js": "text/javascript"}
STATUS = {Kind.INVALID: 400, Kind.NOT_FOUND: 404, Kind.CONFLICT: 409, Kind.FORBIDDEN: 403, Kind.UNAUTHORIZED: 401,
          Kind.UNAVAILABLE: 503, Kind.FAILED: 502}
DONE = {  # messages after a redirect: chosen by key, never echoed from the URL
    "revoked": "The app password was revoked: nothing can sign in with it any more.",
    "removed": "The second factor was removed.",
    "signed-out": "You are signed out.",
    "password": "Your password was changed. Every browser was signed out: sign in with the new password.",
    "ended": "Your session ended. Sign in again.",
    "welcome": "Your password is set. Now make an app password for each mail app or device: the server settings are found from your address.",
    "incident-opened": "The incident is open: the credentials are revoked, their queued mail held, the sources banned.",
    "incident-closed": "The incident is closed.",
    "welcome-2fa": "Your password is set. Your account needs a second factor: add one now, before anything else.",
}


@dataclass
class Visit:
    """One request of a signed-in owner: the session, the actor and the CSRF token of its forms."""

    request: Request
    token: str
    session: WebSession
    actor: Actor
    csrf: str

    @property
    def ops(self) -> Operations:
        ops: Operations = self.request.app.state.ops
        return ops


def _ops(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(request=request, done=DONE.get(request.query_params.get("done", "")),
                                               **context)
    return sec.secure(HTMLResponse(html, status_code=status))


def redirect(url: str) -> Response:
    return sec.secure(RedirectResponse(url, status_code=303))


async def read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > sec.MAX_FORM:
        return {}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return {}


async def visit(request: Request) -> Visit | None:
    token = request.cookies.get(sec.SESSION_COOKIE, "")
    ops = _ops(request)
    session = await run_in_threadpool(ops.portal.session, token) if token else None
    if session is None or not session.complete:
        return None
    actor = Actor.owner(session.login, sec.client_ip(request))
    return Visit(request, token, session, actor, ops.portal.csrf_token(token))


def forbidden_csrf(request: Request) -> Response:
    return render(request, "error.html", 403, title="Form expired",
                  message="This form was not sent from this console (its security token is missing or old). "
                          "Go back, reload the page and send it again.")


Handler = Callable[[Visit, dict[str, str]], Awaitable[Response]]


async def signed_in_post(request: Request, handler: Handler) -> Response:
    """A signed-in form: the session and its CSRF token, then the handler."""
    current = await visit(request)
    if current is None:
        return redirect("/signin?done=ended")
    form = await read_form(request)
    if not sec_same(form.get(sec.CSRF_FIELD, ""), current.csrf):
        return forbidden_csrf(request)
    return await handler(current, form)


def sec_same(given: str, expected: str) -> bool:
    return WebSessions.same(given, expected)


def status_of(exc: OpError) -> int:
    return 429 if exc.code == "source-banned" else STATUS.get(exc.kind, 400)


# ----------------------------------------------------------------------- assets

@router.get("/static/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        return sec.secure(Response("no such file", status_code=404, media_type="text/plain"))
    data = resources.files("smtpgate.web").joinpath("static", name).read_bytes()
    response = sec.secure(Response(data, media_type=ASSETS[name]))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# ---------------------------------------------------------------------- sign-in

@router.get("/")
async def home(request: Request) -> Response:
    return redirect("/apps" if await visit(request) else "/signin")


def _signin_page(request: Request, status: int = 200, error: str = "", login: str = "") -> Response:
    nonce = request.cookies.get(sec.NONCE_COOKIE) or sec.new_nonce()
    response = render(request, "signin.html", status, title="Sign in", error=error, login=login,
                      csrf=_ops(request).portal.anonymous_csrf_token(nonce))
    sec.set_cookie(request, response, sec.NONCE_COOKIE, nonce)
    return response


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    if await visit(request):
        return redirect("/apps")
    return _signin_page(request)


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await read_form(request)
    nonce = request.cookies.get(sec.NONCE_COOKIE, "")
    if not nonce or not sec_same(form.get(sec.CSRF_FIELD, ""), _ops(request).portal.anonymous_csrf_token(nonce)):
        return forbidden_csrf(request)
    login = form.get("login", "").strip()
    try:
        signed = await _ops(request).portal.sign_in(login, form.get("password", ""), ip=sec.client_ip(request),
                                                    user_agent=request.headers.get("user-agent", ""))
    except OpError as exc:
        response = _signin_page(request, status_of(exc), str(exc), login)
        if exc.code == "source-banned":
            response.headers["Retry-After"] = str(exc.params.get("retry_after", 60))
        return response
    response = redirect("/apps" if signed.complete else "/signin/second-factor")
    sec.set_cookie(request, response, sec.SESSION_COOKIE, signed.token)
    return response


async def _pending(request: Request) -> tuple[str, WebSession] | None:
    token = request.cookies.get(sec.SESSION_COOKIE, "")
    session = await run_in_threadpool(_ops(request).portal.session, token) if token else None
    if session is None or session.complete:
        return None
    return token, session


@router.get("/signin/second-factor")
async def second_factor_form(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None:
        return redirect("/signin?done=ended")
    return _second_factor_page(request, pending[0])


def _second_factor_page(request: Request, token: str, status: int = 200, error: str = "") -> Response:
    return render(request, "second_factor.html", status, title="Second step", error=error,
                  csrf=_ops(request).portal.csrf_token(token), kinds=_ops(request).portal.second_factor_kinds(token))


@router.post("/signin/second-factor")
async def second_factor(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None:
        return redirect("/signin?done=ended")
    token = pending[0]
    form = await read_form(request)
    if not sec_same(form.get(sec.CSRF_FIELD, ""), _ops(request).portal.csrf_token(token)):
        return forbidden_csrf(request)
    method = form.get("method", "totp")
    try:
        signed = await _ops(request).portal.second_factor(token, method, form.get("code", ""),
                                                          ip=sec.client_ip(request))
    except OpError as exc:
        if exc.code == "session-ended":
            return redirect("/signin?done=ended")
        return _second_factor_page(request, token, status_of(exc), str(exc))
    response = redirect("/apps")
    sec.set_cookie(request, response, sec.SESSION_COOKIE, signed.token)
    return response


def _json_csrf(request: Request, token: str) -> bool:
    return sec_same(request.headers.get(sec.CSRF_HEADER, ""), _ops(request).portal.csrf_token(token))


async def _json_visit(request: Request) -> Visit | None:
    """The signed-in visit behind a script's request, its CSRF token in a header; None: sign in again."""
    v = await visit(request)
    return v if v is not None and sec_same(request.headers.get(sec.CSRF_HEADER, ""), v.csrf) else None


def _json_error(exc: OpError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "code": exc.code}, status_code=status_of(exc), headers=sec.HEADERS)


@router.post("/signin/webauthn/options")
async def signin_webauthn_options(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None or not _json_csrf(request, pending[0]):
        return JSONResponse({"error": "sign in again", "code": "session-ended"}, status_code=401, headers=sec.HEADERS)
    try:
        options = await run_in_threadpool(_ops(request).portal.webauthn_sign_in_options, pending[0], rp_id=sec.rp_id(request))
    except OpError as exc:
        return _json_error(exc)
    if options is None:
        return JSONResponse({"error": "this account has no security key", "code": "no-key"}, status_code=404,
                            headers=sec.HEADERS)
    return Response(options, media_type="application/json", headers=sec.HEADERS)


@router.post("/signin/webauthn")
async def signin_webauthn(request: Request) -> Response:
    pending = await _pending(request)
    if pending is None or not _json_csrf(request, pending[0]):
        return JSONResponse({"error": "sign in again", "code": "session-ended"}, status_code=401, headers=sec.HEADERS)
    body = (await request.body())[: sec.MAX_FORM].decode("utf-8", "replace")
    try:
        signed = await _ops(request).portal.second_factor(pending[0], "webauthn", body, ip=sec.client_ip(request),
                                                          rp_id=sec.rp_id(request), origin=sec.origin(request))
    except OpError as exc:
        return _json_error(exc)
    response = JSONResponse({"next": "/apps"}, headers=sec.HEADERS)
    sec.set_cookie(request, response, sec.SESSION_COOKIE, signed.token)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    async def end(v: Visit, form: dict[str, str]) -> Response:
        await run_in_threadpool(v.ops.portal.sign_out, v.token)
        response = redirect("/signin?done=signed-out")
        sec.clear_cookie(request, response, sec.SESSION_COOKIE)
        return response

    return await signed_in_post(request, end)


# ------------------------------------------------------------ apps and devices

def _page(v: Visit, name: str, status: int = 200, **context: Any) -> Response:
    return render(v.request, name, status, csrf=v.csrf, login=v.session.login, **context)


async def _apps_page(v: Visit, status: int = 200, error: str = "", form: dict[str, str] | None = None) -> Response:
    apps = await run_in_threadpool(v.ops.portal.apps, v.actor)
    return _page(v, "apps.html", status, title="Apps and devices", apps=apps, error=error, form=form or {},
                 clients=CLIENTS)


@router.get("/apps")
async def apps(request: Request) -> Response:
    v = await visit(request)
    if v is not None and await run_in_threadpool(v.ops.portal.needs_second_factor, v.actor):
        return redirect("/two-factor?done=welcome-2fa")   # the account's policy: a second factor before anything else
    return await _apps_page(v) if v else redirect("/signin")


def _secret_page(v: Visit, issued: Any, client: str) -> Response:
    config = v.request.app.state.runtime.config
    return _page(v, "secret.html", title="Your new app password", issued=issued, client=client,
                 setup=setup_for(config, client, v.session.login), clients=CLIENTS)


@router.post("/apps")
async def create_app(request: Request) -> Response:
    async def create(v: Visit, form: dict[str, str]) -> Response:
        try:
            issued = await run_in_threadpool(
                v.ops.portal.create_app, v.actor, form.get("name", ""), sender=form.get("sender", ""),
                network=form.get("network", ""), expires=form.get("expires", ""))
        except OpError as exc:
            return await _apps_page(v, status_of(exc), str(exc), form)
        return _secret_page(v, issued, form.get("client", "thunderbird"))

    return await signed_in_post(request, create)


@router.post("/apps/{credential_id}/rotate")
async def rotate_app(request: Request, credential_id: str) -> Response:
    async def rotate(v: Visit, form: dict[str, str]) -> Response:
        try:
            issued = await run_in_threadpool(v.ops.portal.rotate_app, v.actor, credential_id)
        except OpError as exc:
            return await _apps_page(v, status_of(exc), str(exc))
        return _secret_page(v, issued, form.get("client", "thunderbird"))

    return await signed_in_post(request, rotate)


@router.post("/apps/{credential_id}/revoke")
async def revoke_app(request: Request, credential_id: str) -> Response:
    async def revoke(v: Visit, form: dict[str, str]) -> Response:
        try:
            await run_in_threadpool(v.ops.portal.revoke_app, v.actor, credential_id)
        except OpError as exc:
            return await _apps_page(v, status_of(exc), str(exc))
        return redirect("/apps?done=revoked")

    return await signed_in_post(request, revoke)


# ------------------------------------------------------------ activity, alerts

@router.get("/activity")
async def activity(request: Request) -> Response:
    v = await visit(request)
    if v is None:
        return redirect("/signin")
    events = await run_in_threadpool(v.ops.portal.activity, v.actor)
    return _page(v, "activity.html", title="Sign-in activity", events=events)


@router.get("/alerts")
async def alerts(request: Request) -> Response:
    v = await visit(request)
    if v is None:
        return redirect("/signin")
    found = await run_in_threadpool(v.ops.portal.alerts, v.actor)
    return _page(v, "alerts.html", title="Alerts", alerts=found)


# ---------------------------------------------------------------------- password

async def _password_page(v: Visit, status: int = 200, **context: Any) -> Response:
    security = await run_in_threadpool(v.ops.portal.security, v.actor)
    return _page(v, "password.html", status, title="Password", two_factor=security.on, **context)


@router.get("/password")
async def password_form(request: Request) -> Response:
    v = await visit(request)
    return await _password_page(v) if v else redirect("/signin")


@router.post("/password")
async def change_password(request: Request) -> Response:
    async def change(v: Visit, form: dict[str, str]) -> Response:
        if form.get("new", "") != form.get("again", ""):
            return await _password_page(v, 400, error="The two new passwords are not the same.")
        try:
            await run_in_threadpool(v.ops.portal.change_password, v.actor, form.get("current", ""), form.get("new", ""))
        except OpError as exc:
            reasons = getattr(exc, "reasons", [])
            return await _password_page(v, status_of(exc), error=str(exc), reasons=reasons, hint=exc.hint)
        response = redirect("/signin?done=password")
        sec.clear_cookie(request, response, sec.SESSION_COOKIE)
        return response

    return await signed_in_post(request, change)


@router.post("/password/check")
async def check_password(request: Request) -> Response:
    """The live strength meter: the server's policy decides, the page only shows it."""
    v = await _json_visit(request)
    if v is None:
        return JSONResponse({"error": "sign in again"}, status_code=401, headers=sec.HEADERS)
    try:
        password = str(json.loads((await request.body())[: sec.MAX_FORM]).get("password", ""))
    except (ValueError, AttributeError):
        return JSONResponse({"error": "send {\"password\": ...}"}, status_code=400, headers=sec.HEADERS)
    score, reasons, hint = await run_in_threadpool(v.ops.portal.assess_password, v.actor, password)
    return JSONResponse({"score": score, "ok": not reasons, "reasons": reasons, "hint": hint}, headers=sec.HEADERS)


# -------------------------------------------------------------------- two-factor

async def _security_page(v: Visit, status: int = 200, error: str = "", **context: Any) -> Response:
    security = await run_in_threadpool(v.ops.portal.security, v.actor)
    return _page(v, "two_factor.html", status, title="Two-factor sign-in", security=security, error=error, **context)


@router.get("/two-factor")
async def two_factor(request: Request) -> Response:
    v = await visit(request)
    return await _security_page(v) if v else redirect("/signin")


def _qr_svg(uri: str) -> str:
    return str(segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", title="QR code for your authenticator app"))


@router.post("/two-factor/totp")
async def totp_begin(request: Request) -> Response:
    async def begin(v: Visit, form: dict[str, str]) -> Response:
        enrolment = await run_in_threadpool(v.ops.portal.totp_begin, v.actor)
        return _page(v, "totp.html", title="Set up an authenticator app", enrolment=enrolment,
                     qr=_qr_svg(enrolment.uri))

    return await signed_in_post(request, begin)


@router.post("/two-factor/totp/confirm")
async def totp_confirm(request: Request) -> Response:
    async def confirm(v: Visit, form: dict[str, str]) -> Response:
        try:
            factor_id = int(form.get("factor", "0"))
            done = await run_in_threadpool(v.ops.portal.totp_confirm, v.actor, factor_id, form.get("code", ""))
        except ValueError:
            return await _security_page(v, 400, "Start the set-up again.")
        except OpError as exc:
            return await _security_page(v, status_of(exc), str(exc))
        return await _security_page(v, codes=done.recovery_codes, added=done.factor.name)

    return await signed_in_post(request, confirm)


@router.post("/two-factor/webauthn/options")
async def webauthn_options(request: Request) -> Response:
    v = await _json_visit(request)
    if v is None:
        return JSONResponse({"error": "sign in again"}, status_code=401, headers=sec.HEADERS)
    options = await run_in_threadpool(v.ops.portal.webauthn_begin, v.actor, v.token, rp_id=sec.rp_id(request))
    return Response(options, media_type="application/json", headers=sec.HEADERS)


@router.post("/two-factor/webauthn")
async def webauthn_register(request: Request) -> Response:
    v = await _json_visit(request)
    if v is None:
        return JSONResponse({"error": "sign in again"}, status_code=401, headers=sec.HEADERS)
    try:
        body = json.loads((await request.body())[: sec.MAX_FORM])
        name, response = str(body.get("name", "")), json.dumps(body["credential"])
    except (ValueError, KeyError, AttributeError, TypeError):
        return JSONResponse({"error": "send {\"name\": ..., \"credential\": ...}"}, status_code=400, headers=sec.HEADERS)
    try:
        done = await run_in_threadpool(v.ops.portal.webauthn_finish, v.actor, v.token, name, response,
                                       rp_id=sec.rp_id(request), origin=sec.origin(request))
    except OpError as exc:
        return _json_error(exc)
    return JSONResponse({"added": done.factor.name, "codes": list(done.recovery_codes)}, headers=sec.HEADERS)


@router.post("/two-factor/{factor_id}/remove")
async def remove_factor(request: Request, factor_id: int) -> Response:
    async def remove(v: Visit, form: dict[str, str]) -> Response:
        try:
            await run_in_threadpool(v.ops.portal.remove_factor, v.actor, factor_id, password=form.get("password", ""),
                                    code=form.get("code", ""))
        except OpError as exc:
            return await _security_page(v, status_of(exc), str(exc))
        return redirect("/two-factor?done=removed")

    return await signed_in_post(request, remove)


@router.post("/two-factor/recovery-codes")
async def new_recovery_codes(request: Request) -> Response:
    async def regenerate(v: Visit, form: dict[str, str]) -> Response:
        try:
            codes = await run_in_threadpool(v.ops.portal.regenerate_recovery_codes, v.actor)
        except OpError as exc:
            return await _security_page(v, status_of(exc), str(exc))
        return await _security_page(v, codes=codes)

    return await signed_in_post(request, regenerate)
