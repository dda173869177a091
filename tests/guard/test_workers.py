"""The default setup, several workers: one guard for all of them, exact at every boundary.

A real `smtpgate serve --workers 3` with the backend `smtpgate init` chose, real clients
over TLS (STARTTLS on 587, implicit TLS on 465). Each test first spreads its connections
over at least two worker processes (found through /proc, see `tests/guard/workers.py`),
so a count kept per worker would let too much through and the test would fail.
"""

from __future__ import annotations

import os
import signal
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.guard.servers import client, eventually, guarded_config, message
from tests.guard.workers import children, spread
from tests.smtp.server_harness import RunningServer

LOGIN = "workers@example.com"
WORKERS = "3"


def serve(tmp_path: Path, *, guard: dict[str, str] | None = None, smtp: dict[str, str] | None = None) -> RunningServer:
    server = RunningServer(guarded_config(tmp_path / "data", backend=None, guard=guard, smtp=smtp))
    server.start("--workers", WORKERS)
    assert server.proc is not None
    eventually(lambda: len(children(server.proc.pid)), lambda n: n == int(WORKERS))
    return server


@pytest.fixture
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    server = serve(tmp_path, **getattr(request, "param", {}))
    try:
        yield server
    finally:
        server.close()


def parent(server: RunningServer) -> int:
    assert server.proc is not None
    return server.proc.pid


def starttls(server: RunningServer, source: str = "127.0.0.1") -> smtplib.SMTP:
    smtp = client(server, source)
    smtp.ehlo("client.test")
    return smtp


def implicit_tls(server: RunningServer, source: str) -> smtplib.SMTP:
    return smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, local_hostname="client.test", timeout=15,
                            source_address=(source, 0), context=server.client_context())


CLOSED_BEFORE_TLS = (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError, smtplib.SMTPServerDisconnected)


def patient(connect: Callable[[], smtplib.SMTP], timeout: float = 5.0) -> smtplib.SMTP:
    """Connect, waiting out a cap that a connection closed just before still holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect()
        except smtplib.SMTPConnectError as exc:
            if exc.smtp_code != 421 or time.monotonic() > deadline:
                raise
        except CLOSED_BEFORE_TLS:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def refused_at_connect(connect: Callable[[], smtplib.SMTP]) -> str:
    """`421 4.7.0` (refused with a reply), `closed` (465: refused before TLS, where no reply
    can be read), or `220`."""
    try:
        smtp = connect()
    except smtplib.SMTPConnectError as exc:
        return f"{exc.smtp_code} {exc.smtp_error.decode()[:5]}"
    except CLOSED_BEFORE_TLS:
        return "closed"
    smtp.close()
    return "220"


@pytest.mark.parametrize("running", [{"guard": {"ip_failures": "50"}}], indirect=True)
def test_a_quota_of_two_lets_exactly_two_of_six_through(running: RunningServer) -> None:
    secret = running.account_with_app_password(LOGIN, max_per_hour=2)

    def connect() -> smtplib.SMTP:
        smtp = starttls(running)
        smtp.login(LOGIN, secret)
        return smtp

    held = spread(parent(running), connect, 6, per_worker=3)
    answers = []
    for smtp, _pid in held:
        try:
            smtp.sendmail(LOGIN, ["bob@example.org"], message(LOGIN))
            answers.append(250)
        except smtplib.SMTPSenderRefused as exc:
            answers.append(exc.smtp_code)
        smtp.close()
    assert len({pid for _, pid in held}) >= 2
    assert answers == [250, 250, 451, 451, 451, 451]


def fail_auth(smtp: smtplib.SMTP) -> int:
    try:
        smtp.user, smtp.password = LOGIN, "not-the-password-at-all"
        smtp.auth("PLAIN", smtp.auth_plain)
        return 235
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code
    except smtplib.SMTPServerDisconnected:
        return 0
    finally:
        smtp.close()


@pytest.mark.parametrize("running", [{"guard": {"ip_failures": "4"}}], indirect=True)
def test_failures_on_different_workers_ban_at_exactly_the_threshold(running: RunningServer) -> None:
    running.account_with_app_password(LOGIN)
    attacker = "127.0.0.30"
    held = spread(parent(running), lambda: starttls(running, attacker), 4, per_worker=2)
    assert len({pid for _, pid in held[:3]}) >= 2
    assert [fail_auth(smtp) for smtp, _ in held[:3]] == [535, 535, 535]
    assert refused_at_connect(lambda: starttls(running, attacker)) == "220"  # three: not yet
    assert fail_auth(held[3][0]) == 535  # the fourth, on whichever worker, bans
    for _ in range(4):
        assert refused_at_connect(lambda: starttls(running, attacker)) == "421 4.7.0"
    assert refused_at_connect(lambda: starttls(running, "127.0.0.31")) == "220"


@pytest.mark.parametrize("running", [{"smtp": {"max_connections_per_ip": "3"}}], indirect=True)
def test_the_per_address_cap_holds_across_workers(running: RunningServer) -> None:
    source = "127.0.0.40"
    held = spread(parent(running), lambda: patient(lambda: starttls(running, source)), 3, per_worker=2)
    assert len({pid for _, pid in held}) >= 2
    time.sleep(0.5)  # the extra connections `spread` closed are gone from the server too
    for _ in range(4):
        assert refused_at_connect(lambda: starttls(running, source)) == "421 4.7.0"
        assert refused_at_connect(lambda: implicit_tls(running, source)) == "closed"  # before the handshake
    assert refused_at_connect(lambda: starttls(running, "127.0.0.41")) == "220"
    held[0][0].close()
    assert refused_at_connect(lambda: patient(lambda: implicit_tls(running, source))) == "220"
    for smtp, _ in held[1:]:
        smtp.close()


@pytest.mark.parametrize("running", [{"smtp": {"max_connections": "4"}}], indirect=True)
def test_the_total_cap_holds_across_workers(running: RunningServer) -> None:
    secret = running.account_with_app_password(LOGIN)
    sources = iter(f"127.0.0.{n}" for n in range(50, 130))

    def connect() -> smtplib.SMTP:  # authenticated: the server may shed idle unauthenticated ones
        smtp = patient(lambda: starttls(running, next(sources)))
        smtp.login(LOGIN, secret)
        return smtp

    held = spread(parent(running), connect, 4, per_worker=3)
    assert len({pid for _, pid in held}) >= 2
    time.sleep(0.5)
    for n in range(6):
        assert refused_at_connect(lambda: starttls(running, f"127.0.1.{n}")) == "421 4.7.0"
    for smtp, _ in held:
        smtp.close()


@pytest.mark.parametrize("running", [{"smtp": {"max_connections_per_ip": "3"}}], indirect=True)
def test_a_killed_worker_gives_its_slots_back(running: RunningServer) -> None:
    source = "127.0.0.70"
    held = spread(parent(running), lambda: patient(lambda: starttls(running, source)), 3, per_worker=2)
    time.sleep(0.5)
    assert refused_at_connect(lambda: starttls(running, source)) == "421 4.7.0"
    victim = held[0][1]
    freed = sum(1 for _, pid in held if pid == victim)
    os.kill(victim, signal.SIGKILL)
    again = [patient(lambda: starttls(running, source), timeout=10) for _ in range(freed)]
    assert refused_at_connect(lambda: starttls(running, source)) == "421 4.7.0"  # exactly `freed` came back
    for smtp in again:
        smtp.close()
    for smtp, pid in held:
        if pid != victim:
            smtp.close()
