"""`Authorization: Bearer sga_...`: the operator token becomes the request's Actor.

A failed token counts in the guard like a failed SMTP login, against the source that
sent it (so a guessing source is banned, whatever network the token belongs to), and
is written to the audit as an `auth` failure on the `api` listener. A banned source is
refused before its token is even looked at.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from smtpgate.audit.events import AUTH, FAIL, AuditEvent
from smtpgate.errors import Forbidden, Unauthorized
from smtpgate.ops import Actor, Operations

log = logging.getLogger("smtpgate.admin")
GUARD_LOGIN = "-api-"  # the guard's login counter for API failures: never a real login


def operations(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


async def actor(request: Request) -> Actor:
    """The dependency every /api/v1 route but the OpenAPI document has."""
    ops = operations(request)
    ip = client_ip(request)
    guard = ops.runtime.guard
    if ip and await guard.check_connection(ip) is not None:
        raise Forbidden("this source is banned", code="source-banned")
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise Unauthorized("an operator token is required", code="unauthorized")
    if scheme.lower() != "bearer" or not secret.strip():
        await _failed(ops, ip, "token-malformed")
        raise Unauthorized("use Authorization: Bearer with an operator token", code="unauthorized")
    token, reason = await run_in_threadpool(ops.runtime.credentials.api_tokens.check, secret.strip(), ip)
    if token is None:
        await _failed(ops, ip, reason)
        raise Unauthorized("the operator token is not valid", code="unauthorized")
    return Actor.api(token, ip)


async def _failed(ops: Operations, ip: str, reason: str) -> None:
    log.info("API token refused from %s: %s", ip or "-", reason)
    try:
        ops.runtime.audit.record(AuditEvent(kind=AUTH, result=FAIL, reason=reason, listener="api", remote_ip=ip,
                                            mechanism="bearer"))
    except Exception as exc:  # noqa: BLE001 - a full audit queue must not turn a 401 into a 500
        log.warning("audit event for a refused API token not recorded: %s", type(exc).__name__)
    if ip:
        await ops.runtime.guard.auth_failed(ip, GUARD_LOGIN)
