"""One real server for the incident tests: relaying to a sink on loopback (so "held" means
mail that would otherwise leave), the guard banning loopback sources, alerts to a signed
webhook receiver, leak reports checked against a P-256 key of the test's own."""

from __future__ import annotations

import base64
import json
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smtpgate.credentials.api_tokens import IssuedApiToken
from tests.admin.conftest import start_with_role_tokens
from tests.audit.receiver import Receiver
from tests.audit.test_alerts_e2e import SECRET, write_secret
from tests.cli.conftest import Cli
from tests.delivery.harness import LoopbackPki, make_pki, relay_to_sink
from tests.delivery.sink import SinkServer
from tests.guard.servers import client, guarded_config, set_section
from tests.smtp.server_harness import RunningServer

KEY_ID = "test-scanner-key-1"


@dataclass
class Gate:
    server: RunningServer
    cli: Cli
    sink: SinkServer
    receiver: Receiver
    base: str
    tokens: dict[str, IssuedApiToken]
    leak_key: ec.EllipticCurvePrivateKey
    deferring: dict[str, bool]

    def api(self, role: str | None = "operator"):
        import httpx

        headers = {"Authorization": f"Bearer {self.tokens[role].secret}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.leak_key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def send(self, source: str, login: str, secret: str, rcpts: list[str], subject: str) -> str:
        """One message over STARTTLS from `source`; the queue id of the 250 reply."""
        with client(self.server, source) as smtp:
            smtp.login(login, secret)
            smtp.mail(login)
            for rcpt in rcpts:
                assert smtp.rcpt(rcpt)[0] == 250
            code, reply = smtp.data(f"From: {login}\r\nTo: {rcpts[0]}\r\nSubject: {subject}\r\n\r\nHello\r\n".encode())
            assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[-1]

    def delivered(self, subject: str) -> bool:
        return any(f"Subject: {subject}\r\n".encode() in m.data for m in list(self.sink.messages))

    def login_refused(self, source: str, login: str, secret: str) -> bool:
        """True when the source is turned away (banned) or the secret refused."""
        try:
            with client(self.server, source) as smtp:
                smtp.login(login, secret)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected,
                smtplib.SMTPResponseException, ConnectionError):
            return True
        return False


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    root = tmp_path_factory.mktemp("incidents")
    pki: LoopbackPki = make_pki(root / "pki", ["sink.example.test"])
    deferring = {"on": True}
    sink = SinkServer(tls_context=pki.server_context(),
                      script=lambda stage, arg: "451 4.3.0 try later" if stage == "mail" and deferring["on"] else None)
    sink.start()
    with Receiver(SECRET) as receiver:
        config = guarded_config(root / "data", backend="memory", alerts={
            "webhook_url": f'"{receiver.url}"', "webhook_backoff": '"100ms"'})
        write_secret(config)
        relay_to_sink(config, sink.port, pki.ca_file, retry_initial="300ms", retry_max="600ms")
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        keys = config.parent / "leak-report-keys.json"
        keys.write_text(json.dumps({"public_keys": [{"key_identifier": KEY_ID, "key": pem.decode(), "is_current": True}]}))
        set_section(config, "incidents", {"leak_report_keys": f'"{keys}"', "on_leak": '"revoke"', "ban_for": '"1h"'})
        server = RunningServer(config)
        base, tokens = start_with_role_tokens(server)
        try:
            yield Gate(server, Cli(config), sink, receiver, base, tokens, key, deferring)
        finally:
            server.close()
            sink.stop()

