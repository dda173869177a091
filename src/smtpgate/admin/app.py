"""The admin HTTP application and the way a worker serves it on the shared socket."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import socket

from fastapi import FastAPI

import smtpgate.admin as package
from smtpgate import __version__
from smtpgate.runtime import Runtime

log = logging.getLogger("smtpgate.admin")


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="smtpgate admin", version=__version__, docs_url=None, redoc_url=None)
    app.state.runtime = runtime

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name in {"app"}:
            continue
        loaded = importlib.import_module(f"smtpgate.admin.{module.name}")
        router = getattr(loaded, "router", None)
        if router is not None:
            app.include_router(router)
        setup = getattr(loaded, "setup", None)
        if setup is not None:
            setup(app, runtime)
    return app


async def serve_admin(runtime: Runtime, sock: socket.socket) -> None:
    """Serve the admin app on an already bound socket until cancelled."""
    import uvicorn

    # proxy_headers off: uvicorn would believe X-Forwarded-For from loopback; the token
    # endpoint believes it only from [admin] trusted_proxies (admin/oauth.py)
    # log_config None: uvicorn's loggers go through ours (smtpgate.logformat), escaped like every line
    config = uvicorn.Config(create_app(runtime), log_level="warning", access_log=False, lifespan="off",
                            proxy_headers=False, log_config=None)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the SMTP server owns signals
    await server.serve(sockets=[sock])
