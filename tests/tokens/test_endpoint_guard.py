"""`POST /oauth/token` is a login like SMTP AUTH: failed client authentication is counted by
the guard (guessing bans the source) and audited, and X-Forwarded-For is believed only from
`[admin] trusted_proxies` (empty by default). A real server; clients bound to loopback sources.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smtpgate.audit import events as ev
from tests.guard.servers import eventually, guarded_config, set_section
from tests.smtp.server_harness import RunningServer

LOGIN = "printer@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = guarded_config(tmp_path_factory.mktemp("oauth") / "data", backend="memory",
                            guard={"ip_failures": "3", "network_failures": "1000", "login_failures": "1000"})
    set_section(config, "admin", {"trusted_proxies": '["127.0.0.43/32"]'})
    running = RunningServer(config)
    running.start()
    running.credentials.create_account(LOGIN)
    yield running
    running.close()


def token(server: RunningServer, source: str, client_id: str, secret: str, headers: dict[str, str] | None = None) -> httpx.Response:
    host, _, port = server.config.admin.listen.rpartition(":")
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
        return client.post(f"http://{host}:{port}/oauth/token", headers=headers or {},
                           data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})


def audited(server: RunningServer, count: int) -> list[tuple[str, str, str]]:
    def probe() -> list[tuple[str, str, str]]:
        return [(e.event.remote_ip, e.event.result, e.event.reason)
                for e in server.runtime.audit_store.query(kind=ev.AUTH, limit=1000) if e.event.listener == "admin"]
    return eventually(probe, lambda rows: len(rows) >= count)


def test_guessing_client_secrets_bans_the_source_and_every_attempt_is_audited(server: RunningServer) -> None:
    issued = server.runtime.tokens.create_service_account(LOGIN, name="guess")
    client_id, secret = issued.account.id, issued.client_secret
    assert token(server, "127.0.0.41", client_id, secret).status_code == 200
    wrong = "sgc_" + "a" * 39
    for _ in range(3):
        assert token(server, "127.0.0.42", client_id, wrong).status_code == 401
    refused = token(server, "127.0.0.42", client_id, secret)  # even the right secret: the source is banned
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"] == "temporarily_unavailable"
    assert "127.0.0.42/32" in [b.network for b in server.runtime.guard.recorded_bans()]
    assert token(server, "127.0.0.41", client_id, secret).status_code == 200  # others are not affected
    rows = [r for r in audited(server, 6) if r[0] in ("127.0.0.41", "127.0.0.42")]
    assert sorted(rows) == sorted([("127.0.0.41", ev.OK, "")] * 2 + [("127.0.0.42", ev.FAIL, ev.INVALID_CLIENT)] * 3
                                  + [("127.0.0.42", ev.FAIL, ev.BANNED)])


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(server: RunningServer) -> None:
    forged = {"X-Forwarded-For": "203.0.113.66"}
    assert token(server, "127.0.0.44", "nobody", "x", forged).status_code == 401
    assert token(server, "127.0.0.43", "nobody", "x", {"X-Forwarded-For": "198.51.100.7, 127.0.0.43"}).status_code == 401
    rows = audited(server, 2)
    rows = eventually(lambda: audited(server, 2), lambda found: {"127.0.0.44", "198.51.100.7"} <= {r[0] for r in found}
                      or "127.0.0.43" in {r[0] for r in found})
    sources = {r[0] for r in rows}
    assert "127.0.0.44" in sources and "203.0.113.66" not in sources  # not a proxy: its header is ignored
    assert "198.51.100.7" in sources and "127.0.0.43" not in sources  # the trusted proxy's client
    text = server.log()
    assert "ip=203.0.113.66" not in text and "ip=198.51.100.7" in text
