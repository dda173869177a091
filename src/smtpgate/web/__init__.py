"""The web console: server-rendered pages on the admin listener for account owners
(docs/web.md). A face like the REST API: it calls `smtpgate.ops`, never the store.

Pages are Jinja2 templates; CSS and the little JavaScript (copy button, password
strength, the WebAuthn ceremonies) are files of this package, served from /static/, so
the Content-Security-Policy needs no 'unsafe-inline' and no CDN is ever asked. Every form
works without JavaScript, except the security key, which is JavaScript by nature.
"""

from smtpgate.web import console, console_incidents, invite
from smtpgate.web.pages import router

router.include_router(invite.router)
router.include_router(console.router)
router.include_router(console_incidents.router)

__all__ = ["router"]
