"""`/metrics` on the admin listener: the text exposition of every worker's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from smtpgate.metrics import exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
