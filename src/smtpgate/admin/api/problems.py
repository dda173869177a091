"""RFC 9457 problem details: the HTTP face's words for the core's error codes.

Every refusal answers `application/problem+json` with `type`, `title`, `status`,
`detail` and the stable `code`; a validation error also names the `field`. The core's
messages name no face; where a fix is worth saying, `hint` says it in HTTP terms.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from smtpgate.errors import Kind, OpError

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:smtpgate:problem:"

STATUS = {
    Kind.INVALID: 422, Kind.NOT_FOUND: 404, Kind.CONFLICT: 409, Kind.FORBIDDEN: 403,
    Kind.UNAUTHORIZED: 401, Kind.UNAVAILABLE: 503, Kind.FAILED: 502,
}
TITLES = {
    400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Request too large", 415: "Unsupported media type",
    422: "Invalid request", 500: "Internal error", 502: "Operation failed", 503: "Temporarily unavailable",
}
HINTS = {
    "account-not-found": "GET /api/v1/accounts lists the accounts.",
    "credential-not-found": "GET /api/v1/credentials lists the credentials.",
    "not-rotatable": "Change an account password with POST /api/v1/accounts/{login}/password.",
    "credential-ended": "Create a new one with POST /api/v1/accounts/{login}/app-passwords.",
    "service-account-not-found": "GET /api/v1/service-accounts lists them.",
    "message-not-found": "GET /api/v1/queue lists the queued messages.",
    "captured-message-not-found": "GET /api/v1/capture lists the captured messages.",
    "not-banned": "GET /api/v1/bans lists the bans in force.",
    "role-insufficient": "Use a token with a role that covers this operation.",
    "unauthorized": "Send Authorization: Bearer sga_... with a valid operator token.",
    "weak-password": "Or send \"generate\": true and smtpgate makes one.",
}
NO_STORE = {"Cache-Control": "no-store"}


def problem(status: int, code: str, detail: str, *, field: str | None = None, hint: str = "",
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code, "title": TITLES.get(status, "Error"), "status": status, "detail": detail, "code": code,
    }
    if field:
        body["field"] = field
    if hint:
        body["hint"] = hint
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers={**NO_STORE, **(headers or {})})


def from_error(exc: OpError) -> JSONResponse:
    status = STATUS[exc.kind]
    headers = {"WWW-Authenticate": 'Bearer realm="smtpgate"'} if status == 401 else None
    params = jsonable_encoder(exc.params, custom_encoder={Kind: str}) if exc.params else None
    return problem(status, exc.code, str(exc), field=exc.field, hint=HINTS.get(exc.code, exc.hint), headers=headers,
                   params=params, malformed=exc.malformed if status == 422 else None)


def _field(location: tuple[Any, ...]) -> str:
    """`body.allow_ip.0` -> `allow_ip`; `query.limit` -> `limit`."""
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Problem details for every error of the app, including the framework's own."""

    @app.exception_handler(OpError)
    async def op_error(request: Request, exc: OpError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return problem(422, "invalid-request", f"{first['field']}: {first['message']}", field=first["field"],
                       errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "no-such-route", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
