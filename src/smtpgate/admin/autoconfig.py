"""Client auto-configuration on the admin listener (public): Thunderbird's autoconfig and Outlook's autodiscover.

Clients fetch these as `https://autoconfig.<domain>/...` and `https://autodiscover.<domain>/...`
(docs/autoconfig.md says which DNS names to point here). Without `[autoconfig] incoming`, or
for an address of a domain not served, the answer is a 404 problem and the client goes on
to its other ways of finding a server.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from smtpgate.autoconfig import settings_from
from smtpgate.autoconfig import autodiscover as pox
from smtpgate.autoconfig.thunderbird import config_v11

router = APIRouter(include_in_schema=False)
XML = "application/xml; charset=utf-8"
CACHE = {"Cache-Control": "max-age=300"}


def _thunderbird(request: Request, emailaddress: str | None) -> Response:
    settings = settings_from(request.app.state.runtime.config)
    if emailaddress:
        _, domain = settings.check_address(emailaddress)
    else:  # asked without the address: the name it was asked under says the domain
        domain = settings.domain_for_host(request.headers.get("host", ""))
    return Response(config_v11(settings, domain), media_type=XML, headers=CACHE)


Address = Annotated[str | None, Query(max_length=320)]


@router.get("/.well-known/autoconfig/mail/config-v1.1.xml")
def well_known(request: Request, emailaddress: Address = None) -> Response:
    return _thunderbird(request, emailaddress)


@router.get("/mail/config-v1.1.xml")
def autoconfig_host(request: Request, emailaddress: Address = None) -> Response:
    return _thunderbird(request, emailaddress)


async def _autodiscover(request: Request) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > pox.MAX_REQUEST:
            break
    address = pox.requested_address(body)
    settings = settings_from(request.app.state.runtime.config)
    address, _ = settings.check_address(address)
    return Response(pox.response(settings, address), media_type=XML, headers={"Cache-Control": "no-store"})


for _path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
    router.add_api_route(_path, _autodiscover, methods=["POST"])
