"""`/metrics` on the admin listener: the text exposition of every worker's metrics.

Public by default (a scraper on the same machine); with `[admin] metrics_token_required`
it asks for an operator token of any role, checked and counted like every API token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from smtpgate.admin.api.auth import actor
from smtpgate.metrics import exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    if request.app.state.runtime.config.admin.metrics_token_required:
        await actor(request)  # 401 without a valid token, 403 from a banned source
    return Response(await run_in_threadpool(exposition), media_type=CONTENT_TYPE_LATEST)
