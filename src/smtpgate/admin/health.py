"""/healthz: ready only when what this node needs answers, for a load balancer's health check.

HAProxy (`option httpchk`, docs/proxy-protocol.md) takes a node out of rotation on anything
but a 200, so the answer is 503 when the database does not answer, when Redis does not
(with `[guard] backend = "redis"`: every connection asks it), or while the node drains
after SIGTERM. The body names what failed; the reason goes to the log only, since the
endpoint is public and a driver's message names hosts and ports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from smtpgate import __version__
from smtpgate.runtime import Runtime

log = logging.getLogger("smtpgate.admin")
router = APIRouter()
PROBE_TIMEOUT = 3.0  # under HAProxy's `timeout check`: a hung database is a failed check, not a hung one


async def _database(runtime: Runtime) -> None:
    await asyncio.to_thread(runtime.store.ping)


async def _redis(runtime: Runtime) -> None:
    await runtime.guard.backend.lookup([], None, now=time.time())


async def _answers(name: str, probe: Callable[[], Awaitable[None]]) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await probe()
        return True
    except Exception as exc:  # noqa: BLE001 - whatever fails, the node is not ready
        reason = str(exc).splitlines()[0] if str(exc) else ""
        log.warning("health check: the %s does not answer: %s: %s", name, type(exc).__name__, reason[:200])
        return False


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    probes: dict[str, Callable[[], Awaitable[None]]] = {"database": lambda: _database(runtime)}
    if runtime.config.guard.backend == "redis":
        probes["redis"] = lambda: _redis(runtime)
    names = list(probes)
    answers = await asyncio.gather(*(_answers(name, probes[name]) for name in names))
    checks = {name: "ok" if ok else "unavailable" for name, ok in zip(names, answers, strict=True)}
    draining: Callable[[], bool] | None = getattr(request.app.state, "draining", None)
    if draining is not None and draining():
        checks["smtp"] = "draining"
    failed = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, object] = {"status": "unavailable" if failed else "ok", "version": __version__, "checks": checks}
    if failed:
        body["failed"] = failed
    return JSONResponse(body, status_code=503 if failed else 200)
