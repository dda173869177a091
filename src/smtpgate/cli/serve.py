"""`smtpgate serve`: run the submission server in the foreground."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, handled_errors
from smtpgate.config import load_config


def serve(
    workers: Annotated[int, typer.Option(help="Processes sharing the listening sockets (default: number of cores).")] = 0,
    config: ConfigOption = None,
) -> None:
    """Run the SMTP submission server in the foreground; logs go to stderr, SIGTERM stops it."""
    from smtpgate.process import run_server

    with handled_errors():
        cfg = load_config(config)
        raise typer.Exit(run_server(cfg, workers=workers or os.cpu_count() or 1))


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
