"""DKIM rotation end to end: a running server, mail verified by dkimpy before, during and after.

No config edit and no restart: `smtpgate dkim rotate` makes the key, the test publishes its
record in the DNS server on loopback, and the server switches to it once it is visible
([deliverability] dkim_check_interval), then retires the old one after dkim_retire_after.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.resolver
import httpx
import pytest

from tests.cli.conftest import Cli
from tests.deliverability.conftest import publish
from tests.delivery.fakedns import FakeDns
from tests.delivery.harness import wait_until
from tests.delivery.sink import SinkServer
from tests.smtp.server_harness import RunningServer, init_data_dir


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    server = SinkServer()
    server.start()
    yield server
    server.stop()


def verified(fake_dns: FakeDns, raw: bytes) -> bool:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = fake_dns.port

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(b"".join(r.strings) for r in answer)

    return bool(dkim.verify(raw, dnsfunc=dnsfunc))


def selector_of(raw: bytes) -> str:
    header = raw[raw.index(b"DKIM-Signature:"):].split(b"\r\n\r\n")[0].replace(b"\r\n", b"").replace(b" ", b"")
    return header.split(b";s=")[1].split(b";")[0].decode()


def states(cli: Cli) -> dict[str, str]:
    return {k["selector"]: k["state"] for k in cli.ok("dkim", "show", "example.com", "--json").json()}


def ring_states(config: Path) -> dict[str, str]:
    """Every key's state, straight from the keyring (retired ones too)."""
    from smtpgate.config import load_config
    from smtpgate.delivery.keyring import keyring_from

    return {e.selector: e.state for e in keyring_from(load_config(config)).entries("example.com")}


def test_rotation_keeps_every_message_verifiable(tmp_path: Path, fake_dns: FakeDns, sink: SinkServer) -> None:
    config = init_data_dir(tmp_path / "data")
    text = config.read_text().replace('mode = "capture"', 'mode = "mx"', 1)
    text = text.replace("dns_servers = []", f'dns_servers = ["{fake_dns.address}"]', 1)
    text = text.replace("port = 25\nmta_sts = true", f"port = {sink.port}\nmta_sts = false", 1)
    text = text.replace('dkim_retire_after = "7d"', 'dkim_retire_after = "20s"', 1)
    text = text.replace("rise_min = 10", "rise_min = 2", 1)
    config.write_text(text.replace('dkim_check_interval = "5m"', 'dkim_check_interval = "1s"', 1))
    fake_dns.add("example.org", "MX", "10 mx.example.org.").add("mx.example.org", "A", "127.0.0.1")
    fake_dns.add("refuse.example", "MX", "10 mx.example.org.")
    sink.script = lambda stage, arg: "550 5.1.1 no such user" if stage == "rcpt" and arg.endswith("@refuse.example") else None
    cli = Cli(config)
    cli.ok("dkim", "rotate", "example.com", "--selector", "s1")
    server = RunningServer(config)
    server.start()
    try:
        secret = server.account_with_app_password("alice@example.com")

        def send(subject: str, to: tuple[str, ...] = ("bob@example.org",)) -> bytes:
            with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
                client.starttls(context=server.client_context())
                client.login("alice@example.com", secret)
                client.sendmail("alice@example.com", list(to),
                                f"From: alice@example.com\r\nTo: {to[0]}\r\nSubject: {subject}\r\n\r\nHi.\r\n".encode())
            if not to[0].endswith("@example.org"):
                return b""
            got = wait_until(lambda: [m for m in sink.messages if f"Subject: {subject}".encode() in m.data], what=subject)
            return got[0].data

        assert states(cli) == {"s1": "pending"}
        publish(fake_dns, [r for r in cli.ok("dns", "records", "example.com", "--json").json()["records"] if r["purpose"] == "dkim"])
        wait_until(lambda: ring_states(config) == {"s1": "active"}, what="the server to switch to s1")
        before = send("before")
        assert selector_of(before) == "s1" and verified(fake_dns, before)

        # delivery outcomes per destination domain, and the alert on a rise of refusals, on the same server
        send("refused", ("a@refuse.example", "b@refuse.example"))
        rise = wait_until(lambda: [a for a in cli.ok("alerts", "list", "--json").json() if a["rule"] == "delivery-failures"],
                          what="the delivery-failures alert")
        assert rise[0]["details"]["domain"] == "refuse.example" and "550 5.1.1 no such user" in rise[0]["summary"]
        host, _, port = server.config.admin.listen.rpartition(":")
        metrics = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
        assert 'smtpgate_delivery_outcomes_total{domain="refuse.example",result="failed"} 2.0' in metrics
        assert 'smtpgate_delivery_outcomes_total{domain="example.org",result="delivered"} 1.0' in metrics

        cli.ok("dkim", "rotate", "example.com", "--selector", "s2")
        assert states(cli) == {"s1": "active", "s2": "pending"}
        during = send("during")
        assert selector_of(during) == "s1" and verified(fake_dns, during)   # s2 is not published yet: s1 still signs

        publish(fake_dns, [r for r in cli.ok("dns", "records", "example.com", "--json").json()["records"] if r["purpose"] == "dkim"])
        wait_until(lambda: ring_states(config).get("s2") == "active", what="the server to switch to s2")
        assert ring_states(config) == {"s1": "retiring", "s2": "active"}
        after = send("after")
        assert selector_of(after) == "s2" and verified(fake_dns, after)
        assert verified(fake_dns, during)                                   # mail in transit signed by s1 still verifies

        wait_until(lambda: ring_states(config) == {"s1": "retired", "s2": "active"}, timeout=60, what="s1 to be retired")
        assert states(cli) == {"s2": "active"}
        assert "s1._domainkey" not in cli.ok("dns", "records", "example.com").stdout
        assert "retired s1" in server.log()
    finally:
        server.close()


def test_a_selector_asked_for_while_another_key_waits_is_refused(tmp_path: Path, fake_dns: FakeDns) -> None:
    """Not silently ignored: the operator asked for a new key, the waiting one is named instead."""
    from smtpgate.deliverability.rotation import rotate
    from smtpgate.delivery.dkim import DkimError
    from tests.deliverability.conftest import make_config

    config = make_config(tmp_path, delivery={"dns_servers": [fake_dns.address]})
    assert rotate(config, "example.com", algorithm="ed25519", selector="s1").made is not None
    assert rotate(config, "example.com", algorithm="ed25519", selector="s1").made is None   # the same one: moves on
    assert rotate(config, "example.com", algorithm="ed25519").made is None
    with pytest.raises(DkimError, match="s1._domainkey.example.com is still waiting"):
        rotate(config, "example.com", algorithm="ed25519", selector="s2")
