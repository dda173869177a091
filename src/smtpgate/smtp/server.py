"""The asyncio adapter: listeners, TLS, timeouts, connection caps, workers.

A thin shell around the sans-I/O protocol. Each connection is an asyncio.Protocol
feeding bytes to a `ServerConnection` and one task that walks its events through a
`Session`. Reading pauses after every chunk until the protocol has consumed it, and
writing back-pressure pauses input, so a fast or stalled client cannot pin memory.

Workers (`smtpgate.process.run_server(workers=N)`) share the listening sockets; the
connection caps are slots taken in the guard backend (`guard.slots`), so they hold for
all workers together. Only worker 0 runs the delivery worker (and a per-message lock
keeps any other process off a message in flight).

The guard is asked about every new connection before the greeting: a banned source gets
`421 4.7.0` and is closed. Each process runs the audit writer thread and a maintenance
task (ban changes from the database, guard housekeeping); metrics are per process and
added up across workers by the admin listener (see `smtpgate.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass

from smtpgate.audit import events as ev
from smtpgate.audit.events import AuditEvent
from smtpgate.config import Config
from smtpgate.metrics import metrics
from smtpgate.runtime import Runtime
from smtpgate.smtp.protocol import (
    NEED_DATA,
    PAUSED,
    ProtocolLimits,
    Reply,
    ServerConnection,
    ServerFeatures,
    StartTLS,
    State,
)
from smtpgate.smtp.session import BANNED, MessagePolicy, Session, SessionServices
from smtpgate.smtp.tls import ReloadableTlsContext, TlsConfigError, describe_tls

log = logging.getLogger("smtpgate.server")

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_YOU = Reply(421, "4.7.0", "Too many connections from your address, try again later")
READ_CHUNK_LIMIT = 256 * 1024
BLOCKING_THREADS = 64


@dataclass(frozen=True)
class Listener:
    name: str          # "submission" (STARTTLS) or "submissions" (implicit TLS)
    host: str
    port: int
    implicit_tls: bool


def admin_address(config: Config) -> tuple[str, int]:
    host, _, port = config.admin.listen.rpartition(":")
    return host.strip("[]"), int(port)


def auth_mechanisms(config: Config) -> tuple[str, ...]:
    """What EHLO offers after TLS: passwords always; SCRAM and bearer tokens per [tokens]."""
    names = ["PLAIN", "LOGIN"]
    if config.tokens.scram:
        names.append("SCRAM-SHA-256")
    if config.tokens.enabled:
        names += ["XOAUTH2", "OAUTHBEARER"]
    return tuple(names)


def listeners_from(config: Config) -> list[Listener]:
    result = []
    for name, value, implicit in (("submission", config.smtp.submission, False), ("submissions", config.smtp.submissions, True)):
        host, _, port = value.rpartition(":")
        result.append(Listener(name, host.strip("[]"), int(port), implicit))
    return result


class SmtpServer:
    """One process's server: its listeners, its connections, their limits."""

    def __init__(self, config: Config, runtime: Runtime, tls: ReloadableTlsContext) -> None:
        self.config = config
        self.tls = tls
        self.services = SessionServices(
            credentials=runtime.credentials,
            spool=runtime.spool,
            hostname=config.hostname,
            auth_failure_delay=config.smtp.auth_failure_delay.total_seconds(),
            guard=runtime.guard,
            audit=runtime.audit,
            disk=runtime.disk_pool,
            foresight=runtime.foresight,
            policy=MessagePolicy(
                allow_null_sender=config.smtp.allow_null_sender,
                display_name_address=config.smtp.display_name_address,
                received_auth=config.smtp.received_auth,
            ),
        )
        self.guard = runtime.guard
        self.slots = runtime.connection_slots
        self.audit = runtime.audit
        self.banned_seen: dict[str, float] = {}  # a banned source's refusals are audited once a minute
        self.auth_mechanisms = auth_mechanisms(config)
        self.limits = ProtocolLimits(
            max_message_size=config.smtp.max_message_size,
            max_recipients=config.smtp.max_recipients,
        )
        self.connections: set[SmtpConnection] = set()
        self.releasing: set[asyncio.Task[None]] = set()  # slot releases in flight (kept from the GC)
        self.servers: list[asyncio.base_events.Server] = []
        self.stopping = False

    async def start(self, sockets: dict[str, socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for listener in listeners_from(self.config):
            sock = (sockets or {}).get(listener.name) or bind(listener)
            server = await loop.create_server(
                lambda listener=listener: SmtpConnection(self, listener),
                sock=sock,
                ssl=self.tls.context if listener.implicit_tls else None,
                ssl_handshake_timeout=self.config.smtp.tls_handshake_timeout.total_seconds() if listener.implicit_tls else None,
                backlog=1024,
            )
            self.servers.append(server)
            log.info("listening on %s:%d (%s, %s)", listener.host, listener.port, listener.name,
                     "implicit TLS" if listener.implicit_tls else "STARTTLS")

    def admit(self, ip: str) -> Reply | None:
        """A reply refusing a new connection, or None to let it in (the caps come next, in `take_slot`)."""
        if self.stopping:
            return Reply(421, "4.3.2", "Service shutting down")
        return None

    async def take_slot(self, ip: str) -> Reply | None:
        """A connection slot from the guard (caps across all workers), or the reply refusing one."""
        refusal = await self.slots.acquire(ip)
        if refusal is None:
            return None
        return TOO_MANY_CONNECTIONS if refusal == "total" else TOO_MANY_FROM_YOU

    def give_slot_back(self, ip: str) -> None:
        task = asyncio.get_running_loop().create_task(self.slots.release(ip))
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)

    def reload_tls(self) -> None:
        try:
            self.tls.reload()
            log.info("TLS certificate reloaded")
        except TlsConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)

    async def shutdown(self) -> None:
        """Stop accepting, let transactions in flight finish, answer 421 to the rest."""
        self.stopping = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.config.smtp.shutdown_grace.total_seconds()
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()


class SmtpConnection(asyncio.Protocol):
    """One client: transport callbacks in, one task driving protocol and session."""

    def __init__(self, server: SmtpServer, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.conn = ServerConnection(
            ServerFeatures(
                hostname=server.config.hostname,
                tls_active=listener.implicit_tls,
                starttls_available=not listener.implicit_tls,
                auth_mechanisms=server.auth_mechanisms,
            ),
            server.limits,
        )
        self.session: Session | None = None
        self._slot = False  # holds one of the guard's connection slots
        self._input = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        peer = transport.get_extra_info("peername") or ("unknown", 0)
        self.ip = peer[0]
        refusal = self.server.admit(self.ip)
        m = metrics()
        if self.listener.implicit_tls:
            version = (self.tls_info() or "unknown").partition(" ")[0]
            m.tls_handshakes.labels(self.listener.name, "ok", version).inc()
        if refusal is not None:
            m.connections.labels(self.listener.name, "shutdown" if refusal.code == 421 and refusal.enhanced == "4.3.2" else "limit").inc()
            self.conn.refuse(refusal)
            transport.write(self.conn.data_to_send())
            transport.close()
            return
        self.server.connections.add(self)
        m.open_connections.labels(self.listener.name).inc()
        self.session = Session(self.server.services, client_ip=self.ip, listener=self.listener.name, tls_info=self.tls_info)
        transport.set_write_buffer_limits(high=256 * 1024)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _admit_source(self) -> bool:
        """Ask the guard before the greeting: over a cap, or banned, a source gets 421 4.7.0 and is closed."""
        refusal = await self.server.take_slot(self.ip)
        if refusal is not None:
            metrics().connections.labels(self.listener.name, "limit").inc()
            self.conn.refuse(refusal)
            self._flush()
            return False
        self._slot = True
        ban = await self.server.guard.check_connection(self.ip)
        if ban is None:
            metrics().connections.labels(self.listener.name, "accepted").inc()
            self.conn.start()
            return True
        metrics().connections.labels(self.listener.name, "banned").inc()
        seen, now = self.server.banned_seen, time.monotonic()
        if now - seen.get(self.ip, -60.0) >= 60.0:  # a reconnecting attacker must not flood the audit
            if len(seen) > 10_000:
                seen.clear()
            seen[self.ip] = now
            log.info("refused banned %s (%s until %s)", self.ip, ban.network, int(ban.until))
            self.server.audit.record(AuditEvent(
                kind=ev.CONNECT, result=ev.FAIL, reason=ev.BANNED, listener=self.listener.name, remote_ip=self.ip,
                tls=(self.tls_info() or "").partition(" ")[0], details={"ban": ban.network},
            ))
        self.conn.refuse(BANNED)
        self._flush()
        return False

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._pause_reading()
        self._input.set()

    def eof_received(self) -> bool:
        """Plain TCP: keep the half-open socket until our replies are out, then close.

        Under TLS the peer's close_notify starts the shutdown whatever we return, and a
        true value only makes asyncio log a warning, so say False there.
        """
        self.conn.receive_data(b"")
        self._input.set()
        return not self._over_tls()

    def _over_tls(self) -> bool:
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._input.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ---------------------------------------------------------------- the task

    async def _run(self) -> None:
        assert self.session is not None
        try:
            if not await self._admit_source():
                return
            await self._loop()
        except TimeoutError:
            self._send_now(Reply(421, "4.4.2", f"{self.server.config.hostname} Timeout, closing connection"))
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("connection from %s ended: %s", self.ip, exc)
        except Exception:  # noqa: BLE001 - one broken session must not take the server down
            log.exception("session from %s failed", self.ip)
            self._send_now(Reply(421, "4.3.0", "Internal error, closing connection"))
        finally:
            self.session.reset_transaction()
            self._release()

    async def _loop(self) -> None:
        assert self.session is not None
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                self._flush()
                if conn.closed or self._lost:
                    return
                await self._wait_for_input()
                continue
            if event is PAUSED:  # pragma: no cover - every decision is answered in handle()
                raise RuntimeError("protocol paused with no decision pending")
            if isinstance(event, StartTLS):
                self._flush()
                await self._start_tls()
                conn.tls_established()
                continue
            await self.session.handle(conn, event)
            if conn.closed:
                self._flush()
                return

    async def _wait_for_input(self) -> None:
        in_data = self.conn.state in (State.DATA, State.BDAT)
        smtp = self.server.config.smtp
        timeout = (smtp.data_timeout if in_data else smtp.command_timeout).total_seconds()
        async with asyncio.timeout(timeout):
            if not self._writable.is_set():
                await self._writable.wait()
            self._input.clear()
            self._resume_reading()
            await self._input.wait()

    async def _start_tls(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._reading_paused = False
        started = time.monotonic()
        m = metrics()
        try:
            new_transport = await loop.start_tls(
                self.transport,
                self,
                self.server.tls.context,
                server_side=True,
                ssl_handshake_timeout=self.server.config.smtp.tls_handshake_timeout.total_seconds(),
            )
            if new_transport is None:
                raise ConnectionError("TLS handshake did not complete")
        except BaseException:
            m.tls_handshakes.labels(self.listener.name, "fail", "").inc()
            raise
        self.transport = new_transport
        m.tls_seconds.labels(self.listener.name).observe(time.monotonic() - started)
        m.tls_handshakes.labels(self.listener.name, "ok", (self.tls_info() or "unknown").partition(" ")[0]).inc()

    def tls_info(self) -> str:
        if self.transport is None:
            return ""
        return describe_tls(self.transport.get_extra_info("ssl_object"))

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self._lost:
            self.transport.write(data)

    def _send_now(self, reply: Reply) -> None:
        if self.transport is not None and not self._lost and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send() + reply.to_bytes())

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self._lost:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()

    def _release(self) -> None:
        if self in self.server.connections:
            metrics().open_connections.labels(self.listener.name).dec()
            self.server.connections.discard(self)
        if self._slot:
            self._slot = False
            self.server.give_slot_back(self.ip)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ----------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        self.conn.shutdown()
        self._input.set()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.abort()


# ------------------------------------------------------------------ processes


def bind(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listener.host, listener.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"error: cannot listen on {listener.host}:{listener.port} ({listener.name}): {exc.strerror}. "
            f"Is another server running there? Change the {listener.name} address in the config."
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock
