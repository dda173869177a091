"""The asyncio adapter: listeners, TLS, timeouts, connection caps, workers.

A thin shell around the sans-I/O protocol. Each connection is an asyncio.Protocol
feeding bytes to a `ServerConnection` and one task that walks its events through a
`Session`. Reading pauses after every chunk until the protocol has consumed it, and
writing back-pressure pauses input, so a fast or stalled client cannot pin memory.

Workers (`smtpgate.process.run_server(workers=N)`) share the listening sockets; the
connection caps are slots taken in the guard backend (`guard.slots`), so they hold for
all workers together. Only worker 0 runs the delivery worker (and a per-message lock
keeps any other process off a message in flight).

Every connection counts toward `max_connections` and `max_connections_per_ip` from the
moment it is accepted, a TLS handshake on the implicit-TLS port included (the handshake is
ours to start, after the count). Connections that have not authenticated are kept on a
short leash: an idle timeout and a deadline for reaching AUTH, shorter under pressure, and
at most `1 - auth_reserve` of the slots; when the server is full the one idle the longest
is shed for a newcomer, so a flood of idle or dripping connections cannot keep clients out.
Progress is counted in commands and bytes, not reads: a byte at a time resets nothing.

Behind a load balancer (`[smtp] proxy_protocol_from`), a connection from a listed balancer
is accepted here, its PROXY header read off the socket (`smtp.proxy_io`), and only then is
the session built, with the client's address from the header, and, on the implicit-TLS
port, the handshake started. The header is the client's address everywhere after that:
caps, bans, scopes, audit, `Received:`. A balancer's connection without a valid header in
`proxy_protocol_timeout`, or a header from anyone else, is closed unserved and audited.

The guard is asked about every new connection before the greeting: a banned source gets
`421 4.7.0` and is closed. Each process runs the audit writer thread and a maintenance
task (ban changes from the database, guard housekeeping); metrics are per process and
added up across workers by the admin listener (see `smtpgate.metrics`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass

from smtpgate.audit import events as ev
from smtpgate.audit.events import AuditEvent
from smtpgate.config import Config
from smtpgate.metrics import metrics
from smtpgate.runtime import Runtime
from smtpgate.smtp.protocol import (
    NEED_DATA,
    PAUSED,
    AuthAttempt,
    AuthKeysNeeded,
    ProtocolLimits,
    Reply,
    ServerConnection,
    ServerFeatures,
    StartTLS,
    State,
)
from smtpgate.smtp.proxy import ProxyHeader, ProxyViolation
from smtpgate.smtp.proxy_io import Balancers, looks_like_proxy, peek_first, read_header_within
from smtpgate.smtp.session import BANNED, MessagePolicy, Session, SessionServices
from smtpgate.smtp.tls import ReloadableTlsContext, TlsConfigError, describe_tls, legacy_server_context

log = logging.getLogger("smtpgate.server")

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_YOU = Reply(421, "4.7.0", "Too many connections from your address, try again later")
SHED = Reply(421, "4.7.0", "Too many connections, closing the one idle the longest; try again later")
READ_CHUNK_LIMIT = 256 * 1024
BLOCKING_THREADS = 64
PROGRESS_BYTES = 1024  # this much received counts as progress even without a whole command
SWEEP_INTERVAL = 1.0  # how often the deadlines of unauthenticated connections are checked
_AUTH_STATES = frozenset({State.AUTH, State.AUTH_FAILURE, State.AUTH_SUCCESS})


LEGACY = "legacy"  # the opt-in listener for devices ([legacy] listen; the credential core's LEGACY_LISTENER)


@dataclass(frozen=True)
class Listener:
    name: str          # "submission" (STARTTLS), "submissions" (implicit TLS) or "legacy" (devices)
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
    if config.legacy.listen:
        host, _, port = config.legacy.listen.rpartition(":")
        result.append(Listener(LEGACY, host.strip("[]"), int(port), False))
    return result


def _as_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


class LegacyNetworks:
    """Who may connect to the legacy listener at all ([legacy] networks)."""

    def __init__(self, networks: list[str]) -> None:
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in networks]

    def allows(self, address: str) -> bool:
        ip = _as_ip(address)
        return ip is not None and any(ip in network for network in self.networks)


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
            app_password_page=f"{config.console_url}/apps",
            policy=MessagePolicy(
                allow_null_sender=config.smtp.allow_null_sender,
                display_name_address=config.smtp.display_name_address,
                received_auth=config.smtp.received_auth,
            ),
        )
        self.guard = runtime.guard
        self.audit = runtime.audit
        self.banned_seen: dict[str, float] = {}  # a banned source's refusals are audited once a minute
        self.proxy_refused_seen: dict[str, float] = {}  # so are refused PROXY connections, per peer
        self.balancers = Balancers(config.smtp.proxy_protocol_from)
        self.outsiders_seen: dict[str, float] = {}  # so are refusals on the legacy listener
        self.legacy_networks = LegacyNetworks(config.legacy.networks)
        # its own weaker context (TLS 1.0+), built only when the listener is on
        self.legacy_tls = (ReloadableTlsContext(tls.cert_path, tls.key_path, factory=legacy_server_context)
                           if config.legacy.listen else None)
        self.auth_mechanisms = auth_mechanisms(config)
        self.limits = ProtocolLimits(
            max_message_size=config.smtp.max_message_size,
            max_recipients=config.smtp.max_recipients,
        )
        self.slots = runtime.connection_slots
        self.connections: set[SmtpConnection] = set()
        # not authenticated yet, the one idle the longest first (moved to the end on progress)
        self.pre_auth: OrderedDict[SmtpConnection, None] = OrderedDict()
        self.releasing: set[asyncio.Task[None]] = set()  # slot releases in flight (kept from the GC)
        self.servers: list[asyncio.base_events.Server] = []
        self.stopping = False
        self._sweeper: asyncio.Task[None] | None = None
        self._acceptors: list[asyncio.Task[None]] = []
        self._accepting: list[socket.socket] = []  # the listening sockets our acceptors read
        smtp = config.smtp
        self.pre_auth_limit = max(1, int(smtp.max_connections * (1 - smtp.auth_reserve)))

    async def start(self, sockets: dict[str, socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for listener in listeners_from(self.config):
            sock = (sockets or {}).get(listener.name) or bind(listener)
            if listener.implicit_tls or self.balancers:
                # Not create_server(ssl=...): it hides a connection until its handshake is
                # done, outside every cap. We accept, count, read a balancer's PROXY header,
                # then hand over to TLS. Without balancers, STARTTLS keeps create_server.
                self._acceptors.append(loop.create_task(self._accept(listener, sock)))
                self._accepting.append(sock)
            else:
                self.servers.append(await loop.create_server(
                    functools.partial(SmtpConnection, self, listener), sock=sock, backlog=1024,
                ))
            log.info("listening on %s:%d (%s, %s)", listener.host, listener.port, listener.name,
                     "implicit TLS" if listener.implicit_tls else "STARTTLS" if listener.name != LEGACY else
                     f"devices only, TLS 1.0+ or none, from {', '.join(self.config.legacy.networks)}")
        self._sweeper = loop.create_task(self._sweep())

    def admit(self, ip: str) -> Reply | None:
        """A reply refusing a new connection, or None to let it in (the caps come next, in `take_slot`).

        Unauthenticated connections may hold `1 - auth_reserve` of the slots in this
        process: past that, a newcomer gets in by shedding the one idle the longest.
        """
        if self.stopping:
            return Reply(421, "4.3.2", "Service shutting down")
        if len(self.pre_auth) >= self.pre_auth_limit and not self.shed_one():
            return TOO_MANY_CONNECTIONS
        return None

    async def take_slot(self, ip: str, asking: SmtpConnection | None = None) -> Reply | None:
        """A connection slot from the guard (caps across all workers), or the reply refusing one.

        All slots taken: shed our unauthenticated connection idle the longest, try once more.
        """
        refusal = await self.slots.acquire(ip)
        if refusal == "total" and self.shed_one(sparing=asking):
            await asyncio.gather(*list(self.releasing), return_exceptions=True)
            refusal = await self.slots.acquire(ip)
        if refusal is None:
            return None
        return TOO_MANY_CONNECTIONS if refusal == "total" else TOO_MANY_FROM_YOU

    def give_slot_back(self, ip: str) -> None:
        task = asyncio.get_running_loop().create_task(self.slots.release(ip))
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)

    async def _accept(self, listener: Listener, sock: socket.socket) -> None:
        """Accept ourselves: the implicit-TLS port, and every port behind load balancers.

        A balancer's connection, and any on the implicit-TLS port, is admitted and counted
        at accept; its PROXY header, slot and handshake follow in `SmtpConnection.open`.
        Anyone else on the STARTTLS port goes the way create_server would take it.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, peer = await loop.sock_accept(sock)
            except OSError as exc:  # out of file descriptors, a reset before accept...
                log.warning("accept on %s failed: %s", listener.name, exc)
                await asyncio.sleep(0.1)
                continue
            client.setblocking(False)
            balancer = peer[0] in self.balancers
            if not balancer and not listener.implicit_tls:
                task = loop.create_task(self._connect_plain(listener, client))
                self.releasing.add(task)  # kept from the GC until connection_made has run
                task.add_done_callback(self.releasing.discard)
                continue
            refusal = self.admit(peer[0])
            if refusal is not None:  # nothing is said: a reply is unreadable before TLS or a header
                metrics().connections.labels(listener.name, "shutdown" if refusal.enhanced == "4.3.2" else "limit").inc()
                client.close()
                continue
            conn = SmtpConnection(self, listener)
            conn.ip = conn.peer_ip = peer[0]
            conn.accepted_early = True
            self.register(conn)
            conn.handshake = loop.create_task(conn.open(client, balancer=balancer))

    async def _connect_plain(self, listener: Listener, client: socket.socket) -> None:
        def connection() -> SmtpConnection:
            return SmtpConnection(self, listener)

        try:
            await asyncio.get_running_loop().connect_accepted_socket(connection, client)
        except OSError as exc:
            log.debug("connection on %s failed before it started: %s", listener.name, exc)
            client.close()

    def proxy_refused(self, conn: SmtpConnection, problem: str) -> None:
        """A PROXY connection closed unserved: counted, logged, audited (once a minute per peer)."""
        metrics().connections.labels(conn.listener.name, "proxy-refused").inc()
        balancer = conn.peer_ip in self.balancers
        if not self.once_a_minute(self.proxy_refused_seen, conn.peer_ip):
            return
        log.warning("closed a connection from %s on %s: %s", conn.peer_ip, conn.listener.name, problem)
        self.audit.record(AuditEvent(
            kind=ev.CONNECT, result=ev.FAIL, reason=ev.PROXY_PROTOCOL, listener=conn.listener.name,
            remote_ip=conn.peer_ip, details={"problem": problem, "balancer": balancer},
        ))

    def register(self, conn: SmtpConnection) -> None:
        self.connections.add(conn)
        self.pre_auth[conn] = None
        metrics().open_connections.labels(conn.listener.name).inc()

    def shed_one(self, sparing: SmtpConnection | None = None) -> bool:
        """Close the unauthenticated connection idle the longest (not one in its AUTH exchange)."""
        for conn in self.pre_auth:
            if conn is not sparing and not conn.authenticating:
                metrics().connections.labels(conn.listener.name, "shed").inc()
                log.info("shedding an unauthenticated connection from %s (server full)", conn.ip)
                conn.end(SHED)
                return True
        return False

    @property
    def under_pressure(self) -> bool:
        """Half the unauthenticated share taken: time to be strict (Postfix's stress mode)."""
        return len(self.pre_auth) * 2 >= self.pre_auth_limit

    def progress(self, conn: SmtpConnection) -> None:
        if conn in self.pre_auth:
            self.pre_auth.move_to_end(conn)

    def authenticated(self, conn: SmtpConnection) -> None:
        self.pre_auth.pop(conn, None)

    async def _sweep(self) -> None:
        """End unauthenticated connections past their idle timeout or their deadline for AUTH."""
        smtp = self.config.smtp
        deadline = smtp.auth_deadline.total_seconds()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            idle = (smtp.pre_auth_stress_timeout if self.under_pressure else smtp.pre_auth_timeout).total_seconds()
            now = time.monotonic()
            for conn in list(self.pre_auth):
                if conn.authenticating:
                    continue
                if now - conn.last_progress >= idle or now - conn.accepted_at >= deadline:
                    metrics().connections.labels(conn.listener.name, "pre-auth-timeout").inc()
                    conn.end(Reply(421, "4.4.2", f"{self.config.hostname} Timeout before authentication, closing connection"))

    def tls_context(self, listener: Listener) -> ssl.SSLContext:
        """The legacy listener's weaker context for it alone; the strict one everywhere else."""
        if listener.name == LEGACY and self.legacy_tls is not None:
            return self.legacy_tls.context
        return self.tls.context

    def once_a_minute(self, seen: dict[str, float], ip: str) -> bool:
        """True the first time in a minute for this source: a reconnecting client must not flood the audit."""
        now = time.monotonic()
        if now - seen.get(ip, -60.0) < 60.0:
            return False
        if len(seen) > 10_000:
            seen.clear()
        seen[ip] = now
        return True

    def reload_tls(self) -> None:
        try:
            self.tls.reload()
            if self.legacy_tls is not None:
                self.legacy_tls.reload()
            log.info("TLS certificate reloaded")
        except TlsConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)

    async def shutdown(self) -> None:
        """Stop accepting, let transactions in flight finish, answer 421 to the rest.

        The listening sockets are closed, not just left unread: a connection the kernel
        would queue meanwhile gets a refusal at once, which a load balancer retries on
        another node, instead of a silence ended by a reset (docs/proxy-protocol.md).
        """
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for acceptor in self._acceptors:
            acceptor.cancel()
        await asyncio.gather(*self._acceptors, return_exceptions=True)
        for sock in self._accepting:
            sock.close()
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
        self.ip = ""        # the client's: the peer's, or the one a balancer's PROXY header names
        self.peer_ip = ""   # who is at the other end of the socket (a balancer, or the client)
        self.proxy: ProxyHeader | None = None
        self.accepted_early = False  # admitted and counted at accept (SmtpServer._accept)
        self._first_read = not listener.implicit_tls  # the STARTTLS port's first bytes: a PROXY header?
        legacy = listener.name == LEGACY
        self.conn = ServerConnection(
            ServerFeatures(
                hostname=server.config.hostname,
                tls_active=listener.implicit_tls,
                starttls_available=not listener.implicit_tls,
                # the legacy listener: AUTH PLAIN/LOGIN without TLS, and MAIL without AUTH for a
                # device known by its address (the session refuses everyone else at MAIL)
                auth_mechanisms=("PLAIN", "LOGIN") if legacy else server.auth_mechanisms,
                require_tls_for_auth=not legacy,
                require_auth_for_mail=not legacy,
            ),
            server.limits,
        )
        self.session: Session | None = None
        self._input = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._lost = False
        self._task: asyncio.Task[None] | None = None
        self.handshake: asyncio.Task[None] | None = None  # header and implicit TLS, until connection_made
        self.accepted_at = self.last_progress = time.monotonic()
        self._unprogressed = 0  # octets received since the last progress
        self._ended = False
        self._slot = False  # holds one of the guard's connection slots

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        m = metrics()
        if self.accepted_early:  # admitted and counted at accept (SmtpServer._accept)
            if self.listener.implicit_tls:
                version = (self.tls_info() or "unknown").partition(" ")[0]
                m.tls_handshakes.labels(self.listener.name, "ok", version).inc()
            if self._ended:
                transport.abort()  # type: ignore[attr-defined]
                return
            self._progress()
        else:
            peer = transport.get_extra_info("peername") or ("unknown", 0)
            self.ip = self.peer_ip = peer[0]
            refusal = self.server.admit(self.ip)
            if refusal is not None:
                m.connections.labels(self.listener.name, "shutdown" if refusal.code == 421 and refusal.enhanced == "4.3.2" else "limit").inc()
                self.conn.refuse(refusal)
                transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]
                transport.close()
                return
            self.server.register(self)
        self.session = Session(self.server.services, client_ip=self.ip, listener=self.listener.name, tls_info=self.tls_info)
        transport.set_write_buffer_limits(high=256 * 1024)  # type: ignore[attr-defined]
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def open(self, sock: socket.socket, *, balancer: bool) -> None:
        """From accept to connection_made: a balancer's PROXY header, a slot, the TLS handshake.

        The slot is taken under the client's own address, so it waits for the header. On
        the implicit-TLS port, over a cap the socket is closed at once: a reply is
        unreadable before TLS, and a handshake would cost what the cap saves; the STARTTLS
        port takes its slot in `_admit_source`, where a 421 can be read.
        """
        loop = asyncio.get_running_loop()
        smtp = self.server.config.smtp
        try:
            if balancer and not await self._read_proxy_header(sock):
                return
            if not self.listener.implicit_tls:
                await loop.connect_accepted_socket(lambda: self, sock)
                return
            if await self.server.take_slot(self.ip, self) is not None:
                metrics().connections.labels(self.listener.name, "limit").inc()
                sock.close()
                self._release()
                return
            self._slot = True
            started = time.monotonic()
            handshake_timeout = smtp.tls_handshake_timeout.total_seconds()
            if not balancer:
                async with asyncio.timeout(handshake_timeout):
                    first = await peek_first(sock)
                if looks_like_proxy(first):
                    self._refuse_proxy(sock, "a PROXY header from an address not in [smtp] proxy_protocol_from")
                    return
            await loop.connect_accepted_socket(
                lambda: self, sock, ssl=self.server.tls_context(self.listener),
                ssl_handshake_timeout=max(0.1, handshake_timeout - (time.monotonic() - started)),
            )
        except asyncio.CancelledError:  # shed or timed out while handshaking
            sock.close()
            self._release()
            if not self._ended:
                raise
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            if self.listener.implicit_tls:
                metrics().tls_handshakes.labels(self.listener.name, "fail", "").inc()
            log.debug("connection from %s failed before its session (TLS handshake, reset): %s", self.ip, exc)
            sock.close()
            self._release()

    async def _read_proxy_header(self, sock: socket.socket) -> bool:
        """The balancer's header within proxy_protocol_timeout; False when the connection was closed."""
        header = await read_header_within(sock, self.server.config.smtp.proxy_protocol_timeout.total_seconds())
        if isinstance(header, ProxyViolation):
            self._refuse_proxy(sock, header.reason)
            return False
        self.proxy = header
        if header.source is not None:  # LOCAL and UNKNOWN (health checks): the balancer's own address
            self.ip = header.source[0]
        return True

    def _refuse_proxy(self, sock: socket.socket | None, problem: str) -> None:
        self._ended = True
        self.server.proxy_refused(self, problem)
        if sock is not None:
            sock.close()
        self._release()

    async def _admit_source(self) -> bool:
        """Ask the guard before the greeting: over a cap, or banned, a source gets 421 4.7.0 and is closed.

        On the legacy listener a source outside [legacy] networks is closed on first, without a
        word (an audit event says so); a device known by its address is bound to the session.
        """
        if self.listener.name == LEGACY and not self.server.legacy_networks.allows(self.ip):
            metrics().connections.labels(self.listener.name, "network").inc()
            if self.server.once_a_minute(self.server.outsiders_seen, self.ip):
                log.info("legacy listener: closed on %s, outside [legacy] networks", self.ip)
                self.server.audit.record(AuditEvent(
                    kind=ev.CONNECT, result=ev.FAIL, reason=ev.NETWORK_NOT_ALLOWED, listener=self.listener.name,
                    remote_ip=self.ip,
                ))
            return False  # closed by _run, no greeting: nothing to learn here
        if not self._slot:  # the implicit-TLS port took it before the handshake
            refusal = await self.server.take_slot(self.ip, self)
            if refusal is not None:
                metrics().connections.labels(self.listener.name, "limit").inc()
                self.conn.refuse(refusal)
                self._flush()
                return False
            self._slot = True
        ban = await self.server.guard.check_connection(self.ip)
        if self.conn.closed:  # the server began to stop meanwhile: its 421 is all this client gets
            self._flush()
            return False
        if ban is None:
            metrics().connections.labels(self.listener.name, "accepted").inc()
            if self.listener.name == LEGACY and self.session is not None and await self.session.bind_device():
                self.server.authenticated(self)
                if self.conn.closed:  # stopping began during the look-up
                    self._flush()
                    return False
            self.conn.start()
            return True
        metrics().connections.labels(self.listener.name, "banned").inc()
        if self.server.once_a_minute(self.server.banned_seen, self.ip):
            log.info("refused banned %s (%s until %s)", self.ip, ban.network, int(ban.until))
            self.server.audit.record(AuditEvent(
                kind=ev.CONNECT, result=ev.FAIL, reason=ev.BANNED, listener=self.listener.name, remote_ip=self.ip,
                tls=(self.tls_info() or "").partition(" ")[0], details={"ban": ban.network},
            ))
        self.conn.refuse(BANNED)
        self._flush()
        return False

    def data_received(self, data: bytes) -> None:
        if self._first_read:
            self._first_read = False
            if looks_like_proxy(data):  # after a balancer's header, a second one is refused as well
                self._refuse_proxy(None, "a PROXY header from an address not in [smtp] proxy_protocol_from"
                                   if self.proxy is None else "a second PROXY header")
                if self._task is not None:
                    self._task.cancel()
                return
        self.conn.receive_data(data)
        self._unprogressed += len(data)
        if self._unprogressed >= PROGRESS_BYTES:
            self._progress()
        self._pause_reading()
        self._input.set()

    def _progress(self) -> None:
        """A whole command, a reply, or PROGRESS_BYTES octets: what resets the idle timeout."""
        self.last_progress = time.monotonic()
        self._unprogressed = 0
        self.server.progress(self)

    @property
    def authenticating(self) -> bool:
        """In an AUTH exchange, or waiting for its verdict: not to be shed or timed out now."""
        conn = self.conn
        return conn.state in _AUTH_STATES or isinstance(conn.pending_decision, (AuthAttempt, AuthKeysNeeded))

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
        except asyncio.CancelledError:
            if not self._ended:  # ended by the server (shed, timed out): not a cancellation of ours
                raise
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
                if self.server.stopping:  # draining: a transaction just finished gets its 421 now, not at the next command
                    conn.shutdown()
                self._flush()
                if conn.closed or self._lost:
                    return
                await self._wait_for_input()
                continue
            self._progress()
            if event is PAUSED:  # pragma: no cover - every decision is answered in handle()
                raise RuntimeError("protocol paused with no decision pending")
            if isinstance(event, StartTLS):
                self._flush()
                await self._start_tls()
                conn.tls_established()
                self.session.tls_started()
                continue
            await self.session.handle(conn, event)
            if conn.authenticated:
                self.server.authenticated(self)
            if conn.closed:
                self._flush()
                return

    async def _wait_for_input(self) -> None:
        """Wait for bytes; the timeout runs from the last progress, so a drip does not reset it."""
        in_data = self.conn.state in (State.DATA, State.BDAT)
        smtp = self.server.config.smtp
        timeout = (smtp.data_timeout if in_data else smtp.command_timeout).total_seconds()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout - (time.monotonic() - self.last_progress)
        async with asyncio.timeout_at(deadline):
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
                self.server.tls_context(self.listener),
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
            self._progress()
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
        self.server.pre_auth.pop(self, None)
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
        if self._task is None and self.handshake is not None:  # still in its TLS handshake
            self._ended = True
            self.handshake.cancel()
            return
        self.conn.shutdown()
        self._input.set()

    def end(self, reply: Reply) -> None:
        """The server ends this connection now (shed, timed out): reply if we can, free the slot."""
        self._ended = True
        if self._task is not None:  # past any handshake: the reply can be read
            self._send_now(reply)
            self._task.cancel()
        elif self.handshake is not None:
            self.handshake.cancel()
        self._release()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        elif self.handshake is not None:
            self._ended = True
            self.handshake.cancel()
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
