"""PROXY protocol on a real server: the header's address is the client's everywhere, and
what is not exactly a balancer's header is closed unserved and audited.

127.0.0.2, 127.0.0.3 and 127.0.0.4 are the load balancers here (`proxy_protocol_from`);
every other loopback address is a direct client. The header names documentation
addresses (203.0.113.0/24, 198.51.100.0/24) as the clients behind them.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.audit import events as ev
from tests.cli.conftest import Cli
from tests.guard.servers import eventually, guarded_config, message, set_section
from tests.smtp.proxy_clients import ProxiedSMTP, ProxiedSMTPS, closed_unserved, header
from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import RunningServer, free_port

BALANCER = "127.0.0.2"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("proxied") / "data"
    config = guarded_config(data, backend=None, smtp={
        "proxy_protocol_from": '["127.0.0.2/31", "127.0.0.4"]',
        "proxy_protocol_timeout": '"500ms"',
        "max_connections_per_ip": "2",
    })
    set_section(config, "legacy", {"listen": f'"127.0.0.1:{free_port()}"', "networks": '["203.0.113.0/24"]'})
    running = RunningServer(config)
    running.start()
    yield running
    running.close()


def proxy_events(server: RunningServer, peer: str) -> list[dict[str, object]]:
    found = eventually(lambda: [e.event for e in server.runtime.audit_store.query(kind=ev.CONNECT)
                                if e.event.reason == ev.PROXY_PROTOCOL and e.event.remote_ip == peer],
                       lambda events: bool(events), timeout=5)
    return [dict(e.details) for e in found]


def auth_ips(server: RunningServer, login: str) -> list[str]:
    found = eventually(lambda: server.runtime.audit_store.query(kind=ev.AUTH),
                       lambda events: any(e.event.login == login for e in events), timeout=5)
    return [e.event.remote_ip for e in found if e.event.login == login]


# ------------------------------------------------------------------- served


@pytest.mark.parametrize("version", [1, 2])
def test_starttls_behind_a_balancer_the_header_address_is_the_clients(proxied: RunningServer, version: int) -> None:
    login = f"behind{version}@example.com"
    secret = proxied.account_with_app_password(login)
    client_ip = f"203.0.113.{version}"
    with ProxiedSMTP(header(version, client_ip), proxied.submission_port, BALANCER) as smtp:
        smtp.starttls(context=proxied.client_context())
        smtp.login(login, secret)
        assert smtp.sendmail(login, ["bob@example.org"], message(login, f"proxied v{version}")) == {}
    captured = [m for m in proxied.runtime.capture.list() if m.subject == f"proxied v{version}"]
    raw = proxied.runtime.capture.open_raw(captured[0].id).read()
    assert raw.startswith(f"Received: from client.test ([{client_ip}])".encode())
    assert auth_ips(proxied, login) == [client_ip]


def test_implicit_tls_the_header_comes_before_the_handshake(proxied: RunningServer) -> None:
    login = "implicit@example.com"
    secret = proxied.account_with_app_password(login)
    with ProxiedSMTPS(header(2, "2001:db8::7", 465), proxied.submissions_port, "127.0.0.3",
                      proxied.client_context()) as smtp:
        smtp.login(login, secret)
        assert smtp.sendmail(login, ["bob@example.org"], message(login, "proxied 465")) == {}
    captured = [m for m in proxied.runtime.capture.list() if m.subject == "proxied 465"]
    raw = proxied.runtime.capture.open_raw(captured[0].id).read()
    assert raw.startswith(b"Received: from client.test ([2001:db8::7])")
    assert auth_ips(proxied, login) == ["2001:db8::7"]


@pytest.mark.parametrize("version", [1, 2])
def test_a_health_check_header_keeps_the_balancers_address(proxied: RunningServer, version: int) -> None:
    login = f"health{version}@example.com"
    secret = proxied.account_with_app_password(login)
    with ProxiedSMTPS(header(version, None), proxied.submissions_port, "127.0.0.4", proxied.client_context()) as smtp:
        smtp.login(login, secret)
    assert auth_ips(proxied, login) == ["127.0.0.4"]


def test_an_allow_ip_scope_reads_the_header_address(proxied: RunningServer) -> None:
    login = "scoped@example.com"
    secret = proxied.account_with_app_password(login, allowed_networks=("203.0.113.0/24",))
    with ProxiedSMTP(header(2, "203.0.113.50"), proxied.submission_port, BALANCER) as smtp:
        smtp.starttls(context=proxied.client_context())
        assert smtp.login(login, secret)[0] == 235
    with ProxiedSMTP(header(2, "198.51.100.50"), proxied.submission_port, BALANCER) as smtp:
        smtp.starttls(context=proxied.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(login, secret)


def test_the_per_address_cap_counts_the_client_not_the_balancer(proxied: RunningServer) -> None:
    held = [ProxiedSMTP(header(1, "198.51.100.9"), proxied.submission_port, BALANCER) for _ in range(2)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            ProxiedSMTP(header(1, "198.51.100.9"), proxied.submission_port, BALANCER)
        assert refused.value.smtp_code == 421
        with ProxiedSMTP(header(1, "198.51.100.10"), proxied.submission_port, BALANCER) as other:
            assert other.noop()[0] == 250  # the balancer holds four: only the client's address is capped
    finally:
        for smtp in held:
            smtp.close()


def test_a_ban_on_the_header_address_refuses_it_behind_the_balancer(proxied: RunningServer) -> None:
    Cli(proxied.config_path).ok("ban", "add", "203.0.113.66", "--for", "1h", "--reason", "proxied abuse")

    def greeting(client_ip: str) -> int:
        try:
            with ProxiedSMTP(header(2, client_ip), proxied.submission_port, BALANCER) as smtp:
                return smtp.noop()[0]
        except smtplib.SMTPConnectError as exc:
            return exc.smtp_code

    assert eventually(lambda: greeting("203.0.113.66"), lambda code: code == 421, timeout=5) == 421
    assert greeting("203.0.113.67") == 250


# ------------------------------------------------------------------ refused


def test_a_balancer_connection_without_a_header_is_closed_unserved(proxied: RunningServer) -> None:
    client = RawClient(proxied.submission_port, source=BALANCER)
    client.send(b"EHLO client.test\r\n")
    assert closed_unserved(client.sock) == b""
    details = proxy_events(proxied, BALANCER)
    assert details[0]["balancer"] is True and "PROXY header" in str(details[0]["problem"])


def test_a_balancer_that_sends_nothing_is_closed_after_the_header_timeout(proxied: RunningServer) -> None:
    client = RawClient(proxied.submission_port, source="127.0.0.3")
    started = time.monotonic()
    assert closed_unserved(client.sock) == b""
    assert 0.4 < time.monotonic() - started < 3
    assert "within 0.5s" in str(proxy_events(proxied, "127.0.0.3")[0]["problem"])


def test_a_balancer_that_starts_tls_without_a_header_is_closed(proxied: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", proxied.submissions_port), timeout=5,
                                  source_address=("127.0.0.4", 0)) as sock:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            proxied.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
    assert proxy_events(proxied, "127.0.0.4")[0]["balancer"] is True


def test_a_header_from_an_unlisted_address_is_refused_on_the_starttls_port(proxied: RunningServer) -> None:
    client = RawClient(proxied.submission_port, source="127.0.0.1")
    assert client.reply()[0] == 220  # a direct client is greeted first, before it says anything
    client.send(header(2, "203.0.113.99"))
    assert closed_unserved(client.sock) == b""
    details = proxy_events(proxied, "127.0.0.1")
    assert details[0] == {"problem": "a PROXY header from an address not in [smtp] proxy_protocol_from",
                          "balancer": False}


def test_a_header_from_an_unlisted_address_is_refused_on_the_implicit_tls_port(proxied: RunningServer) -> None:
    client = RawClient(proxied.submissions_port, source="127.0.0.9")
    client.send(header(1, "203.0.113.99"))
    assert closed_unserved(client.sock) == b""
    assert proxy_events(proxied, "127.0.0.9")[0]["balancer"] is False


def test_a_direct_client_is_served_as_before(proxied: RunningServer) -> None:
    login = "direct@example.com"
    secret = proxied.account_with_app_password(login)
    with smtplib.SMTP_SSL("127.0.0.1", proxied.submissions_port, context=proxied.client_context(),
                          source_address=("127.0.0.10", 0), timeout=10) as smtp:
        smtp.login(login, secret)
    with smtplib.SMTP("127.0.0.1", proxied.submission_port, source_address=("127.0.0.10", 0), timeout=10) as smtp:
        smtp.starttls(context=proxied.client_context())
        smtp.login(login, secret)
    assert auth_ips(proxied, login) == ["127.0.0.10", "127.0.0.10"]


def test_the_legacy_listener_reads_its_networks_off_the_header(proxied: RunningServer) -> None:
    port = int(proxied.config.legacy.listen.rpartition(":")[2])
    with ProxiedSMTP(header(1, "203.0.113.20"), port, BALANCER) as smtp:  # inside [legacy] networks
        assert smtp.noop()[0] == 250
    outside = RawClient(port, source=BALANCER)
    outside.send(header(2, "198.51.100.20"))
    assert closed_unserved(outside.sock) == b""  # outside them: closed before a greeting
    refused = eventually(lambda: [e for e in proxied.runtime.audit_store.query(kind=ev.CONNECT)
                                  if e.event.listener == "legacy"], bool, timeout=5)
    assert [e.event.remote_ip for e in refused] == ["198.51.100.20"]
