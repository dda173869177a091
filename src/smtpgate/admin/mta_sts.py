"""GET /.well-known/mta-sts.txt: the MTA-STS policy (RFC 8461) of `[deliverability.mta_sts]`.

Senders fetch it from https://mta-sts.<domain>/; put the admin listener behind the HTTPS
proxy that answers for those names. 404 when no policy is configured.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from smtpgate.deliverability.records import mta_sts_policy

router = APIRouter()


@router.get("/.well-known/mta-sts.txt", include_in_schema=False)
def policy(request: Request) -> PlainTextResponse:
    text = mta_sts_policy(request.app.state.runtime.config)
    if not text:
        return PlainTextResponse("no MTA-STS policy is configured here ([deliverability.mta_sts] mx)\n", status_code=404)
    return PlainTextResponse(text, headers={"Cache-Control": "max-age=300"})
