"""Two `smtpgate serve` processes on different ports, one Redis and one PostgreSQL: one guard.

What one server counts, the other sees: failures add up to one ban in both, a quota is
taken from one pool, the per-address connection cap holds over both (and a killed
server's slots come back once its lease runs out), and an operator's `smtpgate ban add`
holds on both at once.
"""

from __future__ import annotations

import shutil
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.guard.servers import client, guarded_config, message, set_section
from tests.smtp.server_harness import RunningServer, free_port

LOGIN = "shared@example.com"


def two_servers(tmp_path: Path, redis_prefix: str, database_url: str,
                smtp: dict[str, str] | None = None) -> tuple[RunningServer, RunningServer]:
    first_config = guarded_config(
        tmp_path / "a", backend="redis", redis_prefix=redis_prefix, database_url=database_url,
        guard={"ip_failures": "6"}, smtp=smtp,
    )
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same keys, the same database and Redis
    second_config = tmp_path / "b" / "smtpgate.toml"
    set_section(second_config, "smtp", {"submission": f'"127.0.0.1:{free_port()}"', "submissions": f'"127.0.0.1:{free_port()}"'})
    set_section(second_config, "admin", {"listen": f'"127.0.0.1:{free_port()}"'})
    return RunningServer(first_config), RunningServer(second_config)


@pytest.fixture
def pair(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str,
         pg_schema_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    servers = two_servers(tmp_path, redis_prefix, pg_schema_url, getattr(request, "param", None))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


def fail_auth(server: RunningServer, source: str) -> str:
    try:
        smtp = client(server, source)
    except smtplib.SMTPConnectError as exc:
        return f"{exc.smtp_code} at connect"
    try:
        smtp.ehlo("x.test")
        smtp.user, smtp.password = LOGIN, "wrong-password-attempt"
        smtp.auth("PLAIN", smtp.auth_plain)
        return "235"
    except smtplib.SMTPAuthenticationError as exc:
        return str(exc.smtp_code)  # the try that reaches the threshold also gets 421 and is closed
    except smtplib.SMTPServerDisconnected:
        return "disconnected"
    finally:
        smtp.close()


def test_failures_on_two_servers_add_up_to_one_ban(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    answers = [fail_auth(a if n % 2 else b, "127.0.0.20") for n in range(6)]
    assert answers == ["535"] * 6  # three on each server: six together, the threshold
    assert fail_auth(a, "127.0.0.20") == "421 at connect"
    assert fail_auth(b, "127.0.0.20") == "421 at connect"
    assert fail_auth(b, "127.0.0.21") == "535"  # another source is not affected


def test_a_quota_is_one_pool_across_servers(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    secret = a.account_with_app_password(LOGIN, max_per_hour=3)
    for server in (a, b, a):
        with client(server) as smtp:
            smtp.login(LOGIN, secret)
            assert smtp.sendmail(LOGIN, ["x@example.org"], message(LOGIN)) == {}
    for server in (b, a):
        with client(server) as smtp:
            smtp.login(LOGIN, secret)
            assert smtp.mail(LOGIN)[0] == 451


def test_an_operator_ban_holds_on_both_at_once(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    cli = Cli(a.config_path)
    cli.ok("ban", "add", "127.0.0.30", "--for", "1h", "--reason", "abuse desk ticket 42")
    assert fail_auth(a, "127.0.0.30") == "421 at connect"
    assert fail_auth(b, "127.0.0.30") == "421 at connect"
    listed = cli.ok("ban", "list", "--json").json()
    assert [(x["network"], x["source"], x["reason"]) for x in listed] == [("127.0.0.30/32", "manual", "abuse desk ticket 42")]
    cli.ok("ban", "remove", "127.0.0.30")
    assert fail_auth(a, "127.0.0.30") == "535"
    assert fail_auth(b, "127.0.0.30") == "535"


CAPPED = {"max_connections_per_ip": "3"}


def greeting(server: RunningServer, source: str) -> str:
    try:
        smtp = client(server, source)
    except smtplib.SMTPConnectError as exc:
        return f"{exc.smtp_code} {exc.smtp_error.decode()[:5]}"
    smtp.close()
    return "220"


def patient(server: RunningServer, source: str, timeout: float = 15.0) -> smtplib.SMTP:
    """Connect, waiting while slots given back elsewhere are still on their way."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client(server, source)
        except smtplib.SMTPConnectError as exc:
            if exc.smtp_code != 421 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("pair", [CAPPED], indirect=True)
def test_the_per_address_cap_holds_across_servers(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    held = [client(a, "127.0.0.50"), client(b, "127.0.0.50"), client(a, "127.0.0.50")]
    assert greeting(b, "127.0.0.50") == "421 4.7.0"  # b holds one: the fourth is refused all the same
    assert greeting(a, "127.0.0.50") == "421 4.7.0"
    assert greeting(b, "127.0.0.51") == "220"
    held[1].close()
    again = patient(a, "127.0.0.50")  # given back on b, taken on a
    assert greeting(b, "127.0.0.50") == "421 4.7.0"
    for smtp in (again, held[0], held[2]):
        smtp.close()


@pytest.mark.parametrize("pair", [CAPPED], indirect=True)
def test_a_killed_server_gives_its_slots_back_when_its_lease_ends(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    held = [client(a, "127.0.0.60"), client(a, "127.0.0.60"), client(b, "127.0.0.60")]
    assert greeting(b, "127.0.0.60") == "421 4.7.0"
    assert a.proc is not None
    a.proc.kill()  # SIGKILL: it never gives anything back itself
    a.proc.wait()
    back = [patient(b, "127.0.0.60"), patient(b, "127.0.0.60")]
    assert greeting(b, "127.0.0.60") == "421 4.7.0"  # exactly the two of the dead server came back
    for smtp in [*back, held[2]]:
        smtp.close()
