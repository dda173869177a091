"""`Session` in-process: the real protocol machine and the real session, with a fake credential service.

No sockets and no subprocess: bytes go into `ServerConnection`, its events into `Session.handle`,
and the replies come out of `data_to_send()`. The credential service is a fake that knows one
login; the guard is the real one on its in-memory backend; messages go to a real capture store
in a temporary directory, so "250" is checked against a message that is really on disk.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from smtpgate.audit.events import AuditEvent
from smtpgate.credentials import AuthFailure, FailureReason, Principal
from smtpgate.credentials.model import CredentialKind
from smtpgate.credentials.scopes import Scopes
from smtpgate.delivery.capture import CaptureStore
from smtpgate.guard import Guard
from smtpgate.guard.memory import MemoryBackend
from smtpgate.smtp.protocol import NEED_DATA, PAUSED, ServerConnection, ServerFeatures
from smtpgate.smtp.session import Session, SessionServices

LOGIN, SECRET = "alice@example.com", "sgp_the-right-secret"


class FakeCredentials:
    """Knows one login and one secret; records what it was asked (never used for anything else)."""

    def __init__(self, scopes: Scopes) -> None:
        self.scopes = scopes
        self.asked: list[tuple[str, str]] = []

    def authenticate(self, login: str, secret: str, ip: str, *_: Any, **__: Any) -> Principal | AuthFailure:
        self.asked.append((login, ip))
        if login == LOGIN and secret == SECRET:
            return Principal(7, LOGIN, "ap_fake", CredentialKind.APP_PASSWORD, self.scopes)
        if login == "apps-only@example.com":
            return AuthFailure(FailureReason.APP_PASSWORD_REQUIRED, login)
        return AuthFailure(FailureReason.BAD_SECRET, login)


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


class Dialog:
    """One client connection to a Session, spoken line by line."""

    def __init__(self, tmp_path: Path, scopes: Scopes | None = None) -> None:
        self.credentials = FakeCredentials(scopes or Scopes((LOGIN,)))
        self.audit = Audit()
        self.store = CaptureStore(tmp_path / "capture")
        self.guard = Guard(MemoryBackend())
        services = SessionServices(credentials=self.credentials, spool=self.store, hostname="mx.test",  # type: ignore[arg-type]
                                   auth_failure_delay=0.0, guard=self.guard, audit=self.audit)
        self.session = Session(services, client_ip="192.0.2.10", listener="submissions", tls_info=lambda: "TLSv1.3")
        self.conn = ServerConnection(ServerFeatures("mx.test", tls_active=True))
        self.conn.start()
        self.greeting = self.conn.data_to_send()

    async def send(self, data: bytes) -> list[str]:
        """Feed the bytes, let the session decide every event, return the reply lines."""
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:  # a decision the session left unanswered would hang a real client
                raise AssertionError(f"undecided: {self.conn.pending_decision}")
            await self.session.handle(self.conn, event)
        return self.conn.data_to_send().decode().split("\r\n")[:-1]

    async def login(self, login: str = LOGIN, secret: str = SECRET) -> str:
        await self.send(b"EHLO client.test\r\n")
        token = base64.b64encode(f"\0{login}\0{secret}".encode()).decode()
        return (await self.send(f"AUTH PLAIN {token}\r\n".encode()))[-1]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_right_secret_is_235_and_audited_without_it(tmp_path: Path) -> None:
    dialog = Dialog(tmp_path)
    assert run(dialog.login()).startswith("235 2.7.0")
    assert dialog.credentials.asked == [(LOGIN, "192.0.2.10")]
    (event,) = dialog.audit.events
    assert (event.kind, event.result, event.credential_id, event.listener) == ("auth", "ok", "ap_fake", "submissions")
    assert SECRET not in repr(event)


@pytest.mark.parametrize(("login", "reply"), [(LOGIN, "535 5.7.8"), ("apps-only@example.com", "534 5.7.9")])
def test_a_failed_login_answers_its_code_and_counts_in_the_guard(tmp_path: Path, login: str, reply: str) -> None:
    dialog = Dialog(tmp_path)

    async def go() -> tuple[str, str]:
        first = await dialog.login(login, "wrong")
        second = (await dialog.send(b"MAIL FROM:<alice@example.com>\r\n"))[-1]
        return first, second

    first, after = run(go())
    assert first.startswith(reply) and after.startswith("530")  # still not authenticated
    (event,) = [e for e in dialog.audit.events if e.kind == "auth"]
    assert event.result == "fail" and event.reason == ("app-password-required" if "534" in reply else "bad-secret")


def test_a_sender_outside_the_scopes_is_553_and_an_allowed_one_250(tmp_path: Path) -> None:
    dialog = Dialog(tmp_path)

    async def go() -> tuple[str, str]:
        await dialog.login()
        refused = (await dialog.send(b"MAIL FROM:<ceo@example.com>\r\n"))[-1]
        accepted = (await dialog.send(b"MAIL FROM:<alice@example.com>\r\n"))[-1]
        return refused, accepted

    refused, accepted = run(go())
    assert refused.startswith("553 5.7.1") and accepted.startswith("250")
    refusal = next(e for e in dialog.audit.events if e.kind == "message")
    assert refusal.reason == "sender-not-allowed" and refusal.details["address"] == "ceo@example.com"


def test_the_quota_refuses_the_message_past_it_and_only_that_one(tmp_path: Path) -> None:
    dialog = Dialog(tmp_path, Scopes((LOGIN,), max_per_hour=1))
    message = (b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
               b"From: alice@example.com\r\nSubject: one\r\n\r\nhello\r\n.\r\n")

    async def go() -> tuple[list[str], str]:
        await dialog.login()
        first = await dialog.send(message)
        second = (await dialog.send(b"MAIL FROM:<alice@example.com>\r\n"))[-1]
        return first, second

    first, second = run(go())
    assert first[-1].startswith("250") and second.startswith("451 4.7.1") and "1 messages per hour" in second
    assert len(dialog.store.list()) == 1


def test_a_complete_message_is_250_only_once_it_is_on_disk(tmp_path: Path) -> None:
    dialog = Dialog(tmp_path)

    async def go() -> list[str]:
        await dialog.login()
        return await dialog.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
                                 b"From: Alice <alice@example.com>\r\nSubject: hi\r\n\r\n..dot\r\n.\r\n")

    replies = run(go())
    assert replies[-1].startswith("250 2.0.0")
    (stored,) = dialog.store.list()
    assert stored.mail_from == LOGIN and stored.rcpt_to == ("bob@example.org",) and stored.credential_id == "ap_fake"
    with dialog.store.open_raw(stored.id) as file:
        raw = file.read()
    assert raw.startswith(b"Received: from client.test ([192.0.2.10])") and raw.endswith(b"\r\n.dot\r\n")
    assert stored.id in replies[-1]


def test_a_forged_from_header_is_550_and_nothing_is_stored(tmp_path: Path) -> None:
    dialog = Dialog(tmp_path)

    async def go() -> str:
        await dialog.login()
        replies = await dialog.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
                                    b"From: ceo@example.com\r\nSubject: pay\r\n\r\nnow\r\n.\r\n")
        return replies[-1]

    assert run(go()).startswith("550 5.7.1")
    assert dialog.store.list() == []
