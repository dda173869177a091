"""`smtpgate --api URL ...`: the same commands, run on a remote server through its REST API.

The commands stay as they are: `common.operations()` hands them `ops.remote.RemoteOperations`
instead of the local operations layer, and the refusals come back as the same errors, so
the output and exit codes are the same. A command that only makes sense on the server
itself (serve, init, backup, doctor, send...) says so and exits 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from smtpgate.cli import common
from smtpgate.cli.common import USAGE, fail

TOKEN_ENV = "SMTPGATE_API_TOKEN"
REMOTE_COMMANDS = ("account", "app-password", "creds", "ban", "audit", "queue")


@dataclass(frozen=True)
class Remote:
    url: str
    token: str


def choose(url: str | None, token_file: Path | None, command: str | None) -> None:
    """Called by the root command before any subcommand when --api is given: remote mode for this run
    (`common.remote_api`, which `common.operations()` reads)."""
    if url is None:
        if token_file is not None:
            fail("--api-token-file needs --api URL", code=USAGE)
        return
    if command is not None and command not in REMOTE_COMMANDS:
        fail(f"`smtpgate {command}` runs on the server itself; it has no --api mode",
             f"Through --api: {', '.join(REMOTE_COMMANDS)}.", code=USAGE)
    if not url.startswith(("http://", "https://")):
        fail(f"--api {url!r}: expected a URL such as https://mail.example.com:8025", code=USAGE)
    common.remote_api = Remote(url, _token(token_file))


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--api-token-file {token_file}: {exc.strerror if isinstance(exc, OSError) else exc}", code=USAGE)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        fail(f"--api needs an operator token: set ${TOKEN_ENV} or give --api-token-file FILE",
             "An admin makes one on the server: smtpgate api-token create NAME --role operator", code=USAGE)
    return token
