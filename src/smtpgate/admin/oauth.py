"""The built-in issuer's HTTP face: `POST /oauth/token` and `GET /.well-known/jwks.json`.

RFC 6749 section 4.4 (client credentials) only: a service account authenticates with
HTTP Basic or with `client_id` and `client_secret` in the form body (section 2.3.1, not
both), and gets a JWT access token; errors are section 5.2 JSON bodies. The body is
parsed with the standard library because it is one small urlencoded form and the check
for repeated parameters (section 3.2) needs the raw pairs, which form helpers hide.

Client authentication is a login like SMTP AUTH: a banned source is refused (429), every
failure is counted by the guard (so guessing bans the source) and audited, every success
audited. The client's address is the peer's, or, when the peer is one of
`[admin] trusted_proxies`, the last X-Forwarded-For hop that is not a trusted proxy.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import time
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from smtpgate.audit import events as ev
from smtpgate.audit.events import AuditEvent
from smtpgate.credentials.redaction import redact_login
from smtpgate.credentials.tokens import TokenError
from smtpgate.errors import Unavailable as StoreUnavailable  # the store's, or any dependency's
from smtpgate.guard import Refusal

log = logging.getLogger("smtpgate.admin")
router = APIRouter()

MAX_BODY = 8192
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(status: int, error: str, description: str, *, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="smtpgate", charset="UTF-8"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """client_id and client_secret from `Authorization: Basic` (each form-urlencoded, 2.3.1)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


@router.post("/oauth/token", include_in_schema=False)
async def token(request: Request) -> JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _error(400, "invalid_request", "send the parameters as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(400, "invalid_request", "request body too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return _error(400, "invalid_request", "the body is not a valid urlencoded form")
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return _error(400, "invalid_request", f"parameter {name!r} appears more than once")
        params[name] = value

    authorization = request.headers.get("authorization")
    basic = _basic_credentials(authorization) if authorization else None
    if authorization and basic is None:
        return _error(401, "invalid_client", "malformed Authorization header", basic=True)
    if basic is not None and ("client_secret" in params or "client_id" in params and params["client_id"] != basic[0]):
        return _error(400, "invalid_request", "use one client authentication method, not two")
    client_id, client_secret = basic if basic is not None else (params.get("client_id", ""), params.get("client_secret", ""))
    if not client_id or not client_secret:
        return _error(401, "invalid_client", "client authentication required (HTTP Basic or client_id and client_secret)",
                      basic=True)

    grant_type = params.get("grant_type")
    if not grant_type:
        return _error(400, "invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        return _error(400, "unsupported_grant_type", "only the client_credentials grant is supported")

    runtime = request.app.state.runtime
    ip, shown = _ip(request), redact_login(client_id)
    refusal = await runtime.guard.before_auth(ip, shown, guessable=False)  # client secrets cannot be guessed
    if isinstance(refusal, Refusal):
        log.info("token request refused client_id=%s ip=%s: source banned", shown, ip)
        _audit(runtime, ev.FAIL, ev.BANNED, ip, client_id)
        retry = max(1, math.ceil(refusal.ban.until - time.time())) if refusal.ban is not None else 60
        response = _error(429, "temporarily_unavailable", "too many failed client authentications from your address")
        response.headers["Retry-After"] = str(retry)
        return response
    try:
        issued = await run_in_threadpool(runtime.tokens.client_credentials, client_id, client_secret, params.get("scope"))
    except TokenError as exc:
        if exc.error == "invalid_client":
            log.info("token request refused client_id=%s ip=%s: invalid client", shown, ip)
            outcome = await runtime.guard.auth_failed(ip, shown)
            details = {"source_failures": outcome.ip_failures} if outcome.ip_failures else {}
            if outcome.new_bans:
                details["bans"] = [b.network for b in outcome.new_bans]
            _audit(runtime, ev.FAIL, ev.INVALID_CLIENT, ip, client_id, details)
            return _error(401, "invalid_client", "client authentication failed", basic=basic is not None)
        _audit(runtime, ev.FAIL, exc.error.replace("_", "-"), ip, client_id)
        return _error(400, exc.error, str(exc))
    except StoreUnavailable:
        _audit(runtime, ev.FAIL, ev.STORE_UNAVAILABLE, ip, client_id)
        return _error(503, "temporarily_unavailable", "the credential store is unreachable; try again later")
    _audit(runtime, ev.OK, "", ip, client_id)
    body_json: dict[str, Any] = issued.to_json()
    return JSONResponse(body_json, headers=_NO_STORE)


def _audit(runtime: Any, result: str, reason: str, ip: str, client_id: str, details: dict[str, object] | None = None) -> None:
    """The token endpoint's client authentications go to the audit like SMTP AUTH (listener `admin`)."""
    runtime.audit.record(AuditEvent(
        kind=ev.AUTH, result=result, reason=reason, listener="admin", remote_ip=ip,
        mechanism="client_credentials", login=client_id, details=details or {},
    ))


@router.get("/.well-known/jwks.json", include_in_schema=False)
async def jwks(request: Request) -> JSONResponse:
    keys = await run_in_threadpool(request.app.state.runtime.tokens.jwks)
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})


def _ip(request: Request) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy (then X-Forwarded-For)."""
    peer = request.client.host if request.client else "-"
    trusted = _trusted(tuple(request.app.state.runtime.config.admin.trusted_proxies))
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):  # right to left: each hop was appended by the proxy after it
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # a hop we cannot read: believe nothing further left
        if not _within(address, trusted):
            return address
    return peer


_NETWORKS: dict[tuple[str, ...], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = {}


def _trusted(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if cidrs not in _NETWORKS:
        _NETWORKS[cidrs] = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)
    return _NETWORKS[cidrs]


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)
