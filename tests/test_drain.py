"""`smtpgate serve` drains on SIGTERM: the ports close at once (a balancer retries elsewhere),
/healthz says so, the transaction in flight completes, then the process exits 0."""

from __future__ import annotations

import signal
import socket

import httpx

from tests.guard.servers import eventually
from tests.smtp.server_harness import RunningServer
from tests.smtp.test_server_behaviour import authed


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_closes_the_ports_and_reports_draining_while_the_transaction_finishes(fresh_server: RunningServer) -> None:
    fresh_server.start()  # one process: it serves /healthz itself (with workers, worker 0 alone does)
    assert fresh_server.proc is not None
    client = authed(fresh_server, "drain@example.com")
    client.cmd("MAIL FROM:<drain@example.com>")
    client.cmd("RCPT TO:<x@example.org>")
    assert client.cmd("DATA")[0] == 354
    client.send(b"From: drain@example.com\r\nSubject: drained\r\n\r\nhalf")
    fresh_server.proc.send_signal(signal.SIGTERM)
    ports = (fresh_server.submission_port, fresh_server.submissions_port)
    assert eventually(lambda: [refused(port) for port in ports], all, timeout=5) == [True, True]
    admin = fresh_server.config.admin.listen
    response = httpx.get(f"http://{admin}/healthz", timeout=5)
    assert response.status_code == 503 and response.json()["checks"]["smtp"] == "draining"
    client.send(b" of it\r\n.\r\n")
    code, lines = client.reply()
    assert code == 250, lines
    assert client.reply()[0] == 421  # and nothing more: the node is going away
    client.close()
    assert fresh_server.proc.wait(15) == 0
    assert any(m.subject == "drained" for m in fresh_server.runtime.capture.list())
