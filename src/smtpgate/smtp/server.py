"""The asyncio adapter: listeners, TLS, timeouts, connection caps, workers.

A thin shell around the sans-I/O protocol. Each connection is an asyncio.Protocol
feeding bytes to a `ServerConnection` and one task that walks its events through a
`Session`. Reading pauses after every chunk until the protocol has consumed it, and
writing back-pressure pauses input, so a fast or stalled client cannot pin memory.

Workers: `run_server(workers=N)` binds the sockets once, then forks N processes that
accept on them. Per process: connections, caps, TLS contexts. Shared: the database and
the spool on disk. Connection caps are per process. Only worker 0 runs the delivery
worker (and a per-message lock keeps any other process off a message in flight).

The guard is asked about every new connection before the greeting: a banned source gets
`421 4.7.0` and is closed. Each process runs the audit writer thread and a maintenance
task (ban changes from the database, guard housekeeping); metrics are per process and
added up across workers by the admin listener (see `smtpgate.metrics`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from smtpgate.metrics import metrics
from smtpgate.audit import events as ev
from smtpgate.audit.events import AuditEvent
from smtpgate.config import Config
from smtpgate.delivery.dkim import DkimError
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
from smtpgate.smtp.session import BANNED, Session, SessionServices
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
        )
        self.guard = runtime.guard
        self.audit = runtime.audit
        self.banned_seen: dict[str, float] = {}  # a banned source's refusals are audited once a minute
        self.auth_mechanisms = auth_mechanisms(config)
        self.limits = ProtocolLimits(
            max_message_size=config.smtp.max_message_size,
            max_recipients=config.smtp.max_recipients,
        )
        self.connections: set[SmtpConnection] = set()
        self.per_ip: Counter[str] = Counter()
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
        """A reply refusing a new connection, or None to let it in."""
        if self.stopping:
            return Reply(421, "4.3.2", "Service shutting down")
        if len(self.connections) >= self.config.smtp.max_connections:
            return TOO_MANY_CONNECTIONS
        if self.per_ip[ip] >= self.config.smtp.max_connections_per_ip:
            return TOO_MANY_FROM_YOU
        return None

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
        self.server.per_ip[self.ip] += 1
        m.open_connections.labels(self.listener.name).inc()
        self.session = Session(self.server.services, client_ip=self.ip, listener=self.listener.name, tls_info=self.tls_info)
        transport.set_write_buffer_limits(high=256 * 1024)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _admit_source(self) -> bool:
        """Ask the guard before the greeting: a banned source gets 421 4.7.0 and is closed."""
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
        self.conn.receive_data(b"")
        self._input.set()
        return True  # we close once the replies are out

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
            self.server.per_ip[self.ip] -= 1
            if self.server.per_ip[self.ip] <= 0:
                del self.server.per_ip[self.ip]
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


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(config: Config, sockets: dict[str, socket.socket], *, deliver: bool = True) -> int:
    """One process's life. `deliver`: this process also runs the delivery worker (worker 0)."""
    from smtpgate.admin.app import serve_admin

    runtime = Runtime(config)
    # Blocking work (argon2, database, fsync) runs in threads; fsync latency, not CPU, bounds
    # how many messages can be in their commit at once, so allow many.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="smtpgate-io")
    )
    admin: asyncio.Task[None] | None = None
    delivery = runtime.delivery_worker() if deliver else None
    delivering: asyncio.Task[None] | None = None
    if runtime.audit.dispatcher is not None:
        runtime.audit.dispatcher.on_alert = lambda alert: metrics().alerts.labels(alert.rule).inc()
    runtime.audit.start()
    watch = asyncio.get_running_loop().create_task(_watch_guard(runtime))
    try:
        if delivery is not None:
            delivering = asyncio.get_running_loop().create_task(delivery.run())
        tls = ReloadableTlsContext(config.path(config.tls.cert), config.path(config.tls.key))
        server = SmtpServer(config, runtime, tls)
        await server.start(sockets)
        admin = asyncio.get_running_loop().create_task(serve_admin(runtime, sockets["admin"]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
        await stop.wait()
        log.info("stopping: finishing transactions in flight")
        await server.shutdown()
        return 0
    finally:
        if delivery is not None and delivering is not None:
            delivery.stop()
            await asyncio.wait([delivering], timeout=20)
        if admin is not None:
            admin.cancel()
        watch.cancel()
        await runtime.guard.close()
        runtime.audit.close(wait_for_alerts=False)  # events are written; webhook retries are not waited for
        runtime.close()


async def _watch_guard(runtime: Runtime) -> None:
    """Bans made elsewhere (the CLI, other workers) come in; what has expired goes out."""
    guard = runtime.guard
    interval = runtime.config.guard.sync_interval.total_seconds()
    last_sweep = time.monotonic()
    while True:
        try:
            await guard.sync()
            if time.monotonic() - last_sweep >= 30:
                last_sweep = time.monotonic()
                await guard.sweep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the next round may succeed
            log.warning("guard maintenance failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        await asyncio.sleep(interval)


def _setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("SMTPGATE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    audit = logging.getLogger("smtpgate.audit")  # one JSON object per line, nothing around it
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(handler)
    audit.propagate = False


def _preflight(config: Config) -> None:
    """Fail before forking: bad TLS files, an unreachable database, a missing key."""
    try:
        ReloadableTlsContext(config.path(config.tls.cert), config.path(config.tls.key))
    except TlsConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    runtime = Runtime(config)
    try:
        runtime.credentials  # opens the store, upgrades the schema, reads the key file
        runtime.spool
        try:
            runtime.delivery_worker()  # routes, DKIM keys: a bad key fails here, not in a worker
        except DkimError as exc:
            raise SystemExit(f"error: {exc}") from None
        runtime.audit  # the webhook secret file, when a webhook is set
        _check_guard(runtime)
    finally:
        runtime.close()


def _check_guard(runtime: Runtime) -> None:
    """An unreachable Redis fails the start with the fix, instead of every connection later."""
    from smtpgate.guard import GuardUnavailable

    async def probe() -> None:
        try:
            await runtime.guard.backend.lookup([], None, now=time.time())
        finally:
            await runtime.guard.close()

    try:
        asyncio.run(probe())
    except GuardUnavailable as exc:
        raise SystemExit(
            f"error: the guard backend is unreachable: {exc}. Start Redis, fix [guard] redis_url, "
            'or use [guard] backend = "memory".'
        ) from None


def run_server(config: Config, *, workers: int = 1) -> int:
    """Run in the foreground until SIGTERM; the exit status."""
    _setup_logging()
    _preflight(config)
    from smtpgate.metrics import enable_multiprocess

    enable_multiprocess(config.path("metrics"))  # before any worker exists: fresh files, shared totals
    sockets = {listener.name: bind(listener) for listener in listeners_from(config)}
    host, port = admin_address(config)
    sockets["admin"] = bind(Listener("admin", host, port, implicit_tls=False))
    _install_loop()
    if workers <= 1:
        return asyncio.run(_serve(config, sockets))
    return _supervise(config, sockets, workers)


def _supervise(config: Config, sockets: dict[str, socket.socket], workers: int) -> int:
    """Fork the workers, forward signals, restart a worker that dies."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = asyncio.run(_serve(config, sockets, deliver=slot == 0))
            finally:
                os._exit(code)
        children[pid] = slot

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for slot in range(workers):
        spawn(slot)
    log.info("started %d workers", workers)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        from smtpgate.metrics import worker_exited

        worker_exited(pid)  # its live gauges (open connections) stop counting
        if slot is not None and not stopping:
            log.error("worker %d exited (status %d); starting a new one", pid, status)
            time.sleep(0.5)
            spawn(slot)
    return 0
