"""The relay route: everything through one smarthost, over TLS, with our own credential.

TLS is required (STARTTLS or implicit) and the certificate verified unless the config
says otherwise; AUTH happens only after TLS. Connections are pooled and reused, up to
`connections` at once, so a busy queue pays the TCP, TLS and AUTH handshakes once per
connection rather than once per message. A reused connection that the smarthost has
meanwhile closed is replaced once, transparently. The password is read (and decrypted)
when a connection opens, and re-read when its file changes: `smtpgate upstream
set-password` takes effect without a restart. A refused AUTH is our problem, not the
sender's: the mail stays queued (temporary) and the error is logged, without the secret.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass

import aiosmtplib

from smtpgate.config import Config
from smtpgate.delivery.outcome import (
    ConnectionProblem,
    Outcome,
    Outgoing,
    all_recipients,
    send_transaction,
)
from smtpgate.delivery.upstream import (
    UpstreamCredentialError,
    UpstreamPassword,
    UpstreamSecretStore,
    upstream_secrets,
)

__all__ = ["RelayRoute", "RelaySettings"]

log = logging.getLogger("smtpgate.delivery.relay")

IDLE_LIMIT = 60.0  # seconds an idle connection is kept before it is closed instead of reused


@dataclass(frozen=True)
class RelaySettings:
    host: str
    port: int
    implicit_tls: bool
    verify: bool
    ca_file: str
    username: str
    connections: int
    timeout: float
    local_hostname: str


class RelayRoute:
    name = "relay"

    def __init__(self, settings: RelaySettings, secrets: UpstreamSecretStore | None) -> None:
        self.settings = settings
        self.secrets = secrets
        self.remote = f"{settings.host}:{settings.port}"
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots = asyncio.Semaphore(settings.connections)
        self._password: UpstreamPassword | None = None
        self._password_stamp: object = None
        self._tls = self._tls_context()
        self.opened = 0  # connections opened so far (for the logs and the tests)

    @classmethod
    def from_config(cls, config: Config) -> RelayRoute:
        r = config.delivery.relay
        settings = RelaySettings(
            host=r.host,
            port=r.port,
            implicit_tls=r.tls == "implicit",
            verify=r.verify,
            ca_file=str(config.path(r.ca_file)) if r.ca_file else "",
            username=r.username,
            connections=r.connections,
            timeout=r.timeout.total_seconds(),
            local_hostname=config.hostname,
        )
        return cls(settings, upstream_secrets(config))

    def _tls_context(self) -> ssl.SSLContext:
        if not self.settings.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.settings.ca_file or None)

    def _current_password(self) -> UpstreamPassword | None:
        if not self.settings.username:
            return None
        if self.secrets is None:
            raise UpstreamCredentialError("a relay username is set but no upstream password store is configured")
        stamp = self.secrets.stamp()
        if self._password is None or stamp != self._password_stamp:
            self._password = self.secrets.password()
            self._password_stamp = stamp
        return self._password

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = self._current_password()  # raises UpstreamCredentialError; no secret in it
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.implicit_tls,
            start_tls=False if s.implicit_tls else True,
            tls_context=self._tls,
            local_hostname=s.local_hostname,
            timeout=s.timeout,
        )
        await client.connect()
        try:
            if password is not None:
                await client.login(s.username, password.reveal())
        except BaseException:
            client.close()
            raise
        self.opened += 1
        return client

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < IDLE_LIMIT:
                return client
            client.close()
        return None

    async def deliver(self, message: Outgoing) -> dict[str, Outcome]:
        async with self._slots:
            client = self._take_idle()
            for _ in range(2):
                fresh = client is None
                if client is None:
                    try:
                        client = await self._connect()
                    except UpstreamCredentialError as exc:
                        log.error("relay to %s: %s", self.remote, exc)
                        return all_recipients(message.recipients, Outcome("temporary", f"451 4.7.0 upstream credential: {exc}", self.remote))
                    except aiosmtplib.SMTPAuthenticationError as exc:
                        log.error(
                            "relay to %s: the smarthost refused our credential (%s %s); "
                            "check [delivery.relay] username and `smtpgate upstream set-password`",
                            self.remote, exc.code, exc.message,
                        )
                        return all_recipients(message.recipients, Outcome("temporary", f"451 4.7.0 smarthost refused our AUTH: {exc.code} {exc.message}", self.remote))
                    except aiosmtplib.SMTPResponseException as exc:
                        return all_recipients(message.recipients, Outcome.from_reply(exc.code if 400 <= exc.code < 500 else 451, exc.message, self.remote))
                    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                        log.warning("relay to %s: cannot connect: %s", self.remote, exc)
                        return all_recipients(message.recipients, Outcome("temporary", f"451 4.4.1 cannot connect to {self.remote}: {exc}", self.remote))
                try:
                    outcomes = await send_transaction(client, message, self.remote)
                except ConnectionProblem as exc:
                    client.close()
                    client = None
                    if fresh:
                        return all_recipients(message.recipients, Outcome("temporary", f"451 4.4.2 connection lost: {exc}", self.remote))
                    continue  # the idle connection had gone stale: one fresh try
                self._idle.append((client, time.monotonic()))
                return outcomes
            return all_recipients(message.recipients, Outcome("temporary", "451 4.4.2 connection lost", self.remote))

    async def check(self) -> str:
        """Connect, TLS, AUTH, QUIT: the TLS version used; raises what went wrong."""
        client = await self._connect()
        try:
            info = client.get_transport_info("ssl_object")
            return info.version() if info else "no TLS"
        finally:
            try:
                await asyncio.wait_for(client.quit(), 5)
            except Exception:  # noqa: BLE001 - closing anyway
                client.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            try:
                await asyncio.wait_for(client.quit(), 5)
            except Exception:  # noqa: BLE001 - closing anyway
                client.close()
