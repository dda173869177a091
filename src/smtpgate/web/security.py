"""What every page of the console answers with: security headers, cookies, CSRF checks.

The CSRF token of a signed-in browser is tied to its session (credentials.web_sessions);
before sign-in, to a random cookie of its own. Both are checked on every POST, together
with SameSite=Strict cookies: either alone would already stop a cross-site form.
"""

from __future__ import annotations

import secrets
from typing import TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from smtpgate.admin.oauth import _ip

R = TypeVar("R", bound=Response)
SESSION_COOKIE = "sg_session"
NONCE_COOKIE = "sg_form"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM = 64 * 1024

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def client_ip(request: Request) -> str:
    """The peer's address, or X-Forwarded-For's from a trusted proxy (as the token endpoint)."""
    return _ip(request)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.app.state.runtime.config.web.public_url.startswith("https://")


def origin(request: Request) -> str:
    """The origin the browser is on, as WebAuthn checks it."""
    public = request.app.state.runtime.config.web.public_url
    if public:
        parts = urlsplit(public)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def rp_id(request: Request) -> str:
    """The WebAuthn relying party: [web] rp_id, else the console's host name."""
    configured = request.app.state.runtime.config.web.rp_id
    return configured or (urlsplit(origin(request)).hostname or "localhost")


def secure(response: R) -> R:
    response.headers.update(HEADERS)
    return response


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=is_https(request), path="/")


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, httponly=True, samesite="strict", secure=is_https(request), path="/")


def new_nonce() -> str:
    return secrets.token_urlsafe(24)
