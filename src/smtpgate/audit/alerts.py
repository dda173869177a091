"""Where alerts go: the log always, a signed webhook and the account owner's mailbox if set.

Webhook requests are JSON POSTs signed like Stripe's: the header

    X-Smtpgate-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<unix time>." + body)>

so a receiver checks both integrity and freshness (reject a `t` older than a few minutes)
with one HMAC. Failures (network errors, 429 and 5xx) are retried with exponential
backoff; any other 4xx is final. Sending happens on a small thread pool, never on the
SMTP event loop, and each alert's delivery state is kept on its row (`alerts list`).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING

from smtpgate.audit.store import Alert, AuditStore

if TYPE_CHECKING:
    from smtpgate.delivery import Spool

log = logging.getLogger("smtpgate.alerts")

SIGNATURE_HEADER = "X-Smtpgate-Signature"
MAX_BACKOFF = 300.0


class Abandoned(Exception):
    """The server is stopping; the alert was not delivered and stays pending."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, *, now: float | None = None, tolerance: float = 300) -> bool:
    """What a receiver does: recompute the HMAC, compare in constant time, refuse stale requests."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookSink:
    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        attempts: int = 6,
        backoff: float = 2.0,
        timeout: float = 10.0,
        server: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._secret = secret
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.server = server
        self._sleep = sleep
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Shutting down: abandon retries in progress (their alerts stay `pending`)."""
        self._stopping.set()
        self._sleep = lambda seconds: None

    def body(self, alert: Alert) -> bytes:
        return json.dumps({**alert.to_json(), "server": self.server}, separators=(",", ":")).encode()

    def send(self, alert: Alert) -> bool:
        """POST the alert until it is taken (2xx) or the attempts run out; True when delivered."""
        import httpx  # here, not at the top: a server without a webhook never loads it (20 MiB a process)

        body = self.body(alert)
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            for attempt in range(self.attempts):
                if attempt:
                    delay = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1))
                    if self._sleep is time.sleep:
                        if self._stopping.wait(delay):
                            raise Abandoned
                    else:
                        self._sleep(delay)
                        if self._stopping.is_set():
                            raise Abandoned
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "smtpgate-alerts",
                    "X-Smtpgate-Alert-Id": str(alert.id),
                    SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
                }
                try:
                    response = client.post(self.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    log.warning("alert %s: webhook attempt %d failed: %s", alert.id, attempt + 1, type(exc).__name__)
                    continue
                if response.is_success:
                    return True
                log.warning("alert %s: webhook attempt %d answered %d", alert.id, attempt + 1, response.status_code)
                if response.status_code != 429 and response.status_code < 500:
                    return False
        return False


class EmailSink:
    """Mails the account's owner through the server's own spool (the same way as any message)."""

    def __init__(self, spool: Spool, owner_of: Callable[[str], str | None], *, sender: str, hostname: str) -> None:
        self._spool = spool
        self._owner_of = owner_of
        self.sender = sender
        self.hostname = hostname

    def message(self, alert: Alert, recipient: str) -> bytes:
        msg = EmailMessage()
        msg["From"] = f"smtpgate <{self.sender}>"
        msg["To"] = recipient
        msg["Subject"] = f"[smtpgate] {alert.summary}"[:200]
        msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
        msg["Message-ID"] = email.utils.make_msgid(domain=self.hostname)
        msg["Auto-Submitted"] = "auto-generated"
        lines = [
            f"smtpgate on {self.hostname} noticed something about your account {alert.login}:",
            "",
            f"  {alert.summary}",
            "",
            f"  rule:       {alert.rule}",
            f"  time:       {alert.time.isoformat(timespec='seconds')}",
            f"  credential: {alert.credential_id or '-'}",
            f"  from:       {alert.remote_ip or '-'}",
            "",
            "If this was not you or your application, ask your administrator to revoke the",
            "credential (smtpgate creds revoke ID) and issue a new one.",
        ]
        msg.set_content("\n".join(lines))
        return bytes(msg).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def send(self, alert: Alert) -> bool:
        from smtpgate.delivery import Envelope

        recipient = self._owner_of(alert.login) if alert.login else None
        if not recipient:
            return False
        writer = self._spool.begin(
            Envelope(
                mail_from=self.sender, rcpt_to=(recipient,), credential_id=None, account=None,
                client_ip="127.0.0.1", helo=self.hostname, received_at=datetime.now(UTC),
            )
        )
        try:
            writer.write(self.message(alert, recipient))
            writer.commit()
        except Exception:
            writer.abort()
            raise
        return True


class AlertDispatcher:
    """Stores each alert once (across workers), logs it, and hands it to the sinks."""

    def __init__(
        self,
        store: AuditStore,
        *,
        webhook: WebhookSink | None = None,
        email: EmailSink | None = None,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self._store = store
        self.webhook = webhook
        self.email = email
        self.on_alert = on_alert
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smtpgate-alerts")

    def raise_alert(self, alert: Alert) -> Alert | None:
        stored = self._store.add_alert(
            alert,
            webhook="pending" if self.webhook else "off",
            email="pending" if self.email and alert.login else "off",
        )
        if stored is None:
            return None  # the same alert was raised already (here or by another worker)
        log.warning(json.dumps({"alert": stored.to_json()}, separators=(",", ":")))
        if self.on_alert is not None:
            self.on_alert(stored)
        if self.webhook is not None:
            self._pool.submit(self._deliver, stored, "webhook", self.webhook.send)
        if self.email is not None and stored.login:
            self._pool.submit(self._deliver, stored, "email", self.email.send)
        return stored

    def _deliver(self, alert: Alert, channel: str, send: Callable[[Alert], bool]) -> None:
        assert alert.id is not None
        try:
            ok = send(alert)
        except Abandoned:
            return
        except Exception as exc:  # noqa: BLE001 - a broken sink must not stop the others
            log.error("alert %s: %s delivery failed: %s", alert.id, channel, type(exc).__name__)
            ok = False
        try:
            self._store.set_delivery(alert.id, **{channel: "sent" if ok else "failed"})
        except Exception as exc:  # noqa: BLE001
            log.error("alert %s: could not record the %s delivery: %s", alert.id, channel, type(exc).__name__)

    def close(self, wait: bool = True) -> None:
        """Stop: deliveries not started are dropped, retries in progress are abandoned."""
        if self.webhook is not None and not wait:
            self.webhook.stop()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
