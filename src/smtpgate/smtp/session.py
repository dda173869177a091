"""What one SMTP session decides: protocol events in, service calls, answers out.

The protocol (`protocol.py`) knows SMTP; the services know credentials and storage; this
module is the policy between them: who may authenticate, send as whom, and when a message
counts as accepted (on disk, fsync'd, before its 250). It never sees a socket.

Every AUTH attempt and every message decision becomes an audit event (never with the
secret), which is also its log line (the audit's JSON log): the session's own lines for
successful logins and accepted messages, the hot path, are at DEBUG; the guard is asked before each AUTH (banned source, protected login), told of
each failure, and keeps the quotas: checked at MAIL and RCPT, and taken atomically only
for a message that is about to be stored, so a refused message never counts. Metrics go
to `smtpgate.metrics`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import secrets
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from smtpgate.audit import events as ev
from smtpgate.audit.events import AuditEvent
from smtpgate.credentials import (
    AuthFailure,
    CredentialService,
    FailureReason,
    Principal,
    app_passwords,
)
from smtpgate.credentials.redaction import redact_login
from smtpgate.credentials.service import LEGACY_LISTENER, TOKEN_MECHANISMS
from smtpgate.deliverability.foresight import Foresight
from smtpgate.delivery import Envelope, MessageWriter, Spool
from smtpgate.delivery.headers import (
    addresses,
    header_values,
    mailboxes,
    shown_addresses,
)
from smtpgate.errors import Unavailable as StoreUnavailable  # the store's, or any dependency's
from smtpgate.guard import (
    FailureOutcome,
    Guard,
    GuardUnavailable,
    QuotaHit,
    QuotaPlan,
    Refusal,
    Throttled,
)
from smtpgate.metrics import metrics
from smtpgate.smtp.protocol import (
    AUTH_CREDENTIALS_INVALID,
    AUTH_TEMPORARY_FAILURE,
    AuthAborted,
    AuthAttempt,
    AuthKeysNeeded,
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
from smtpgate.smtp.sasl import ScramCandidate, ScramKeys

log = logging.getLogger("smtpgate.session")

APP_PASSWORD_REQUIRED = Reply(534, "5.7.9", "Application-specific password required")
SENDER_NOT_ALLOWED = Reply(553, "5.7.1", "Sender address not allowed for this credential")
STORAGE_FAILED = Reply(451, "4.3.0", "Could not store the message, try again later")
NO_FROM_HEADER = Reply(550, "5.6.0", "Message has no From: header (RFC 5322 requires one)")
BANNED = Reply(421, "4.7.0", "Too many failed logins from your address, try again later")
# the credential of an open session was revoked, expired or disabled meanwhile: a 4xx, so that a
# client with a rotated secret reconnects and sends with its successor
CREDENTIAL_ENDED = Reply(421, "4.7.0", "Your credential is no longer valid, closing connection; authenticate again")
GUARD_UNAVAILABLE = Reply(451, "4.3.0", "Temporary failure checking the sending quota, try again later")
NULL_SENDER_REFUSED = Reply(550, "5.7.1", "Null sender <> not allowed for submission")
RECIPIENT_NOT_ALLOWED = Reply(550, "5.7.1", "Recipient not allowed for this device")
DEVICE_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
DEVICE_TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first: this device is set up for TLS")
# The header fields that say who sent a message; each must be an address of the credential.
SENDER_FIELDS = ("From", "Sender", "Resent-From", "Resent-Sender")


def quota_reply(hit: QuotaHit) -> Reply:
    """451 4.7.1 for a message quota, 452 4.5.3 for a recipient quota (RFC 3463)."""
    per = f"{hit.limit} {hit.kind} per {hit.period}"
    if hit.kind == "messages":
        return Reply(451, "4.7.1", f"Message quota of this {hit.scope} reached ({per}), try again later")
    return Reply(452, "4.5.3", f"Recipient quota of this {hit.scope} reached ({per}), try again later")


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None: ...


@dataclass(frozen=True)
class MessagePolicy:
    """What authenticated submission accepts beyond the sender scopes ([smtp] keys).

    `allow_null_sender`: `MAIL FROM:<>` is for notifications a mail server sends (RFC 5321
    4.5.5); from a client it makes a message whose failures nobody hears of, so it is
    refused unless an application that sends receipts or DSNs needs it.
    `display_name_address`: "refuse" / "flag" (accept, audit and log) / "allow" a display
    name that shows another address than the real one (`"ceo@corp" <intern@corp>`).
    `received_auth`: "token" puts an opaque per-message token in the Received: header (the
    audit ties it to the credential), "none" puts nothing; the credential id never shows.
    """

    allow_null_sender: bool = False
    display_name_address: str = "refuse"
    received_auth: str = "token"


@dataclass(frozen=True)
class SessionServices:
    """Everything a session needs from the rest of the server."""

    credentials: CredentialService
    spool: Spool  # where accepted messages go: the capture store, or the delivery queue
    hostname: str
    auth_failure_delay: float  # seconds every failed AUTH takes, whatever its reason
    guard: Guard | None = None
    audit: AuditSink | None = None
    foresight: Foresight | None = None  # DMARC refusals downstream, seen at the end of DATA
    disk: Executor | None = None  # spool commits (fsync); None: the loop's default executor
    policy: MessagePolicy = field(default_factory=MessagePolicy)
    app_password_page: str = ""  # where owners make app passwords (the web console), named in 534 5.7.9


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
        self._spool: MessageWriter | None = None
        self.mechanism = ""
        self._tls_version = ""
        self._plan = QuotaPlan()
        self._held = 0.0
        self._flags: list[dict[str, object]] = []  # what "flag" policies noticed in this message
        self._received_token = ""

    async def handle(self, conn: ServerConnection, event: Event) -> None:
        """Act on one event; every decision event is answered before this returns."""
        if isinstance(event, MessageData):
            if self._spool is not None:
                self._spool.write(event.data)
        elif isinstance(event, Hello):
            self.helo = event.name
        elif isinstance(event, AuthAttempt):
            await self._authenticate(conn, event)
        elif isinstance(event, AuthKeysNeeded):
            await self._supply_scram_keys(conn, event)
        elif isinstance(event, AuthAborted):
            await self._auth_aborted(conn, event)
        elif isinstance(event, MailFrom):
            await self._mail_from_decision(conn, event)
        elif isinstance(event, RcptTo):
            await self._rcpt_decision(conn, event)
        elif isinstance(event, DataStart):
            await self._open_spool(conn)
        elif isinstance(event, MessageComplete):
            await self._complete(conn)
        elif isinstance(event, MessageRejected):
            self._message_refused(ev.PROTOCOL, {"reply": f"{event.reply.code} {event.reply.enhanced}".strip()})
            self.reset_transaction()
        elif isinstance(event, (Reset, ConnectionLost)):
            self.reset_transaction()

    # ------------------------------------------------------------------ audit

    def _tls(self) -> str:
        if not self._tls_version:
            self._tls_version = (self._tls_info() or "").partition(" ")[0]
        return self._tls_version

    def _record(self, kind: str, result: str, reason: str, *, login: str | None = None,
                credential_id: str | None = None, mechanism: str | None = None,
                details: dict[str, object] | None = None) -> None:
        audit = self._services.audit
        if audit is None:
            return
        principal = self.principal
        if principal is not None and principal.device:  # every event of a device's session names it
            details = {"device": principal.device, **(details or {})}
        audit.record(AuditEvent(
            kind=kind, result=result, reason=reason, listener=self.listener, remote_ip=self.client_ip,
            tls=self._tls(), mechanism=self.mechanism if mechanism is None else mechanism,
            login=login if login is not None else (principal.login if principal else ""),
            credential_id=credential_id if credential_id is not None else (principal.credential_id if principal else None),
            details=details or {},
        ))

    def _message_refused(self, reason: str, details: dict[str, object] | None = None) -> None:
        metrics().messages.labels("rejected", reason).inc()
        self._record(ev.MESSAGE, ev.FAIL, reason, details={"from": self._mail_from, **(details or {})})

    # ------------------------------------------------------------------ AUTH

    async def _authenticate(self, conn: ServerConnection, event: AuthAttempt) -> None:
        started = time.monotonic()
        guard = self._services.guard
        if guard is not None:
            admission = await guard.before_auth(self.client_ip, redact_login(event.login), guessable=_guessable(event))
            if isinstance(admission, Refusal):
                await self._auth_refused(conn, event, admission.reason, started)
                return
            self._held = admission.seconds if isinstance(admission, Throttled) else 0.0
        try:
            result = await asyncio.to_thread(
                self._services.credentials.authenticate,
                event.login, event.secret, self.client_ip, True, mechanism=event.mechanism, proven=event.proven,
                authzid=event.authzid, listener=self.listener,
            )
        except StoreUnavailable as exc:
            log.error("auth %s from %s: credential store unavailable: %s", redact_login(event.login), self.client_ip, exc)
            self._auth_metrics(event.mechanism, ev.FAIL, ev.STORE_UNAVAILABLE, started)
            self._record(ev.AUTH, ev.FAIL, ev.STORE_UNAVAILABLE, login=event.login, mechanism=event.mechanism)
            conn.reject(AUTH_TEMPORARY_FAILURE)
            return
        if isinstance(result, Principal) and result.device_tls not in (None, "none") and not self._tls():
            # a device set up for TLS logs in without it: someone stripped STARTTLS, or the
            # device was reset; either way not accepted as if nothing happened
            log.warning("device %s logged in without TLS from %s: refused", result.device, self.client_ip)
            self._record(ev.AUTH, ev.FAIL, ev.TLS_REQUIRED, login=event.login, credential_id=result.credential_id,
                         mechanism=event.mechanism, details={"device": result.device})
            await self._pad(started)
            self._auth_metrics(event.mechanism, ev.FAIL, ev.TLS_REQUIRED, started)
            conn.reject(DEVICE_TLS_REQUIRED)
            return
        if isinstance(result, Principal):
            self.principal = result
            self.mechanism = event.mechanism
            self._plan_quotas(result)
            log.debug("auth ok login=%s credential=%s ip=%s mech=%s", redact_login(result.login), result.credential_id, self.client_ip, event.mechanism)
            self._auth_metrics(event.mechanism, ev.OK, "", started)
            self._record(ev.AUTH, ev.OK, "", login=event.login or result.login, credential_id=result.credential_id,
                         details={"held": round(self._held, 3)} if self._held else None)
            self._held = 0.0
            conn.accept()
            return
        log.info(
            "auth failed login=%s credential=%s ip=%s mech=%s reason=%s",
            redact_login(result.login), result.credential_id or "-", self.client_ip, event.mechanism, result.reason,
        )
        outcome = FailureOutcome()
        if guard is not None and result.reason is FailureReason.CANARY:
            outcome = await guard.leaked_secret_used(self.client_ip, f"the canary credential {result.credential_id}")
        elif guard is not None and result.reason not in (FailureReason.APP_PASSWORD_REQUIRED, FailureReason.IDP_UNAVAILABLE):
            outcome = await guard.auth_failed(self.client_ip, redact_login(event.login))
        self._after_failure(event, str(result.reason), result.credential_id, outcome, device=result.device)
        await self._pad(started)
        self._auth_metrics(event.mechanism, ev.FAIL, str(result.reason), started)
        conn.reject(_failure_reply(result, self._services.app_password_page))
        if outcome.source_banned:
            conn.refuse(BANNED)

    def _plan_quotas(self, principal: Principal) -> None:
        guard = self._services.guard
        if guard is not None:
            scopes = principal.scopes
            self._plan = guard.quota_plan(
                credential_id=principal.credential_id, account_id=principal.account_id,
                max_per_hour=scopes.max_per_hour, max_per_day=scopes.max_per_day,
                max_rcpt_per_hour=scopes.max_rcpt_per_hour, max_rcpt_per_day=scopes.max_rcpt_per_day,
            )

    async def bind_device(self) -> bool:
        """Legacy listener, before the greeting: a device without AUTH is known by its address;
        the session is then its credential's, as if it had logged in. True when bound."""
        if self.listener != LEGACY_LISTENER:
            return False
        try:
            found = await asyncio.to_thread(self._services.credentials.device_for_address, self.client_ip)
        except StoreUnavailable as exc:
            log.error("device look-up for %s: credential store unavailable: %s", self.client_ip, exc)
            return False
        if found is None:
            return False
        if isinstance(found, AuthFailure):  # its account is disabled, or it expired
            self._record(ev.AUTH, ev.FAIL, str(found.reason), login=found.login, credential_id=found.credential_id,
                         mechanism=ev.DEVICE_ADDRESS, details={"device": found.device} if found.device else None)
            return False
        self.principal = found
        self.mechanism = ev.DEVICE_ADDRESS
        self._plan_quotas(found)
        self._record(ev.AUTH, ev.OK, "", login=found.login, credential_id=found.credential_id)
        return True

    def tls_started(self) -> None:
        """RFC 3207: what was learnt before STARTTLS is forgotten. A login made in clear on
        the legacy listener must be made again; a device known by its address stays bound."""
        if self.principal is not None and self.mechanism != ev.DEVICE_ADDRESS:
            self.principal, self.mechanism, self._plan = None, "", QuotaPlan()
        self._tls_version = ""

    async def _supply_scram_keys(self, conn: ServerConnection, event: AuthKeysNeeded) -> None:
        """SCRAM-SHA-256 mid-exchange: the login's stored salt and keys (the proof is checked next)."""
        try:
            stored = await asyncio.to_thread(self._services.credentials.scram_keys, event.login)
        except StoreUnavailable as exc:
            log.error("auth %s from %s: credential store unavailable: %s", redact_login(event.login), self.client_ip, exc)
            self._record(ev.AUTH, ev.FAIL, ev.STORE_UNAVAILABLE, login=event.login, mechanism=event.mechanism)
            conn.reject(AUTH_TEMPORARY_FAILURE)
            return
        candidates = tuple(ScramCandidate(ref, stored_key, server_key) for ref, stored_key, server_key in stored.keys)
        conn.supply_keys(ScramKeys(stored.salt, stored.iterations, candidates))

    async def _auth_aborted(self, conn: ServerConnection, event: AuthAborted) -> None:
        """A cancelled (``*``) or malformed exchange: answered 501 already, but it is a failed
        AUTH all the same (a SCRAM probe that reads the salt and leaves must not go unseen)."""
        reason = ev.SASL_CANCELLED if event.reason == "cancelled" else ev.SASL_MALFORMED
        log.info("auth aborted login=%s ip=%s mech=%s reason=%s", redact_login(event.login) or "-", self.client_ip, event.mechanism, reason)
        self._auth_metrics(event.mechanism, ev.FAIL, reason, time.monotonic())
        outcome = FailureOutcome()
        if self._services.guard is not None:
            outcome = await self._services.guard.auth_failed(self.client_ip, redact_login(event.login))
        self._after_failure(event, reason, None, outcome)
        if outcome.source_banned:
            conn.refuse(BANNED)

    async def _auth_refused(self, conn: ServerConnection, event: AuthAttempt, reason: str, started: float) -> None:
        """The guard said no before the secret was looked at: a banned source, a protected login."""
        if reason == ev.BANNED:
            log.info("auth refused login=%s ip=%s reason=banned", redact_login(event.login), self.client_ip)
            self._auth_metrics(event.mechanism, ev.FAIL, reason, started)
            self._record(ev.AUTH, ev.FAIL, reason, login=event.login, mechanism=event.mechanism)
            conn.refuse(BANNED)
            return
        log.info("auth refused login=%s ip=%s reason=%s", redact_login(event.login), self.client_ip, reason)
        assert self._services.guard is not None
        outcome = await self._services.guard.auth_failed(self.client_ip, redact_login(event.login))
        self._after_failure(event, reason, None, outcome)
        await self._pad(started)
        self._auth_metrics(event.mechanism, ev.FAIL, reason, started)
        conn.reject(AUTH_CREDENTIALS_INVALID)  # looks like any other failure
        if outcome.source_banned:
            conn.refuse(BANNED)

    def _after_failure(self, event: AuthAttempt | AuthAborted, reason: str, credential_id: str | None,
                       outcome: FailureOutcome, *, device: str = "") -> None:
        details: dict[str, object] = {"device": device} if device else {}
        if outcome.login_failures:
            details["login_failures"] = outcome.login_failures
            details["source_failures"] = outcome.ip_failures
        if outcome.new_bans:
            details["bans"] = [{"network": b.network, "until": int(b.until), "strikes": b.strikes} for b in outcome.new_bans]
            for ban in outcome.new_bans:
                metrics().bans.labels("address" if ban.single_address else "network").inc()
        if self._held:
            details["held"] = round(self._held, 3)  # the login is protected: this try waited its turn
            self._held = 0.0
        if outcome.spray_started:
            details["spray"] = True  # the audit raises the password-spray alert on this
        if outcome.login_protected:
            details["login_protected"] = True
            log.warning("login %s is under attack: account-password tries from new sources are held for now", redact_login(event.login))
        self._record(ev.AUTH, ev.FAIL, reason, login=event.login, credential_id=credential_id,
                     mechanism=event.mechanism, details=details)

    @staticmethod
    def _auth_metrics(mechanism: str, result: str, reason: str, started: float) -> None:
        m = metrics()
        m.auth_attempts.labels(mechanism, result, reason or "ok").inc()
        m.auth_seconds.labels(mechanism, result).observe(time.monotonic() - started)

    async def _pad(self, started: float) -> None:
        """Make every failure take the same time, so its timing tells nothing."""
        delay = self._services.auth_failure_delay
        remaining = delay - (time.monotonic() - started)
        await asyncio.sleep(max(0.0, remaining) + random.uniform(0, delay * 0.2))

    # ------------------------------------------------------------ transaction

    async def _mail_from_decision(self, conn: ServerConnection, event: MailFrom) -> None:
        if self.principal is None:  # the legacy listener: no AUTH, and no device has this address
            log.info("legacy listener: MAIL without AUTH from %s, which no device has", self.client_ip)
            self._message_refused(ev.AUTH_REQUIRED, {"where": "mail-from", "address": event.address})
            conn.reject(DEVICE_AUTH_REQUIRED)
            return
        if not await self._still_admitted():
            log.info("credential ended during the session credential=%s ip=%s", self.principal.credential_id, self.client_ip)
            self._message_refused(ev.CREDENTIAL_ENDED, {"where": "mail-from"})
            conn.refuse(CREDENTIAL_ENDED)
            return
        if not event.address and not self._services.policy.allow_null_sender:
            log.info("null sender refused credential=%s ip=%s", self.principal.credential_id, self.client_ip)
            self._message_refused(ev.NULL_SENDER, {"where": "mail-from"})
            conn.reject(NULL_SENDER_REFUSED)
            return
        if event.address and not self.principal.scopes.allows_sender(event.address):
            log.info("sender refused credential=%s from=%s ip=%s", self.principal.credential_id, event.address, self.client_ip)
            self._message_refused(ev.SENDER_NOT_ALLOWED, {"where": "mail-from", "address": event.address})
            conn.reject(SENDER_NOT_ALLOWED)
            return
        self._mail_from = event.address
        self._rcpt_to = []
        refusal = await self._quota_refusal(messages=1, recipients=0)
        if refusal is not None:
            self._mail_from = ""
            conn.reject(refusal)
            return
        conn.accept()

    async def _rcpt_decision(self, conn: ServerConnection, event: RcptTo) -> None:
        if self.principal is not None and not self.principal.scopes.allows_recipient(event.address):
            log.info("recipient refused credential=%s ip=%s", self.principal.credential_id, self.client_ip)
            self._message_refused(ev.RECIPIENT_NOT_ALLOWED, {"recipient": event.address})
            conn.reject(RECIPIENT_NOT_ALLOWED)
            return
        refusal = await self._quota_refusal(messages=0, recipients=len(self._rcpt_to) + 1, recipient=event.address)
        if refusal is not None:
            conn.reject(refusal)
            return
        self._rcpt_to.append(event.address)
        conn.accept()

    async def _quota_refusal(self, *, messages: int, recipients: int, recipient: str = "") -> Reply | None:
        """Would this stay within the principal's quotas? A refusal reply (and its audit) if not."""
        if not self._plan.counters:
            return None
        assert self._services.guard is not None
        try:
            hit = await self._services.guard.quota_check(self._plan, messages=messages, recipients=recipients)
        except GuardUnavailable as exc:
            log.error("quota check failed: %s", exc)
            self._message_refused(ev.GUARD_UNAVAILABLE)
            return GUARD_UNAVAILABLE
        if hit is None:
            return None
        return self._quota_hit(hit, {"recipient": recipient} if recipient else {})

    def _quota_hit(self, hit: QuotaHit, details: dict[str, object]) -> Reply:
        metrics().quota_hits.labels(hit.kind, hit.scope, hit.period).inc()
        log.info("quota reached credential=%s %s per %s (%s) ip=%s",
                 self.principal.credential_id if self.principal else "-", hit.kind, hit.period, hit.scope, self.client_ip)
        self._message_refused(ev.QUOTA, {**hit.to_json(), **details})
        return quota_reply(hit)

    async def _open_spool(self, conn: ServerConnection) -> None:
        """Create the message's file in the disk pool: a create can wait for the file
        system's journal, and the event loop must not wait with it."""
        assert self.principal is not None
        now = datetime.now(UTC)
        self._flags, self._received_token = [], ""
        envelope = Envelope(
            mail_from=self._mail_from,
            rcpt_to=tuple(self._rcpt_to),
            credential_id=self.principal.credential_id,
            account=self.principal.login,
            client_ip=self.client_ip,
            helo=self.helo,
            received_at=now,
        )
        try:
            spool = await asyncio.get_running_loop().run_in_executor(self._services.disk, self._services.spool.begin, envelope)
            spool.write(self._received_header(spool.message_id, now))
        except OSError as exc:
            log.error("cannot open the spool: %s", exc)
            self._message_refused(ev.STORAGE_FAILED)
            conn.reject(STORAGE_FAILED)
            return
        self._spool = spool
        conn.accept()

    def _received_header(self, message_id: str, now: datetime) -> bytes:
        """Every recipient reads this: it names no credential, at most an opaque token that
        the audit event of the message ties to one ([smtp] received_auth)."""
        tls = self._tls_info() or "no TLS"
        auth = ""
        if self._services.policy.received_auth == "token":
            self._received_token = secrets.token_hex(8)
            auth = f" (auth {self._received_token})"
        # RFC 3848: S for TLS, A for AUTH (a device known by its address did not authenticate)
        protocol = "ESMTP" + ("S" if self._tls_info() else "") + ("" if self.mechanism == ev.DEVICE_ADDRESS else "A")
        header = (
            f"Received: from {self.helo or 'unknown'} ([{self.client_ip}])\r\n"
            f"\tby {self._services.hostname} (smtpgate) with {protocol} id {message_id}\r\n"
            f"\t(tls {tls}){auth};\r\n"
            f"\t{email.utils.format_datetime(now)}\r\n"
        )
        return header.encode("utf-8", "replace")

    async def _complete(self, conn: ServerConnection) -> None:
        started = time.monotonic()
        spool, self._spool = self._spool, None
        if spool is None:  # the spool could not be opened; DataStart was refused
            self._message_refused(ev.STORAGE_FAILED)
            conn.reject(STORAGE_FAILED)
            return
        refusal = self._check_headers(spool) or await self._foresee(spool)
        if refusal is not None:
            spool.abort()
            conn.reject(refusal)
            return
        if self._plan.counters:
            assert self._services.guard is not None
            try:
                hit = await self._services.guard.quota_take(self._plan, recipients=len(self._rcpt_to))
            except GuardUnavailable as exc:
                log.error("quota update failed: %s", exc)
                spool.abort()
                self._message_refused(ev.GUARD_UNAVAILABLE)
                conn.reject(GUARD_UNAVAILABLE)
                return
            if hit is not None:  # another session of the same principal took the last of it
                spool.abort()
                conn.reject(self._quota_hit(hit, {"at": "data"}))
                return
        try:
            stored = await asyncio.get_running_loop().run_in_executor(self._services.disk, spool.commit)
        except OSError as exc:
            log.error("cannot store message: %s", exc)
            spool.abort()
            await self._refund()
            self._message_refused(ev.STORAGE_FAILED)
            conn.reject(STORAGE_FAILED)
            return
        assert self.principal is not None
        log.debug(
            "accepted id=%s credential=%s from=%s rcpts=%d size=%d ip=%s",
            stored.id, self.principal.credential_id, self._mail_from or "<>", len(self._rcpt_to), stored.size, self.client_ip,
        )
        m = metrics()
        m.messages.labels("accepted", ev.ACCEPTED).inc()
        m.recipients.inc(len(self._rcpt_to))
        m.message_bytes.inc(stored.size)
        m.message_seconds.observe(time.monotonic() - started)
        details: dict[str, object] = {
            "id": stored.id, "from": self._mail_from, "rcpts": len(self._rcpt_to), "size": stored.size,
            "domains": sorted({r.rpartition("@")[2].lower() for r in self._rcpt_to})[:50],
        }
        if self._received_token:
            details["received_token"] = self._received_token
        if self._flags:
            details["flags"] = [{"reason": ev.DISPLAY_NAME_ADDRESS, **flag} for flag in self._flags]
        self._record(ev.MESSAGE, ev.OK, ev.ACCEPTED, details=details)
        conn.accept(f"Ok: queued as {stored.id}")

    async def _still_admitted(self) -> bool:
        assert self.principal is not None
        try:
            return await asyncio.to_thread(self._services.credentials.still_admitted, self.principal.credential_id)
        except Exception as exc:  # noqa: BLE001 - an unreachable store must not stop mail that was admitted
            log.warning("could not check the session's credential: %s", type(exc).__name__)
            return True

    async def _refund(self) -> None:
        if self._plan.counters and self._services.guard is not None:
            try:
                await self._services.guard.quota_refund(self._plan, recipients=len(self._rcpt_to))
            except GuardUnavailable as exc:
                log.error("quota refund failed: %s", exc)

    def _check_headers(self, spool: MessageWriter) -> Reply | None:
        """From:, and Sender:, Resent-From:, Resent-Sender: when present, must be addresses
        this credential may use, and their display names must not show another address."""
        assert self.principal is not None
        block = spool.headers_section()
        if block is None:
            self._message_refused(ev.HEADER_TOO_LARGE)
            return Reply(552, "5.3.4", "Header section too large")
        if not header_values(block, "From"):
            self._message_refused(ev.NO_FROM_HEADER)
            return NO_FROM_HEADER
        for name in SENDER_FIELDS:
            for display, address in mailboxes(block, name):
                if not address or not self.principal.scopes.allows_sender(address):
                    log.info(
                        "header %s refused credential=%s address=%s ip=%s",
                        name, self.principal.credential_id, address or "(unparsable)", self.client_ip,
                    )
                    self._message_refused(ev.SENDER_NOT_ALLOWED, {"where": name, "address": address})
                    return Reply(550, "5.7.1", f"{name}: header address not allowed for this credential")
                refusal = self._check_display_name(name, display, address)
                if refusal is not None:
                    return refusal
        return None

    async def _foresee(self, spool: MessageWriter) -> Reply | None:
        """550 5.7.26 when the From: domain's DMARC would refuse it downstream and policy says so."""
        foresight = self._services.foresight
        block = spool.headers_section()
        if foresight is None or block is None:
            return None
        found = [a for a in addresses(block, "From") if a]
        if not found:
            return None
        try:
            verdict = await foresight.check(found[0].rpartition("@")[2], self._mail_from)
        except Exception:
            log.exception("DMARC foresight failed")
            return None
        if verdict is None or not verdict.refuse:
            return None
        self._message_refused(ev.DMARC_MISALIGNED, {"domain": verdict.domain, "policy": verdict.policy})
        return Reply(550, "5.7.26", verdict.reply_lines)

    def _check_display_name(self, name: str, display: str, address: str) -> Reply | None:
        """`"carol@example.test" <alice@example.com>`: what a reader sees is not who sent it."""
        policy = self._services.policy.display_name_address
        if policy == "allow":
            return None
        shown = [a for a in shown_addresses(display) if a.casefold() != address.casefold()]
        if not shown:
            return None
        assert self.principal is not None
        details: dict[str, object] = {"where": name, "address": address, "shown": shown[0][:254]}
        log.info("header %s display name shows %s credential=%s address=%s ip=%s (%s)",
                 name, shown[0][:254], self.principal.credential_id, address, self.client_ip, policy)
        if policy == "flag":
            self._flags.append(details)
            return None
        self._message_refused(ev.DISPLAY_NAME_ADDRESS, details)
        return Reply(550, "5.7.1", f"{name}: display name is an address other than the sender's")

    def reset_transaction(self) -> None:
        if self._spool is not None:
            self._spool.abort()
            self._spool = None
        self._mail_from = ""
        self._rcpt_to = []
        self._flags = []
        self._received_token = ""


def _guessable(event: AuthAttempt) -> bool:
    """Could this secret be an account password? App passwords and tokens cannot be guessed."""
    return event.mechanism not in TOKEN_MECHANISMS and not app_passwords.looks_like_app_password(event.secret)


def _failure_reply(failure: AuthFailure, app_password_page: str = "") -> Reply:
    """One reply for every failure, except the one a real user needs to know about."""
    if failure.reason is FailureReason.APP_PASSWORD_REQUIRED:
        if app_password_page:  # the user's next step: the page where app passwords are made
            return Reply(534, "5.7.9", f"{APP_PASSWORD_REQUIRED.text}; make one at {app_password_page}")
        return APP_PASSWORD_REQUIRED
    if failure.reason is FailureReason.IDP_UNAVAILABLE:  # an identity provider's keys are out of reach
        return AUTH_TEMPORARY_FAILURE
    return AUTH_CREDENTIALS_INVALID
