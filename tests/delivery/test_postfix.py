"""Relay to Postfix (with Dovecot SASL) from the shared peer script, over STARTTLS with AUTH.

The peer discards what it accepts, so the test asserts on its 250 (in the gateway's log)
and on its own log: the same Postfix queue id, authenticated as our upstream user, and
handed to its discard transport.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.delivery.queue import QueueStore
from tests.cli.conftest import Cli
from tests.conftest import need
from tests.delivery.harness import message, set_delivery, submit, wait_until
from tests.smtp.server_harness import RunningServer, free_port, init_data_dir

PEER_SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "peers" / "postfix-dovecot.sh"
USER, PASSWORD = "gateway@example.test", "peer-upstream-Qw7!long"


@pytest.fixture(scope="module")
def postfix() -> Iterator[tuple[int, Path]]:
    need(PEER_SCRIPT.exists(), f"the Postfix peer script is missing at {PEER_SCRIPT}")
    need(os.geteuid() == 0, "the Postfix peer needs root")
    need(shutil.which("postfix") is not None and shutil.which("dovecot") is not None,
         "Postfix/Dovecot are not installed (scripts/install-test-clients.sh installs them as root)")
    base = Path(tempfile.mkdtemp(prefix="sg-postfix-"))
    port = free_port()
    env = {**os.environ, "BASE": str(base), "PORT": str(port), "SMTP_USER": USER, "SMTP_PASS": PASSWORD, "IN_FLOW_DELAY": "0"}
    output = base / "peer-script.log"
    try:
        # A file, not a pipe: the daemons inherit the script's stdout and would hold a pipe open.
        with output.open("w") as out:
            started = subprocess.run(["bash", str(PEER_SCRIPT), "start"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, timeout=90)
        need(started.returncode == 0, f"the Postfix peer did not start: {output.read_text()}")
        yield port, base
    finally:
        with open(os.devnull, "w") as null:
            subprocess.run(["bash", str(PEER_SCRIPT), "stop"], env=env, stdout=null, stderr=null, stdin=subprocess.DEVNULL, timeout=90)
        shutil.rmtree(base, ignore_errors=True)


def test_relay_to_postfix_over_starttls_with_auth(tmp_path, postfix) -> None:
    port, base = postfix
    config = init_data_dir(tmp_path / "gw")
    set_delivery(config, f"""
[delivery]
mode = "relay"
retry_initial = "500ms"
retry_max = "2s"
poll_interval = "200ms"

[delivery.relay]
host = "127.0.0.1"
port = {port}
tls = "starttls"
ca_file = "{base / 'tls' / 'cert.pem'}"
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
        log = wait_until(lambda: (t := (base / "postfix.log").read_text(errors="replace")) and f"{postfix_id}: to=<bob@example.org>" in t and t,
                         what="Postfix to log the delivery")
        assert re.search(rf"{postfix_id}: client=.*sasl_method=\w+, sasl_username={re.escape(USER)}", log)
        assert re.search(rf"{postfix_id}: to=<bob@example\.org>.*status=sent", log)
        assert PASSWORD not in gateway.log()
    finally:
        gateway.close()
