"""The delivery worker in-process, against real SMTP receivers and a real DNS server on loopback.

Each test runs a DeliveryWorker built from a Config (as the server builds it) on an event
loop, puts mail in a real QueueStore, and looks at what the loopback receivers got.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dkim
import dns.resolver
import pytest

from smtpgate.delivery.capture import CaptureStore
from smtpgate.delivery.dkim import generate_key, txt_record
from smtpgate.delivery.queue import HoldRules, QueueStore
from smtpgate.delivery.upstream import UpstreamSecretStore
from smtpgate.delivery.worker import PARKED, DeliveryWorker, build_worker
from tests.delivery.fakedns import FakeDns, txt
from tests.delivery.harness import LoopbackPki, config_for, envelope, make_pki, message, wait_until
from tests.delivery.sink import SinkServer

USER, PASSWORD = "gateway@relay.test", "upstream-secret-Kx81!"


class WorkerThread:
    """A worker on its own event loop in a thread, stopped at the end of the test."""

    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.worker.run())
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, f"the worker died: {self.error!r}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackPki:
    return make_pki(tmp_path_factory.mktemp("pki"), ["mx1.example.org", "mx2.example.org", "mta-sts.example.org"])


@pytest.fixture
def sink(tls: LoopbackPki) -> Iterator[SinkServer]:
    server = SinkServer(tls_context=tls.server_context())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smarthost(tls: LoopbackPki) -> Iterator[SinkServer]:
    server = SinkServer(tls_context=tls.server_context(), auth=(USER, PASSWORD))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dns_server() -> Iterator[FakeDns]:
    server = FakeDns().start()
    yield server
    server.stop()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[WorkerThread]]:
    threads: list[WorkerThread] = []
    yield threads
    for thread in threads:
        thread.stop()


def relay_setup(tmp_path: Path, smarthost: SinkServer, tls: LoopbackPki, **delivery):
    config = config_for(tmp_path, {
        "mode": "relay",
        "retry_initial": "200ms", "retry_max": "1s", "retry_jitter": 0.0, "poll_interval": "100ms",
        "relay": {"host": "127.0.0.1", "port": smarthost.port, "ca_file": str(tls.ca_file), "username": USER},
        **delivery,
    })
    UpstreamSecretStore(config.path("secrets/upstream-password.enc"), config.path("secrets/upstream.key")).set_password(PASSWORD)
    queue = QueueStore(tmp_path / "queue")
    capture = CaptureStore(tmp_path / "capture")
    return config, queue, capture


def enqueue(queue: QueueStore, *rcpts: str, sender: str = "alice@example.com", subject: str = "hello", credential_id: str = "cred_1") -> str:
    return queue.enqueue(envelope(sender, *rcpts, credential_id=credential_id), message(subject, sender, rcpts[0] if rcpts else "bob@example.org")).id


# ----------------------------------------------------------------------------- relay


def test_relay_over_starttls_with_auth_delivers_and_empties_the_queue(tmp_path, smarthost, tls, running) -> None:
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    enqueue(queue, "bob@example.org", "carol@example.net")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    got = wait_until(lambda: smarthost.messages, what="the smarthost to receive the message")
    assert got[0].rcpt_to == ["bob@example.org", "carol@example.net"]
    assert got[0].tls.startswith("TLSv1.")
    assert got[0].user == USER
    assert b"Subject: hello" in got[0].data
    wait_until(lambda: not queue.ids(), what="the queue to empty")
    assert PASSWORD not in "\n".join(smarthost.transcript)


def test_relay_reuses_connections_while_draining_a_burst(tmp_path, smarthost, tls, running) -> None:
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    for i in range(30):
        enqueue(queue, f"r{i}@example.org", subject=f"burst {i}")
    worker = build_worker(config, queue, capture)
    running.append(WorkerThread(worker))
    wait_until(lambda: len(smarthost.messages) == 30, what="30 messages at the smarthost")
    relay = worker.routes.routes["relay"]
    assert relay.opened <= config.delivery.relay.connections
    assert smarthost.connections <= config.delivery.relay.connections


def test_transient_failure_is_retried_then_delivered(tmp_path, smarthost, tls, running) -> None:
    answers = iter(["451 4.3.0 Try again later", "451 4.3.0 Still busy"])
    smarthost.script = lambda stage, arg: next(answers, None) if stage == "mail" else None
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    message_id = enqueue(queue, "bob@example.org")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    wait_until(lambda: queue.read_state(message_id).attempts >= 1 or not queue.ids(), what="a first failed attempt")
    wait_until(lambda: smarthost.messages, what="delivery after the retries")
    assert len(smarthost.messages) == 1
    assert sum(1 for line in smarthost.transcript if line.startswith("S: 451")) == 2
    wait_until(lambda: not queue.ids(), what="the queue to empty")


def test_wrong_upstream_password_keeps_mail_queued_and_rotation_fixes_it(tmp_path, smarthost, tls, running, caplog) -> None:
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    secrets = UpstreamSecretStore(config.path("secrets/upstream-password.enc"), config.path("secrets/upstream.key"))
    secrets.set_password("an-old-password-that-was-rotated")
    message_id = enqueue(queue, "bob@example.org")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    state = wait_until(lambda: queue.read_state(message_id) if queue.read_state(message_id).attempts else None, what="a refused AUTH")
    assert "refused our AUTH" in state.last_error and not smarthost.messages
    assert "an-old-password" not in caplog.text
    secrets.set_password(PASSWORD)  # rotation, no restart
    wait_until(lambda: smarthost.messages, what="delivery with the rotated password")


def dsns(server: SinkServer) -> list:
    return [m for m in list(server.messages) if m.mail_from == ""]


def test_permanent_failure_bounces_a_dsn_to_the_sender(tmp_path, smarthost, tls, running) -> None:
    smarthost.script = lambda stage, arg: "550 5.1.1 <nobody@example.org>: no such user" if stage == "rcpt" and arg.startswith("nobody") else None
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    enqueue(queue, "nobody@example.org", "bob@example.org", subject="to two")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    wait_until(lambda: smarthost.messages, what="delivery to the good recipient")
    assert smarthost.messages[0].rcpt_to == ["bob@example.org"]
    got = wait_until(lambda: dsns(smarthost), what="the DSN, sent the way the sender's mail goes")[0]
    assert got.rcpt_to == ["alice@example.com"]
    dsn = email.message_from_bytes(got.data, policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = parts[1].as_string()
    assert "Final-Recipient: rfc822; nobody@example.org" in status
    assert "Status: 5.1.1" in status and "Action: failed" in status
    assert "bob@example.org" not in status
    assert "Subject: to two" in parts[2].get_content()
    wait_until(lambda: not queue.ids(), what="the queue to empty")


def test_expired_message_bounces_with_4_4_7(tmp_path, smarthost, tls, running) -> None:
    smarthost.script = lambda stage, arg: "451 4.3.0 never today" if stage == "mail" and arg else None
    config, queue, capture = relay_setup(tmp_path, smarthost, tls, max_queue_lifetime="1s")
    enqueue(queue, "bob@example.org")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    raw = wait_until(lambda: dsns(smarthost), what="the expiry DSN")[0].data.decode()
    assert "Status: 4.4.7" in raw and "451 4.3.0 never today" in raw
    assert len(smarthost.messages) == 1
    wait_until(lambda: not queue.ids(), what="the queue to empty")


def test_no_bounce_for_a_bounce(tmp_path, smarthost, tls, running) -> None:
    smarthost.script = lambda stage, arg: "550 5.1.1 no such user" if stage == "rcpt" else None
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    enqueue(queue, "gone@example.org", sender="")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    wait_until(lambda: not queue.ids(), what="the failed bounce to be dropped")
    assert capture.list() == [] and not smarthost.messages


def test_held_credential_is_not_delivered_until_released(tmp_path, smarthost, tls, running) -> None:
    config, queue, capture = relay_setup(tmp_path, smarthost, tls)
    queue.set_hold_rules(HoldRules(credentials=frozenset({"cred_leaked"})))
    held = enqueue(queue, "bob@example.org", credential_id="cred_leaked", subject="held")
    enqueue(queue, "carol@example.org", credential_id="cred_ok", subject="free")
    worker = build_worker(config, queue, capture)
    running.append(WorkerThread(worker))
    wait_until(lambda: smarthost.messages, what="the other credential's mail")
    later = enqueue(queue, "dave@example.org", credential_id="cred_leaked", subject="later")
    wait_until(lambda: worker._due.get(held) == PARKED and worker._due.get(later) == PARKED, what="both held messages parked")
    assert [m.rcpt_to for m in smarthost.messages] == [["carol@example.org"]]
    assert set(queue.ids()) == {held, later}
    queue.set_hold_rules(HoldRules())
    queue.wake()
    wait_until(lambda: len(smarthost.messages) == 3, what="the released mail")


def test_dkim_signature_verifies_against_the_published_key(tmp_path, smarthost, tls, running, dns_server) -> None:
    for algorithm, domain in (("ed25519", "example.com"), ("rsa", "example.net")):
        key = generate_key(domain, "s1", algorithm)
        path = tmp_path / f"{domain}.key"
        path.write_bytes(key.private)
        path.chmod(0o600)
        name, value = txt_record(key)
        dns_server.add(name, "TXT", txt(value))
    config, queue, capture = relay_setup(
        tmp_path, smarthost, tls,
        dkim={d: {"selector": "s1", "key_file": f"{d}.key"} for d in ("example.com", "example.net")},
    )
    enqueue(queue, "bob@example.org", sender="alice@example.com", subject="ed")
    enqueue(queue, "bob@example.org", sender="alice@example.net", subject="rsa")
    enqueue(queue, "bob@example.org", sender="alice@unsigned.example", subject="none")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    wait_until(lambda: len(smarthost.messages) == 3, what="three messages")

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns_server.port

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(b"".join(r.strings) for r in answer)

    by_subject = {m.data.split(b"Subject: ")[1].split(b"\r\n")[0]: m.data for m in smarthost.messages}
    assert b"a=ed25519-sha256" in by_subject[b"ed"] and dkim.verify(by_subject[b"ed"], dnsfunc=dnsfunc)
    assert b"a=rsa-sha256" in by_subject[b"rsa"] and dkim.verify(by_subject[b"rsa"], dnsfunc=dnsfunc)
    assert b"DKIM-Signature" not in by_subject[b"none"]
    tampered = by_subject[b"ed"].replace(b"Hello.", b"Hullo.")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


# ----------------------------------------------------------------------------- mx


def mx_setup(tmp_path: Path, sink: SinkServer, dns_server: FakeDns, tls: LoopbackPki, **mx):
    config = config_for(tmp_path, {
        "mode": "mx",
        "retry_initial": "200ms", "retry_max": "1s", "retry_jitter": 0.0, "poll_interval": "100ms",
        "dns_servers": [dns_server.address],
        "mx": {"port": sink.port, "timeout": "5s", **mx},
    })
    return config, QueueStore(tmp_path / "queue"), CaptureStore(tmp_path / "capture")


def test_mx_delivery_uses_starttls_and_falls_back_to_the_next_mx(tmp_path, sink, dns_server, tls, running) -> None:
    dns_server.add("example.org", "MX", "10 mx1.example.org.", "20 mx2.example.org.")
    dns_server.add("mx1.example.org", "A", "127.0.0.2")  # nothing listens there: refused
    dns_server.add("mx2.example.org", "A", "127.0.0.1")
    config, queue, capture = mx_setup(tmp_path, sink, dns_server, tls)
    enqueue(queue, "bob@example.org")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    got = wait_until(lambda: sink.messages, what="MX delivery")
    assert got[0].tls.startswith("TLSv1.") and got[0].rcpt_to == ["bob@example.org"]
    assert ("example.org", "MX") in dns_server.queries and ("mx2.example.org", "A") in dns_server.queries
    wait_until(lambda: not queue.ids(), what="the queue to empty")


def test_mx_without_starttls_still_delivers_in_clear(tmp_path, dns_server, tls, running) -> None:
    plain = SinkServer()
    plain.start()
    try:
        dns_server.add("example.org", "A", "127.0.0.1")  # no MX: the domain is its own (implicit) MX
        config, queue, capture = mx_setup(tmp_path, plain, dns_server, tls)
        enqueue(queue, "bob@example.org")
        running.append(WorkerThread(build_worker(config, queue, capture)))
        got = wait_until(lambda: plain.messages, what="implicit-MX delivery")
        assert got[0].tls == ""
    finally:
        plain.stop()


def test_null_mx_and_missing_domain_bounce_at_once(tmp_path, sink, dns_server, tls, running) -> None:
    dns_server.add("nomail.example", "MX", "0 .")
    dns_server.add("example.org", "MX", "10 mx1.example.org.").add("mx1.example.org", "A", "127.0.0.1")
    dns_server.add("example.com", "MX", "10 mx1.example.org.")  # where the sender's DSN goes
    config, queue, capture = mx_setup(tmp_path, sink, dns_server, tls)
    enqueue(queue, "a@nomail.example", "b@nowhere.example", "bob@example.org")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    raw = wait_until(lambda: dsns(sink), what="the DSN")[0].data.decode()
    assert "Final-Recipient: rfc822; a@nomail.example" in raw and "Status: 5.1.10" in raw
    assert "Final-Recipient: rfc822; b@nowhere.example" in raw and "Status: 5.1.2" in raw
    assert [m.rcpt_to for m in sink.messages if m.mail_from] == [["bob@example.org"]]
    assert not any(name == "nomail.example" and rdtype in ("A", "AAAA") for name, rdtype in dns_server.queries)


# ----------------------------------------------------------------------------- MTA-STS


class PolicyServer:
    """HTTPS on loopback serving /.well-known/mta-sts.txt, with the test certificate."""

    def __init__(self, tls: LoopbackPki, policy: str) -> None:
        import http.server

        body = policy.encode()
        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                requests.append((self.headers.get("Host"), self.path))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = tls.server_context().wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()


@pytest.mark.parametrize("policy_mx, delivered", [("mx1.example.org", True), ("*.example.org", True), ("mx.elsewhere.example", False)])
def test_mta_sts_enforce_allows_only_policy_hosts_with_verified_tls(tmp_path, sink, dns_server, tls, running, policy_mx, delivered) -> None:
    policy = PolicyServer(tls, f"version: STSv1\nmode: enforce\nmx: {policy_mx}\nmax_age: 86400\n")
    try:
        dns_server.add("example.org", "MX", "10 mx1.example.org.").add("mx1.example.org", "A", "127.0.0.1")
        dns_server.add("_mta-sts.example.org", "TXT", txt("v=STSv1; id=20261128"))
        config, queue, capture = mx_setup(
            tmp_path, sink, dns_server, tls,
            ca_file=str(tls.ca_file), mta_sts_policy_host=f"127.0.0.1:{policy.port}", mta_sts_ca_file=str(tls.ca_file),
        )
        message_id = enqueue(queue, "bob@example.org")
        running.append(WorkerThread(build_worker(config, queue, capture)))
        if delivered:
            got = wait_until(lambda: sink.messages, what="delivery under the policy")
            assert got[0].tls.startswith("TLSv1.")
        else:
            state = wait_until(lambda: queue.read_state(message_id) if queue.read_state(message_id).attempts else None, what="a refused attempt")
            assert "4.7.5" in state.last_error and not sink.messages
        assert policy.requests and policy.requests[0] == ("mta-sts.example.org", "/.well-known/mta-sts.txt")
    finally:
        policy.stop()


def test_mta_sts_enforce_refuses_an_unverifiable_certificate(tmp_path, dns_server, tls, running) -> None:
    other = make_pki(tmp_path / "other", ["mx1.example.org"])  # a CA the gateway does not trust
    sink = SinkServer(tls_context=other.server_context())
    sink.start()
    policy = PolicyServer(tls, "version: STSv1\nmode: enforce\nmx: mx1.example.org\nmax_age: 86400\n")
    try:
        dns_server.add("example.org", "MX", "10 mx1.example.org.").add("mx1.example.org", "A", "127.0.0.1")
        dns_server.add("_mta-sts.example.org", "TXT", txt("v=STSv1; id=1"))
        config, queue, capture = mx_setup(
            tmp_path, sink, dns_server, tls,
            ca_file=str(tls.ca_file), mta_sts_policy_host=f"127.0.0.1:{policy.port}", mta_sts_ca_file=str(tls.ca_file),
        )
        message_id = enqueue(queue, "bob@example.org")
        running.append(WorkerThread(build_worker(config, queue, capture)))
        state = wait_until(lambda: queue.read_state(message_id) if queue.read_state(message_id).attempts else None, what="a refused attempt")
        assert "MTA-STS" in state.last_error and not sink.messages
    finally:
        policy.stop()
        sink.stop()


def test_worker_survives_and_retries_when_the_smarthost_is_down(tmp_path, tls, running) -> None:
    down = SinkServer(tls_context=tls.server_context(), auth=(USER, PASSWORD))
    down.start()
    down.stop()  # a port where nothing listens any more
    config, queue, capture = relay_setup(tmp_path, down, tls)
    message_id = enqueue(queue, "bob@example.org")
    running.append(WorkerThread(build_worker(config, queue, capture)))
    state = wait_until(lambda: queue.read_state(message_id) if queue.read_state(message_id).attempts >= 2 else None, what="two failed attempts")
    assert "cannot connect" in state.last_error
    assert state.next_attempt is not None
    assert timedelta(0) < state.next_attempt - queue.entry(message_id).message.received_at <= timedelta(seconds=30)
