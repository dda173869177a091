"""The API's interactive doc page, served from files in the package (no CDN: many
servers are offline). The page reads /api/v1/openapi.json and renders every route with
a form to try it; the token typed there stays in the page, never in a URL."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

router = APIRouter(prefix="/api/v1", include_in_schema=False)
ASSETS = {"docs.js": "text/javascript", "docs.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes:
    return resources.files("smtpgate.admin.api").joinpath("static", name).read_bytes()


@router.get("/docs")
def page() -> HTMLResponse:
    return HTMLResponse(_asset("docs.html"), headers=HEADERS)


@router.get("/docs/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, "no such asset")
    return Response(_asset(name), media_type=ASSETS[name], headers=HEADERS)
