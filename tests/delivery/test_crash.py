"""kill -9 under load: every message that got a 250 is delivered after the restart, none lost.

A real gateway relays to a real smtpgate in capture mode (the sink). Client threads send
numbered messages over persistent STARTTLS+AUTH connections and note each one the
gateway acknowledged. Mid-load the gateway gets SIGKILL, in the middle of receiving,
fsyncing and relaying. It is then started again on the same data dir, and we wait for its
queue to drain and count: acknowledged, delivered (distinct, at the sink), lost.
Duplicates are allowed (at least once) and counted. The load is bounded in count and
time, on loopback only.
"""

from __future__ import annotations

import signal
import smtplib
import threading
from collections.abc import Iterator

import pytest

from smtpgate.delivery.queue import QueueStore
from tests.cli.conftest import Cli
from tests.delivery.harness import message, set_delivery, wait_until
from tests.smtp.server_harness import RunningServer, init_data_dir

CLIENTS = 4
PER_CLIENT = 150          # at most 600 messages in all
KILL_AFTER_ACKS = (40, 180)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    running = RunningServer(init_data_dir(tmp_path_factory.mktemp("sink") / "data"))
    running.start()
    secret = running.account_with_app_password("relay@example.com", allowed_senders=("@example.com",))
    yield running, secret
    running.close()


class Load:
    """Client threads sending numbered messages until told to stop or the server dies."""

    def __init__(self, gateway: RunningServer, login: str, secret: str, run: str) -> None:
        self.gateway, self.login, self.secret, self.run = gateway, login, secret, run
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)

    def _client(self, n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.gateway.submission_port, timeout=20) as client:
                client.starttls(context=self.gateway.client_context())
                client.login(self.login, self.secret)
                for i in range(PER_CLIENT):
                    subject = f"{self.run}-{n}-{i}"
                    client.mail("alice@example.com")
                    client.rcpt("bob@example.org")
                    code, _ = client.data(message(subject))
                    if code == 250:
                        with self.lock:
                            self.acked.add(subject)
        except (OSError, smtplib.SMTPException):
            return  # the server died under us: whatever was acknowledged is counted


@pytest.mark.parametrize("kill_after", KILL_AFTER_ACKS)
def test_kill_9_under_load_loses_nothing(tmp_path, sink, kill_after: int) -> None:
    sink_server, upstream_secret = sink
    config = init_data_dir(tmp_path / "gw")
    set_delivery(config, f"""
[delivery]
mode = "relay"
retry_initial = "300ms"
retry_max = "1s"
poll_interval = "100ms"

[delivery.relay]
host = "127.0.0.1"
port = {sink_server.submission_port}
ca_file = "{sink_server.ca}"
username = "relay@example.com"
""")
    Cli(config).ok("upstream", "set-password", "--stdin", input=upstream_secret + "\n")
    gateway = RunningServer(config)
    gateway.start()
    run = f"crash{kill_after}"
    try:
        secret = gateway.account_with_app_password("alice@example.com")
        load = Load(gateway, "alice@example.com", secret, run)
        load.start()
        wait_until(lambda: len(load.acked) >= kill_after, timeout=60, what=f"{kill_after} acknowledged messages")
        gateway.stop(signal.SIGKILL)
        load.join()
        acknowledged = set(load.acked)
        queued_at_crash = len(QueueStore(gateway.config.path("queue")).ids())

        gateway.start()  # same data dir, same ports
        queue = QueueStore(gateway.config.path("queue"))

        def delivered() -> set[str]:
            return {m.subject for m in sink_server.runtime.capture.list() if m.subject.startswith(run + "-")}

        wait_until(lambda: not queue.ids() and acknowledged <= delivered(), timeout=90,
                   what="the restarted gateway to drain its queue")
        got = delivered()
        subjects = [m.subject for m in sink_server.runtime.capture.list() if m.subject.startswith(run + "-")]
        lost = acknowledged - got
        numbers = (f"crash test (kill -9 after {kill_after} acks): acknowledged={len(acknowledged)} "
                   f"queued at crash={queued_at_crash} delivered after restart={len(acknowledged & got)} "
                   f"lost={len(lost)} duplicates={len(subjects) - len(set(subjects))} "
                   f"unacknowledged but delivered={len(got - acknowledged)}")
        print(numbers)
        assert not lost, numbers
        assert len(acknowledged) >= kill_after
    finally:
        gateway.close()
