"""A real gateway (`smtpgate serve`) relaying to a second real smtpgate over TLS with AUTH.

The second smtpgate runs in capture mode: the gateway's upstream credential is one of
its app passwords, set with `smtpgate upstream set-password --stdin`. DKIM keys come from
`smtpgate dkim keygen`, and the signatures are checked with dkimpy against the TXT record
served by a DNS server on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.resolver
import pytest

from smtpgate.delivery.queue import QueueStore
from tests.cli.conftest import Cli
from tests.delivery.fakedns import FakeDns, txt
from tests.delivery.harness import message, set_delivery, submit, wait_until
from tests.smtp.server_harness import RunningServer, init_data_dir

RELAY_LOGIN = "relay@example.com"


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    """The smarthost: smtpgate in capture mode, with an app password for the gateway."""
    running = RunningServer(init_data_dir(tmp_path_factory.mktemp("peer") / "data"))
    running.start()
    secret = running.account_with_app_password(RELAY_LOGIN, allowed_senders=("@example.com", "@mail.example.com"))
    yield running, secret
    running.close()


@pytest.fixture(scope="module")
def dns_server() -> Iterator[FakeDns]:
    server = FakeDns().start()
    yield server
    server.stop()


def make_gateway(data: Path, peer: RunningServer, upstream_secret: str, *, tls: str = "starttls", extra: str = "") -> tuple[RunningServer, Cli]:
    config = init_data_dir(data)
    port = peer.submission_port if tls == "starttls" else peer.submissions_port
    set_delivery(config, f"""
[delivery]
mode = "relay"
retry_initial = "500ms"
retry_max = "2s"
poll_interval = "200ms"

[delivery.relay]
host = "127.0.0.1"
port = {port}
tls = "{tls}"
ca_file = "{peer.ca}"
username = "{RELAY_LOGIN}"
{extra}
""")
    cli = Cli(config)
    cli.ok("upstream", "set-password", "--stdin", input=upstream_secret + "\n")
    return RunningServer(config), cli


def peer_subjects(peer: RunningServer) -> list[str]:
    return [m.subject for m in peer.runtime.capture.list()]


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_relay_to_a_second_smtpgate_over_tls_with_auth(tmp_path, peer, tls) -> None:
    peer_server, secret = peer
    gateway, cli = make_gateway(tmp_path / "gw", peer_server, secret, tls=tls)
    gateway.start()
    try:
        app_secret = gateway.account_with_app_password("alice@example.com")
        subject = f"relayed over {tls}"
        queue_id = submit(gateway.submission_port, gateway.client_context(), "alice@example.com", app_secret,
                          "alice@example.com", ["bob@example.org"], message(subject))
        wait_until(lambda: subject in peer_subjects(peer_server), what="the message at the smarthost")
        captured = next(m for m in peer_server.runtime.capture.list() if m.subject == subject)
        assert captured.rcpt_to == ("bob@example.org",)
        assert captured.account == RELAY_LOGIN  # the gateway authenticated with its upstream credential
        with peer_server.runtime.capture.open_raw(captured.id) as fh:
            raw = fh.read()
        assert f"with ESMTPSA id {queue_id}".encode() in raw  # the gateway's own Received: header
        wait_until(lambda: not QueueStore(gateway.config.path("queue")).ids(), what="the gateway queue to empty")
        log = gateway.log()
        assert f"delivered id={queue_id}" in log
        assert secret not in log and secret not in peer_server.log()
        assert secret not in (gateway.config_path.read_text() + gateway.config.path("secrets/upstream-password.enc").read_text())
    finally:
        gateway.close()


def test_upstream_test_command_logs_in_and_reports_a_wrong_password(tmp_path, peer) -> None:
    peer_server, secret = peer
    _, cli = make_gateway(tmp_path / "gw", peer_server, secret)
    ok = cli.ok("upstream", "test")
    assert "OK: 127.0.0.1:" in ok.stdout and "TLSv1." in ok.stdout and f"logged in as {RELAY_LOGIN}" in ok.stdout
    cli.ok("upstream", "set-password", "--stdin", input="sgp_not-the-right-one\n")
    bad = cli("upstream", "test")
    assert bad.code == 1 and "535" in bad.stderr
    assert "sgp_not-the-right-one" not in bad.stdout + bad.stderr and secret not in bad.stdout + bad.stderr


def test_dkim_keys_from_the_cli_sign_what_the_gateway_relays(tmp_path, peer, dns_server) -> None:
    peer_server, secret = peer
    records = {}
    gateway_dir = tmp_path / "gw"
    gateway, cli = make_gateway(gateway_dir, peer_server, secret)
    for domain, algorithm in (("example.com", "ed25519"), ("mail.example.com", "rsa")):
        made = cli.ok("dkim", "keygen", domain, "--selector", "s1", "--algorithm", algorithm, "--json").json()
        assert (Path(made["key_file"]).stat().st_mode & 0o777) == 0o600
        records[domain] = made
        dns_server.add(made["dns_name"], "TXT", txt(made["dns_txt"]))
    dkim_section = "\n[delivery.dkim]\n" + "\n".join(r["config"] for r in records.values()) + "\n"
    config_path = gateway.config_path
    config_path.write_text(config_path.read_text() + dkim_section)
    gateway = RunningServer(config_path)
    gateway.start()
    try:
        app_secret = gateway.account_with_app_password("alice@example.com", allowed_senders=("@example.com", "@mail.example.com"))
        for sender, subject in (("alice@example.com", "signed ed25519"), ("news@mail.example.com", "signed rsa")):
            submit(gateway.submission_port, gateway.client_context(), "alice@example.com", app_secret, sender, ["bob@example.org"], message(subject, sender))
        wait_until(lambda: {"signed ed25519", "signed rsa"} <= set(peer_subjects(peer_server)), what="both messages")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = dns_server.port

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
            return b"".join(b"".join(r.strings) for r in resolver.resolve(name.decode().rstrip("."), "TXT"))

        for subject, algorithm in (("signed ed25519", b"ed25519-sha256"), ("signed rsa", b"rsa-sha256")):
            captured = next(m for m in peer_server.runtime.capture.list() if m.subject == subject)
            with peer_server.runtime.capture.open_raw(captured.id) as fh:
                raw = fh.read()
            signed = raw[raw.index(b"DKIM-Signature:"):]  # what left the gateway (the peer added its Received: on top)
            assert b"a=" + algorithm in signed
            assert dkim.verify(signed, dnsfunc=dnsfunc), subject
    finally:
        gateway.close()


def test_two_workers_deliver_each_message_exactly_once(tmp_path, peer) -> None:
    peer_server, secret = peer
    gateway, _ = make_gateway(tmp_path / "gw", peer_server, secret)
    gateway.start("--workers", "2")
    try:
        app_secret = gateway.account_with_app_password("alice@example.com")
        subjects = [f"two-workers {i}" for i in range(40)]
        for subject in subjects:
            submit(gateway.submission_port, gateway.client_context(), "alice@example.com", app_secret, "alice@example.com", ["bob@example.org"], message(subject))
        wait_until(lambda: set(subjects) <= set(peer_subjects(peer_server)), what="all 40 messages")
        wait_until(lambda: not QueueStore(gateway.config.path("queue")).ids(), what="the gateway queue to empty")
        got = [s for s in peer_subjects(peer_server) if s.startswith("two-workers")]
        assert sorted(got) == sorted(subjects)  # none twice
    finally:
        gateway.close()


def test_queue_hold_by_credential_stops_delivery_until_release(tmp_path, peer) -> None:
    from smtpgate.credentials import ScopeRequest
    from tests.smtp.server_harness import PASSWORD

    peer_server, secret = peer
    gateway, cli = make_gateway(tmp_path / "gw", peer_server, secret)
    gateway.start()
    try:
        gateway.credentials.create_account("mallory@example.com", password=PASSWORD)
        issued = gateway.credentials.create_app_password("mallory@example.com", "leaked", scopes=ScopeRequest())
        credential_id = issued.credential.id
        held = cli.ok("queue", "hold", "--credential", credential_id, "--json").json()
        assert held["rule"] is True
        submit(gateway.submission_port, gateway.client_context(), "mallory@example.com", issued.secret,
               "mallory@example.com", ["bob@example.org"], message("held spam", "mallory@example.com"))
        listed = wait_until(lambda: cli.ok("queue", "list", "--held", "--json").json(), what="the held message in the list")
        assert listed[0]["subject"] == "held spam" and listed[0]["held"] is True
        assert "held          yes" in cli.ok("queue", "show", listed[0]["id"]).stdout
        wait_until(lambda: f"held id={listed[0]['id']}" in gateway.log(), what="the worker to see and hold the message")
        assert "held spam" not in peer_subjects(peer_server)
        cli.ok("queue", "release", "--credential", credential_id)
        wait_until(lambda: "held spam" in peer_subjects(peer_server), what="delivery after release")
    finally:
        gateway.close()


def test_queue_cli_list_show_hold_retry_delete(tmp_path) -> None:
    config = init_data_dir(tmp_path / "data")
    set_delivery(config, '[delivery]\nmode = "relay"\n[delivery.relay]\nhost = "127.0.0.1"\nport = 9\n')
    cli = Cli(config)
    queue = QueueStore(config.parent / "queue")
    from tests.delivery.harness import envelope

    ids = [queue.enqueue(envelope("alice@example.com", f"r{i}@example.org", credential_id="cred_a" if i < 3 else "cred_b"), message(f"m{i}")).id for i in range(5)]
    listed = cli.ok("queue", "list", "--json").json()
    assert [m["id"] for m in listed] == ids and all(m["pending"] for m in listed)
    assert cli.ok("queue", "hold", ids[4]).code == 0
    assert cli.ok("queue", "hold", "--credential", "cred_a", "--json").json()["held"] == 3
    held = {m["id"] for m in cli.ok("queue", "list", "--held", "--json").json()}
    assert held == {ids[0], ids[1], ids[2], ids[4]}
    assert json.loads((config.parent / "queue" / "holds.json").read_text())["credentials"] == ["cred_a"]
    shown = cli.ok("queue", "show", ids[0], "--json").json()
    assert shown["held"] is True and shown["credential_id"] == "cred_a"
    assert b"Subject: m0" in queue.read_raw(ids[0]) and "Subject: m0" in cli.ok("queue", "show", ids[0], "--raw").stdout
    assert cli.ok("queue", "release", ids[4]).code == 0
    assert cli.ok("queue", "retry", "--json").json()["scheduled"] == 5
    assert cli.ok("queue", "delete", "--credential", "cred_a", "--json").json()["deleted"] == 3
    assert [m["id"] for m in cli.ok("queue", "list", "--json").json()] == ids[3:]
    missing = cli("queue", "show", "20260101T000000Z-AAAAAAAAAA")
    assert missing.code == 1 and "queue list" in missing.stderr
    usage = cli("queue", "hold")
    assert usage.code == 2 and "--credential" in usage.stderr
