"""Relay to Postfix (with Dovecot SASL) from scripts/peers/postfix-dovecot.sh, over STARTTLS with AUTH.

The peer discards what it accepts, so the test asserts on its 250 (in the gateway's log)
and on its own log: the same Postfix queue id, authenticated as our upstream user, and
handed to its discard transport.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.delivery.queue import QueueStore
from tests.cli.conftest import Cli
from tests.delivery.harness import message, set_delivery, submit, wait_until
from tests.peer import Peer, postfix_peer
from tests.smtp.server_harness import RunningServer, init_data_dir

USER, PASSWORD = "gateway@example.test", "peer-upstream-Qw7!long"


@pytest.fixture(scope="module")
def postfix() -> Iterator[Peer]:
    with postfix_peer(USER, PASSWORD) as peer:
        yield peer


def test_relay_to_postfix_over_starttls_with_auth(tmp_path: Path, postfix: Peer) -> None:
    config = init_data_dir(tmp_path / "gw")
    set_delivery(config, f"""
[delivery]
mode = "relay"
retry_initial = "500ms"
retry_max = "2s"
poll_interval = "200ms"

[delivery.relay]
host = "127.0.0.1"
port = {postfix.port}
tls = "starttls"
ca_file = "{postfix.cafile}"
username = "{USER}"
""")
    Cli(config).ok("upstream", "set-password", "--stdin", input=PASSWORD + "\n")
    gateway = RunningServer(config)
    gateway.start()
    try:
        secret = gateway.account_with_app_password("alice@example.com")
        queue_id = submit(gateway.submission_port, gateway.client_context(), "alice@example.com", secret,
                          "alice@example.com", ["bob@example.org"], message("to postfix"))
        wait_until(lambda: not QueueStore(gateway.config.path("queue")).ids(), timeout=60, what="delivery to Postfix")
        line = next(l for l in gateway.log().splitlines() if f"delivered id={queue_id}" in l)
        match = re.search(r"reply=250 2\.0\.0 Ok: queued as (\w+)", line)
        assert match, line
        postfix_id = match.group(1)
        log = wait_until(lambda: (t := postfix.log.read_text(errors="replace")) and f"{postfix_id}: to=<bob@example.org>" in t and t,
                         what="Postfix to log the delivery")
        assert re.search(rf"{postfix_id}: client=.*sasl_method=\w+, sasl_username={re.escape(USER)}", log)
        assert re.search(rf"{postfix_id}: to=<bob@example\.org>.*status=sent", log)
        assert PASSWORD not in gateway.log()
    finally:
        gateway.close()
