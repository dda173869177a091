"""A revocation made with the CLI is refused on the next AUTH, whichever worker takes it.

Each worker process keeps its own credential cache; the CLI is a third process. The real
server runs with two workers; both are made to cache the app password first, then the CLI
revokes it and each worker must refuse it. Which worker accepts a connection is the
kernel's choice (an idle worker may take every one), so the test chooses: the other
worker is paused (SIGSTOP) while a login is sent, and only the running one can accept it.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli.conftest import Cli
from tests.smtp.server_harness import RunningServer, init_data_dir


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


def worker_pids(running: RunningServer, timeout: float = 30) -> list[int]:
    """The two workers, once each has said it listens (the parent binds the ports before them)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sorted({int(pid) for pid in re.findall(r"\[(\d+)\] smtpgate\.server: listening on", running.log())})
        if len(pids) == 2 or time.monotonic() > deadline:
            assert len(pids) == 2, running.log()
            return pids
        time.sleep(0.1)


@contextmanager
def only(pid: int, others: list[int]) -> Iterator[None]:
    """Every worker but `pid` paused: the connection can only be accepted by `pid`."""
    for other in others:
        if other != pid:
            os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            if other != pid:
                os.kill(other, signal.SIGCONT)


def test_a_cli_revocation_is_refused_on_the_next_auth_on_every_worker(tmp_path: Path) -> None:
    running = RunningServer(init_data_dir(tmp_path / "data"))
    running.start("--workers", "2", env={"SMTPGATE_LOG_LEVEL": "DEBUG"})
    try:
        account = "workers@example.com"
        secret = running.account_with_app_password(account)
        credential = running.credentials.list_credentials(account=account)[-1].id
        pids = worker_pids(running)
        for pid in pids:
            with only(pid, pids):
                assert login(running, account, secret) == 235
        cached = workers_logging(running, f"auth ok login={account} credential={credential}")
        assert cached == {str(pid) for pid in pids}, "both workers must have answered (and cached) a login"

        Cli(running.config_path).ok("creds", "revoke", credential)

        for pid in pids:
            with only(pid, pids):
                assert login(running, account, secret) == 535  # never once admitted after the revoke
        refused = workers_logging(running, f"auth failed login={account} credential={credential} .*reason=revoked")
        assert refused == cached
    finally:
        running.close()
