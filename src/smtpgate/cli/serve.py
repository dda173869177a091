"""`smtpgate serve`: run the submission server in the foreground."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, handled_errors
from smtpgate.config import load_config


def serve(
    workers: Annotated[int, typer.Option(help="Processes sharing the listening sockets (default: number of cores).", show_default=False)] = 0,
    port: Annotated[int | None, typer.Option("--port", help="Submission (STARTTLS) port, instead of the config's.",
                                             show_default=False)] = None,
    tls_port: Annotated[int | None, typer.Option("--tls-port", help="Implicit-TLS port, instead of the config's.",
                                                 show_default=False)] = None,
    admin_port: Annotated[int | None, typer.Option("--admin-port", help="Admin HTTP port, instead of the config's.",
                                                   show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Run the SMTP submission server in the foreground; logs go to stderr, SIGTERM stops it."""
    from smtpgate.process import run_server

    with handled_errors():
        cfg = load_config(config).with_ports(submission=port, submissions=tls_port, admin=admin_port)
        raise typer.Exit(run_server(cfg, workers=workers or os.cpu_count() or 1))


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
