"""A revocation made with the CLI is refused on the next AUTH, whichever worker takes it.

Each worker process keeps its own credential cache; the CLI is a third process. The real
server runs with two workers, both are made to cache the app password first (the log says
which worker answered each login), then the CLI revokes it and every later AUTH must
fail, until both workers have been seen refusing it.
"""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

from tests.cli.conftest import Cli
from tests.smtp.server_harness import RunningServer, init_data_dir

ATTEMPTS = 80  # logins are spread over the workers by the kernel; enough to meet both


def login(running: RunningServer, login: str, secret: str) -> int:
    with smtplib.SMTP("127.0.0.1", running.submission_port, timeout=20) as client:
        client.starttls(context=running.client_context())
        try:
            code, _ = client.login(login, secret)
        except smtplib.SMTPAuthenticationError as exc:
            code = exc.smtp_code
        return code


def workers_logging(running: RunningServer, pattern: str) -> set[str]:
    return set(re.findall(r"\[(\d+)\] smtpgate\.session: " + pattern, running.log()))


def test_a_cli_revocation_is_refused_on_the_next_auth_on_every_worker(tmp_path: Path) -> None:
    running = RunningServer(init_data_dir(tmp_path / "data"))
    running.start("--workers", "2", env={"SMTPGATE_LOG_LEVEL": "DEBUG"})
    try:
        account = "workers@example.com"
        secret = running.account_with_app_password(account)
        credential = running.credentials.list_credentials(account=account)[-1].id
        cached: set[str] = set()
        for _ in range(ATTEMPTS):
            assert login(running, account, secret) == 235
            cached = workers_logging(running, f"auth ok login={account} credential={credential}")
            if len(cached) == 2:
                break
        assert len(cached) == 2, "both workers must have answered (and cached) a login"

        Cli(running.config_path).ok("creds", "revoke", credential)

        refused: set[str] = set()
        for _ in range(ATTEMPTS):
            assert login(running, account, secret) == 535  # never once admitted after the revoke
            refused = workers_logging(running, f"auth failed login={account} credential={credential} .*reason=revoked")
            if refused == cached:
                break
        assert refused == cached
    finally:
        running.close()
