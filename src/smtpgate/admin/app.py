"""The admin HTTP application and the way a worker serves it on the shared socket.

Routers are listed here, not discovered: what the listener serves is written in one
place. Public: /healthz, /.well-known/jwks.json, /oauth/token, /api/v1/openapi.json and
the API's doc page, /api/v1/leaks (signed by the reporter instead), client auto-configuration
(autoconfig, autodiscover); /metrics when `[admin] metrics_token_required` is off. Everything
else under /api/v1 needs an operator token.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from fastapi import FastAPI, Response

from smtpgate import __version__
from smtpgate.admin import autoconfig, health, metrics, mta_sts, oauth
from smtpgate.admin.api import OPENAPI_URL, openapi, problems
from smtpgate.admin.api import leak_reports
from smtpgate.admin.api import public as api_docs
from smtpgate.admin.api import router as api
from smtpgate.ops import Operations
from smtpgate.runtime import Runtime
from smtpgate.web import router as web_console

log = logging.getLogger("smtpgate.admin")

ROUTERS = (health.router, metrics.router, mta_sts.router, oauth.router, api, api_docs, leak_reports, autoconfig.router,
           web_console)


def create_app(runtime: Runtime, *, draining: Callable[[], bool] | None = None) -> FastAPI:
    """`draining`: true once SMTP stops accepting (SIGTERM), so /healthz sends the balancer elsewhere."""
    app = FastAPI(
        title="smtpgate", version=__version__, docs_url=None, redoc_url=None, openapi_url=OPENAPI_URL,
        description="The operator API of smtpgate: accounts, credentials, bans, audit, queue (docs/api.md).",
    )
    app.state.runtime = runtime
    app.state.ops = Operations(runtime)
    app.state.draining = draining
    problems.install(app)
    openapi.install(app)

    for router in ROUTERS:
        app.include_router(router)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """Browsers ask every site for one: no icon, but no 404 in their console either."""
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    return app


async def serve_admin(runtime: Runtime, sock: socket.socket, *, draining: Callable[[], bool] | None = None,
                      tls: ssl.SSLContext | None = None) -> None:
    """Serve the admin app on an already bound socket until cancelled; over TLS with `tls`.

    The context comes from the server process (the SMTP side's strict one, reloaded on
    SIGHUP), not from uvicorn's own options, which would allow TLS 1.0 and any cipher.
    """
    import uvicorn

    # proxy_headers off: uvicorn would believe X-Forwarded-For from loopback; the token
    # endpoint believes it only from [admin] trusted_proxies (admin/oauth.py)
    # log_config None: uvicorn's loggers go through ours (smtpgate.logformat), escaped like every line
    config = uvicorn.Config(create_app(runtime, draining=draining), log_level="warning", access_log=False, lifespan="off",
                            proxy_headers=False, log_config=None)
    config.load()
    config.ssl = tls  # read by Server.startup when it wraps the socket; the request scheme follows
    server = uvicorn.Server(config)
    # The SMTP server owns signals: uvicorn must not stop the admin listener on SIGTERM, since
    # /healthz answers "draining" to the load balancer until the sessions in flight are done.
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined,method-assign]  # uvicorn before 0.29
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # uvicorn 0.29 and later
    await server.serve(sockets=[sock])
