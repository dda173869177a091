"""Every way a SASL exchange can fail is a failed AUTH: audited, counted by the guard, in the
metrics. And the authorization identity: equal to the login is fine, another one is refused.

Against a real server over real TLS, with the guard banning loopback sources.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.audit import events as ev
from smtpgate.credentials import FailureReason
from tests.guard.servers import eventually, guarded_config
from tests.guard.test_metrics import scrape, value
from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import PASSWORD, RunningServer

LOGIN = "sasl@example.com"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = guarded_config(tmp_path_factory.mktemp("sasl") / "data", backend="memory",
                            guard={"ip_failures": "3", "network_failures": "1000", "login_failures": "1000"})
    server = RunningServer(config)
    server.start()
    server.credentials.create_account(LOGIN, password=PASSWORD)
    yield server
    server.close()


def session(server: RunningServer, source: str) -> RawClient:
    raw = RawClient(server.submissions_port, source=source)
    raw.starttls(server.client_context())
    assert raw.reply()[0] == 220
    assert raw.cmd("EHLO client.test")[0] == 250
    return raw


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def audited(server: RunningServer, source: str, count: int) -> list[tuple[str, str, str]]:
    def probe() -> list[tuple[str, str, str]]:
        found = server.runtime.audit_store.query(kind=ev.AUTH, limit=1000)
        return [(e.event.reason, e.event.mechanism, e.event.login) for e in found if e.event.remote_ip == source]
    return sorted(eventually(probe, lambda rows: len(rows) >= count))


def test_plain_authorization_identity_must_be_the_login(guarded: RunningServer) -> None:
    raw = session(guarded, "127.0.0.21")
    code, lines = raw.cmd("AUTH PLAIN " + b64(f"carol@example.com\0{LOGIN}\0{PASSWORD}"))
    assert (code, lines) == (535, ["535 5.7.8 Authentication credentials invalid"])
    assert raw.cmd("AUTH PLAIN " + b64(f"{LOGIN}\0{LOGIN}\0{PASSWORD}"))[0] == 235
    raw.close()
    assert audited(guarded, "127.0.0.21", 2) == [("", "PLAIN", LOGIN), (FailureReason.AUTHZID_REFUSED, "PLAIN", LOGIN)]


def test_cancelled_and_malformed_exchanges_are_audited_counted_and_measured(guarded: RunningServer) -> None:
    source = "127.0.0.22"
    before = scrape(guarded)
    raw = session(guarded, source)
    assert raw.cmd("AUTH PLAIN !!notbase64")[0] == 501                 # malformed initial response
    assert raw.cmd("AUTH PLAIN " + b64("no-nul-at-all"))[0] == 501     # malformed PLAIN
    assert raw.cmd("AUTH LOGIN")[0] == 334
    code, lines = raw.cmd("*")                                         # cancelled
    assert (code, lines) == (501, ["501 5.0.0 Authentication cancelled"])
    assert raw.reply()[0] == 421  # the third failure of this address banned it: 421 and closed
    rows = audited(guarded, source, 3)
    assert rows == [(ev.SASL_CANCELLED, "LOGIN", ""), (ev.SASL_MALFORMED, "PLAIN", ""), (ev.SASL_MALFORMED, "PLAIN", "")]
    assert [b.network for b in guarded.runtime.guard.recorded_bans()] == [f"{source}/32"]
    after = scrape(guarded)
    name = "smtpgate_auth_attempts_total"
    for mechanism, reason, n in (("PLAIN", ev.SASL_MALFORMED, 2), ("LOGIN", ev.SASL_CANCELLED, 1)):
        grown = value(after, name, mechanism=mechanism, reason=reason) - value(before, name, mechanism=mechanism, reason=reason)
        assert grown == n, (mechanism, reason)


def test_scram_probes_that_read_the_salt_and_leave_are_counted(guarded: RunningServer) -> None:
    """`AUTH SCRAM-SHA-256 <client-first>`, read the salt, `*`: a probe, not a free look."""
    source = "127.0.0.23"
    for n in range(3):
        raw = session(guarded, source)
        code, lines = raw.cmd("AUTH SCRAM-SHA-256 " + b64(f"n,,n={LOGIN},r=probe{n}"))
        assert code == 334 and base64.b64decode(lines[0][4:]).startswith(f"r=probe{n}".encode())
        assert raw.cmd("*")[0] == 501
        raw.close()
    rows = audited(guarded, source, 3)
    assert rows == [(ev.SASL_CANCELLED, "SCRAM-SHA-256", LOGIN)] * 3
    assert f"{source}/32" in [b.network for b in guarded.runtime.guard.recorded_bans()]


def test_scram_with_the_login_as_authzid_logs_in(guarded: RunningServer, tmp_path: Path) -> None:
    from tests.smtp.test_sasl_tokens import AuthzidScramClient

    raw = session(guarded, "127.0.0.24")
    client = AuthzidScramClient(LOGIN, PASSWORD, authzid=LOGIN)
    code, lines = raw.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(client.first()).decode())
    assert code == 334
    code, lines = raw.cmd(base64.b64encode(client.final(base64.b64decode(lines[0][4:]))).decode())
    assert code == 334 and base64.b64decode(lines[0][4:]) == client.expected_server_final
    assert raw.cmd("")[0] == 235
    raw.close()

    other = session(guarded, "127.0.0.25")
    client = AuthzidScramClient(LOGIN, PASSWORD, authzid="carol@example.com")
    code, lines = other.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(client.first()).decode())
    code, lines = other.cmd(base64.b64encode(client.final(base64.b64decode(lines[0][4:]))).decode())
    assert (code, lines) == (535, ["535 5.7.8 Authentication credentials invalid"])
    other.close()
    assert audited(guarded, "127.0.0.25", 1) == [(FailureReason.AUTHZID_REFUSED, "SCRAM-SHA-256", LOGIN)]
