"""The REST API under /api/v1: thin routes over `smtpgate.ops` (docs/api.md).

Every route but the OpenAPI document and the doc page needs `Authorization: Bearer
sga_...`; what a role may do is decided by the operations layer, not here. Errors are
RFC 9457 problem details (`problems.py`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.security import HTTPBearer

from smtpgate.admin.api import (
    accounts,
    audit,
    credentials,
    docs,
    guard,
    incidents,
    keys,
    queue,
    service_accounts,
)
from smtpgate.admin.api.schemas import Problem

PREFIX = "/api/v1"
OPENAPI_URL = f"{PREFIX}/openapi.json"

_bearer = HTTPBearer(auto_error=False, bearerFormat="sga_ token", description="An operator API token.")


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {"application/problem+json": {}}}


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: _problem("No operator token, or not a valid one."),
    403: _problem("The token's role may not do this, or the source is banned."),
    404: _problem("What the path names does not exist."),
    409: _problem("It exists already, or its state forbids this."),
    502: _problem("The operation was tried and failed (a smarthost, a key file)."),
    422: _problem("The request is invalid; `field` names the input at fault."),
    503: _problem("A dependency (database, guard backend) is unreachable; try again."),
}

router = APIRouter(prefix=PREFIX, dependencies=[Depends(_bearer)], responses=PROBLEMS)
for _module in (accounts, credentials, service_accounts, guard, audit, queue, keys, incidents):
    router.include_router(_module.router)

public = docs.router
leak_reports = APIRouter(prefix=PREFIX)  # signed by the reporter, no operator token
leak_reports.include_router(incidents.leaks)
