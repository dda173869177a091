"""What one SMTP session decides: protocol events in, service calls, answers out.

The protocol (`protocol.py`) knows SMTP; the services know credentials and storage; this
module is the policy between them: who may authenticate, send as whom, and when a message
counts as accepted (on disk, fsync'd, before its 250). It never sees a socket.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Protocol

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason, Principal
from smtpgate.delivery import Envelope, Spool, SpoolWriter
from smtpgate.smtp.protocol import (
    AUTH_CREDENTIALS_INVALID,
    AUTH_TEMPORARY_FAILURE,
    AuthAttempt,
    ConnectionLost,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageComplete,
    MessageData,
    MessageRejected,
    RcptTo,
    Reply,
    Reset,
    ServerConnection,
)
from smtpgate.store.db import StoreUnavailable

log = logging.getLogger("smtpgate.session")

APP_PASSWORD_REQUIRED = Reply(534, "5.7.9", "Application-specific password required")
SENDER_NOT_ALLOWED = Reply(553, "5.7.1", "Sender address not allowed for this credential")
STORAGE_FAILED = Reply(451, "4.3.0", "Could not store the message, try again later")
NO_FROM_HEADER = Reply(550, "5.6.0", "Message has no From: header (RFC 5322 requires one)")


@dataclass(frozen=True)
class SessionServices:
    """Everything a session needs from the rest of the server."""

    credentials: CredentialService
    spool: Spool  # where accepted messages go: the capture store, or the delivery queue
    hostname: str
    auth_failure_delay: float  # seconds every failed AUTH takes, whatever its reason


class TlsInfo(Protocol):
    def __call__(self) -> str: ...


class Session:
    def __init__(self, services: SessionServices, *, client_ip: str, listener: str, tls_info: TlsInfo) -> None:
        self._services = services
        self.client_ip = client_ip
        self.listener = listener
        self._tls_info = tls_info
        self.helo = ""
        self.principal: Principal | None = None
        self._mail_from = ""
        self._rcpt_to: list[str] = []
        self._spool: SpoolWriter | None = None

    async def handle(self, conn: ServerConnection, event: Event) -> None:
        """Act on one event; every decision event is answered before this returns."""
        if isinstance(event, MessageData):
            if self._spool is not None:
                self._spool.write(event.data)
        elif isinstance(event, Hello):
            self.helo = event.name
        elif isinstance(event, AuthAttempt):
            await self._authenticate(conn, event)
        elif isinstance(event, MailFrom):
            self._mail_from_decision(conn, event)
        elif isinstance(event, RcptTo):
            self._rcpt_to.append(event.address)
            conn.accept()
        elif isinstance(event, DataStart):
            self._open_spool(conn)
        elif isinstance(event, MessageComplete):
            await self._complete(conn)
        elif isinstance(event, (MessageRejected, Reset, ConnectionLost)):
            self.reset_transaction()

    # ------------------------------------------------------------------ AUTH

    async def _authenticate(self, conn: ServerConnection, event: AuthAttempt) -> None:
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(
                self._services.credentials.authenticate,
                event.login, event.secret, self.client_ip, True, mechanism=event.mechanism,
            )
        except StoreUnavailable as exc:
            log.error("auth %s from %s: credential store unavailable: %s", event.login, self.client_ip, exc)
            conn.reject(AUTH_TEMPORARY_FAILURE)
            return
        if isinstance(result, Principal):
            self.principal = result
            log.info("auth ok login=%s credential=%s ip=%s mech=%s", result.login, result.credential_id, self.client_ip, event.mechanism)
            conn.accept()
            return
        log.info(
            "auth failed login=%s credential=%s ip=%s mech=%s reason=%s",
            result.login, result.credential_id or "-", self.client_ip, event.mechanism, result.reason,
        )
        await self._pad(started)
        conn.reject(_failure_reply(result))

    async def _pad(self, started: float) -> None:
        """Make every failure take the same time, so its timing tells nothing."""
        delay = self._services.auth_failure_delay
        remaining = delay - (time.monotonic() - started)
        await asyncio.sleep(max(0.0, remaining) + random.uniform(0, delay * 0.2))

    # ------------------------------------------------------------ transaction

    def _mail_from_decision(self, conn: ServerConnection, event: MailFrom) -> None:
        assert self.principal is not None  # the protocol refuses MAIL before AUTH
        if event.address and not self.principal.scopes.allows_sender(event.address):
            log.info("sender refused credential=%s from=%s ip=%s", self.principal.credential_id, event.address, self.client_ip)
            conn.reject(SENDER_NOT_ALLOWED)
            return
        self._mail_from = event.address
        self._rcpt_to = []
        conn.accept()

    def _open_spool(self, conn: ServerConnection) -> None:
        assert self.principal is not None
        now = datetime.now(timezone.utc)
        try:
            spool = self._services.spool.begin(
                Envelope(
                    mail_from=self._mail_from,
                    rcpt_to=tuple(self._rcpt_to),
                    credential_id=self.principal.credential_id,
                    account=self.principal.login,
                    client_ip=self.client_ip,
                    helo=self.helo,
                    received_at=now,
                )
            )
            spool.write(self._received_header(spool.message_id, now))
        except OSError as exc:
            log.error("cannot open the spool: %s", exc)
            conn.reject(STORAGE_FAILED)
            return
        self._spool = spool
        conn.accept()

    def _received_header(self, message_id: str, now: datetime) -> bytes:
        assert self.principal is not None
        tls = self._tls_info() or "no TLS"
        header = (
            f"Received: from {self.helo or 'unknown'} ([{self.client_ip}])\r\n"
            f"\tby {self._services.hostname} (smtpgate) with ESMTPSA id {message_id}\r\n"
            f"\t(tls {tls}) (credential {self.principal.credential_id});\r\n"
            f"\t{email.utils.format_datetime(now)}\r\n"
        )
        return header.encode("utf-8", "replace")

    async def _complete(self, conn: ServerConnection) -> None:
        spool, self._spool = self._spool, None
        if spool is None:  # the spool could not be opened; DataStart was refused
            conn.reject(STORAGE_FAILED)
            return
        refusal = self._check_headers(spool)
        if refusal is not None:
            spool.abort()
            conn.reject(refusal)
            return
        try:
            stored = await asyncio.to_thread(spool.commit)
        except OSError as exc:
            log.error("cannot store message: %s", exc)
            spool.abort()
            conn.reject(STORAGE_FAILED)
            return
        assert self.principal is not None
        log.info(
            "accepted id=%s credential=%s from=%s rcpts=%d size=%d ip=%s",
            stored.id, self.principal.credential_id, self._mail_from or "<>", len(self._rcpt_to), stored.size, self.client_ip,
        )
        conn.accept(f"Ok: queued as {stored.id}")

    def _check_headers(self, spool: SpoolWriter) -> Reply | None:
        """From: (and Sender: when present) must be addresses this credential may use."""
        assert self.principal is not None
        block = spool.headers_section()
        if block is None:
            return Reply(552, "5.3.4", "Header section too large")
        headers = BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n\r\n")
        from_values = headers.get_all("From") or []
        if not from_values:
            return NO_FROM_HEADER
        for name in ("From", "Sender"):
            for _, address in email.utils.getaddresses(headers.get_all(name) or []):
                if not address or not self.principal.scopes.allows_sender(address):
                    log.info(
                        "header %s refused credential=%s address=%s ip=%s",
                        name, self.principal.credential_id, address or "(unparsable)", self.client_ip,
                    )
                    return Reply(550, "5.7.1", f"{name}: header address not allowed for this credential")
        return None

    def reset_transaction(self) -> None:
        if self._spool is not None:
            self._spool.abort()
            self._spool = None
        self._mail_from = ""
        self._rcpt_to = []


def _failure_reply(failure: AuthFailure) -> Reply:
    """One reply for every failure, except the one a real user needs to know about."""
    if failure.reason is FailureReason.APP_PASSWORD_REQUIRED:
        return APP_PASSWORD_REQUIRED
    return AUTH_CREDENTIALS_INVALID
