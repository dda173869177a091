"""The server process: binds the sockets, forks the workers, runs each worker's services.

Every worker runs the SMTP listeners (`smtp.server`), the audit writer and guard
housekeeping; worker 0 also runs the admin HTTP listener (`admin.app`) and the delivery
worker, so the others never load the admin stack. This is the one place where the faces meet, so the wire never imports the admin
face. Per process: connections, TLS contexts. Shared: the listening sockets, the
database, the spool on disk, and the guard (counters, bans, quotas, connection caps).
The parent supervises: it forwards SIGTERM, SIGINT and SIGHUP, starts a new worker when
one dies, and with `[guard] backend = "shared"` holds the guard state for all workers
(`guard.host`), serving each over its own socketpair made before the fork.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import resource
import secrets
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from smtpgate.config import Config
from smtpgate.delivery.dkim import DkimError
from smtpgate.metrics import metrics
from smtpgate.runtime import Runtime
from smtpgate.smtp.server import (
    BLOCKING_THREADS,
    Listener,
    SmtpServer,
    admin_address,
    bind,
    listeners_from,
)
from smtpgate.smtp.tls import ReloadableTlsContext, TlsConfigError

log = logging.getLogger("smtpgate.process")


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(
    config: Config, sockets: dict[str, socket.socket], *, deliver: bool = True, parent: int | None = None,
    guard_channel: socket.socket | None = None, node: str = "",
) -> int:
    """One process's life. `deliver`: this process also runs the delivery worker and serves
    the admin listener (worker 0: the others never load FastAPI and uvicorn, about 20 MiB
    each); `parent`: the supervisor's pid, whose end ends this worker; `guard_channel`: its
    socket to the guard host in the parent; `node`: the server instance all its workers share."""
    runtime = Runtime(config, guard_channel=guard_channel, node=node or _node_id(), serving=True)
    # Database calls run in the default pool; argon2 and fsync have pools of their own
    # (runtime.hashing_pool, runtime.disk_pool: smtpgate.pools), so none starves another.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="smtpgate-io")
    )
    runtime.credentials.prepare()  # before the first login, not during it
    admin: asyncio.Task[None] | None = None
    delivery = runtime.delivery_worker() if deliver else None
    delivering: asyncio.Task[None] | None = None
    heartbeat: asyncio.Task[None] | None = None
    if runtime.audit.dispatcher is not None:
        runtime.audit.dispatcher.on_alert = lambda alert: metrics().alerts.labels(alert.rule).inc()
    runtime.audit.start()
    watch = asyncio.get_running_loop().create_task(_watch_guard(runtime))
    usage = asyncio.get_running_loop().create_task(_flush_usage(runtime))
    reputation = runtime.reputation_watch() if deliver else None
    watching = asyncio.get_running_loop().create_task(reputation.run()) if reputation is not None else None
    try:
        if delivery is not None:
            delivering = asyncio.get_running_loop().create_task(delivery.run())
        tls = ReloadableTlsContext(config.path(config.tls.cert), config.path(config.tls.key))
        server = SmtpServer(config, runtime, tls)
        await server.start(sockets)
        admin_tls = admin_tls_context(config, tls) if deliver else None
        if deliver:  # /metrics adds up every worker's files (smtpgate.metrics)
            from smtpgate.admin.app import serve_admin

            # /healthz answers 503 once SMTP drains, so a load balancer sends new clients elsewhere
            admin = asyncio.get_running_loop().create_task(
                serve_admin(runtime, sockets["admin"], draining=lambda: server.stopping,
                            tls=admin_tls.context if admin_tls is not None else None))
        if runtime.clustered:
            heartbeat = asyncio.get_running_loop().create_task(_heartbeat(runtime, server))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload_tls(server, tls, admin_tls))
        orphaned = loop.create_task(_watch_parent(parent, stop)) if parent is not None else None
        limit = config.smtp.worker_memory_limit_mib * 1024 * 1024 if parent is not None else 0  # recycling needs a supervisor
        keeper = loop.create_task(_keep_memory(server, stop, limit=limit))
        await stop.wait()
        keeper.cancel()
        if orphaned is not None:
            orphaned.cancel()
        log.info("stopping: finishing transactions in flight")
        await server.shutdown()
        return 0
    finally:
        if delivery is not None and delivering is not None:
            delivery.stop()
            await asyncio.wait([delivering], timeout=20)
        if admin is not None:
            admin.cancel()
        if heartbeat is not None:
            heartbeat.cancel()
            await _leave_cluster(runtime)
        if reputation is not None and watching is not None:
            reputation.stop()
            await asyncio.wait([watching], timeout=10)
        watch.cancel()
        usage.cancel()
        await runtime.guard.close()
        runtime.audit.close(wait_for_alerts=False)  # events are written; webhook retries are not waited for
        runtime.close()


def admin_tls_context(config: Config, smtp_tls: ReloadableTlsContext) -> ReloadableTlsContext | None:
    """The admin listener's TLS, or None for plain HTTP (`[admin] tls`, docs/configuration.md).

    By default the SMTP certificate's own context: the same strict settings (TLS 1.2+, AEAD
    ciphers), and one SIGHUP renews both. `[admin] tls_cert`/`tls_key` give it its own files.
    """
    admin = config.admin
    if not admin.https:
        return None
    if not admin.tls_cert:
        return smtp_tls
    return ReloadableTlsContext(config.path(admin.tls_cert), config.path(admin.tls_key))


def _reload_tls(server: SmtpServer, smtp_tls: ReloadableTlsContext, admin_tls: ReloadableTlsContext | None) -> None:
    """SIGHUP: the SMTP certificates, then the admin listener's when it has files of its own."""
    server.reload_tls()
    if admin_tls is None or admin_tls is smtp_tls:
        return
    try:
        admin_tls.reload()
        log.info("admin listener TLS certificate reloaded")
    except TlsConfigError as exc:
        log.error("admin listener TLS reload failed, keeping the current certificate: %s", exc)


def describe_admin_listener(config: Config) -> str:
    """The start-up line naming the admin listener's scheme and address."""
    host, port = admin_address(config)
    shown = f"[{host}]" if ":" in host else host
    admin = config.admin
    line = f"admin listener on {admin.scheme}://{shown}:{port} (/healthz, /metrics, /oauth/token, /api/v1, the web console)"
    if admin.https:
        source = f"{admin.tls_cert} (from [admin] tls_cert)" if admin.tls_cert else f"{config.tls.cert} (the [tls] certificate)"
        line += f"; TLS 1.2+ with {source}"
    return line


async def _watch_guard(runtime: Runtime) -> None:
    """Bans made elsewhere (the CLI, other workers) come in; what has expired goes out."""
    guard = runtime.guard
    interval = runtime.config.guard.sync_interval.total_seconds()
    last_sweep = time.monotonic()
    while True:
        try:
            await guard.backend.heartbeat(now=time.time())  # Redis: this worker's lease on its connection slots
            await guard.sync()
            if time.monotonic() - last_sweep >= 30:
                last_sweep = time.monotonic()
                await guard.sweep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the next round may succeed
            log.warning("guard maintenance failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        await asyncio.sleep(interval)


async def _heartbeat(runtime: Runtime, server: SmtpServer) -> None:
    """The node registry's row of this process (its connections) and the keys' mirror, every heartbeat_interval."""
    registry = runtime.node_registry
    while True:
        try:
            await asyncio.to_thread(registry.beat, len(server.connections))
            if runtime.sealed_files is not None:  # keys rotated on another node arrive, ours leave
                await asyncio.to_thread(runtime.sealed_files.sync)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database may be down; the next beat may pass
            log.warning("cluster heartbeat failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        await asyncio.sleep(registry.interval)


async def _leave_cluster(runtime: Runtime) -> None:
    try:
        await asyncio.to_thread(runtime.node_registry.leave)
    except Exception as exc:  # noqa: BLE001 - it ages out instead
        log.warning("cannot remove this process from the node registry: %s", type(exc).__name__)


MEMORY_CHECK_INTERVAL = 10.0


def rss_bytes() -> int:
    """This process's resident memory (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_memory() -> None:
    """Hand freed memory back to the system: collect cycles, then glibc's malloc_trim(0).

    After a flood, the freed connections leave glibc's arenas full of holes that the
    allocator keeps; malloc_trim returns the free pages, which is most of the growth.
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


async def _keep_memory(server: SmtpServer, stop: asyncio.Event, *, limit: int, interval: float = MEMORY_CHECK_INTERVAL) -> None:
    """Give memory back once a crowd of connections is gone; recycle a worker that stays too big.

    Trimming runs when the connections fell to half of their peak since the last trim.
    A worker still over `limit` bytes (0: never) with no connection left stops, and its
    supervisor starts a fresh one: no session is dropped, since there is none.
    """
    peak = 0
    while True:
        await asyncio.sleep(interval)
        now = len(server.connections)
        peak = max(peak, now)
        if peak >= 10 and now * 2 <= peak:
            before = rss_bytes()
            await asyncio.to_thread(trim_memory)
            log.info("gave memory back after %d connections: %d MiB -> %d MiB", peak, before >> 20, rss_bytes() >> 20)
            peak = now
        if limit and now == 0 and not server.connections and rss_bytes() > limit:
            log.warning("worker at %d MiB, over worker_memory_limit_mib, and idle: recycling it", rss_bytes() >> 20)
            stop.set()
            return


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies, even by SIGKILL.

    Otherwise a `kill -9` of the parent leaves its workers serving and holding the
    listening sockets, and the restart fails with "Address already in use". SIGTERM, not
    SIGKILL: the worker still finishes the transactions in flight.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: _watch_parent notices instead
        pass
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def _watch_parent(parent: int, stop: asyncio.Event, *, interval: float = 1.0) -> None:
    """Stop this worker once its parent is gone (where PR_SET_PDEATHSIG is not to be had)."""
    while os.getppid() == parent:
        await asyncio.sleep(interval)
    log.warning("the supervising process %d is gone: stopping", parent)
    stop.set()


async def _flush_usage(runtime: Runtime, interval: float = 1.0) -> None:
    """Logins note their credential's last use in memory; it reaches the database here
    (and once more when the process stops, in Runtime.close)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(runtime.credentials.flush_usage)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - kept for the next round
            log.warning("cannot record credential use: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _setup_logging() -> None:
    from smtpgate.logformat import SafeFormatter

    console = logging.StreamHandler(sys.stderr)  # every value escaped, every secret redacted
    console.setFormatter(SafeFormatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    logging.basicConfig(handlers=[console], level=os.environ.get("SMTPGATE_LOG_LEVEL", "INFO").upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    audit = logging.getLogger("smtpgate.audit")  # one JSON object per line, nothing around it
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(handler)
    audit.propagate = False


def _preflight(config: Config) -> None:
    """Fail before forking: bad TLS files, an unreachable database, a missing key."""
    try:
        smtp_tls = ReloadableTlsContext(config.path(config.tls.cert), config.path(config.tls.key))
    except TlsConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        admin_tls_context(config, smtp_tls)
    except TlsConfigError as exc:
        raise SystemExit(f"error: {exc} (the admin listener's, [admin] tls_cert / tls_key)") from None
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
            'or use [guard] backend = "shared" (one machine).'
        ) from None


FD_MARGIN = 1024  # files besides connections: listeners, database, spool, logs, metrics


def raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft limit on open files to what `max_connections` needs, within the hard one.

    The cap is machine-wide (guard slots) and the kernel does not spread connections evenly,
    so one worker may hold nearly all of them. Returns the soft limit now in force; a
    warning says when it is short (a systemd unit sets it with LimitNOFILE).
    """
    want = max_connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a seccomp filter without @resources answers EPERM
            pass
    if soft < want:
        log.warning("open files limited to %d, below [smtp] max_connections + %d = %d: raise the hard "
                    "limit (LimitNOFILE, ulimit -Hn)", soft, FD_MARGIN, want)
    return soft


def _node_id() -> str:
    """This server instance: every worker of one `smtpgate serve` shares it (Redis counts a
    machine's connections under it)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def run_server(config: Config, *, workers: int = 1) -> int:
    """Run in the foreground until SIGTERM; the exit status."""
    _setup_logging()
    raise_open_files_limit(config.smtp.max_connections)
    _preflight(config)
    from smtpgate.metrics import enable_multiprocess

    enable_multiprocess(config.path("metrics"))  # before any worker exists: fresh files, shared totals
    sockets = {listener.name: bind(listener) for listener in listeners_from(config)}
    host, port = admin_address(config)
    sockets["admin"] = bind(Listener("admin", host, port, implicit_tls=False))
    log.info("%s", describe_admin_listener(config))
    if not config.admin.https and not config.admin.on_loopback:
        log.warning("the admin listener on %s is plain HTTP on a non-loopback address: operator tokens, "
                    "console passwords and session cookies cross the network in clear unless a TLS proxy "
                    "carries them ([admin] allow_plain_http = true; without it the listener serves HTTPS)",
                    config.admin.listen)
    _install_loop()
    if config.guard.backend == "memory" and workers > 1:
        log.warning('[guard] backend = "memory" with %d workers: each worker counts failures, quotas and '
                    'connection caps on its own; use "shared" (the default) for exact limits', workers)
    if workers <= 1:
        code = asyncio.run(_serve(config, sockets))  # the shared state is this process's own
    else:
        code = _supervise(config, sockets, workers)
    log.info("stopped" if code == 0 else f"stopped with exit status {code}")  # the last line an operator sees
    return code


def _supervise(config: Config, sockets: dict[str, socket.socket], workers: int) -> int:
    """Fork the workers, forward signals, restart a worker that dies, serve the guard host."""
    from smtpgate.guard.host import GuardHost, HostLoop

    children: dict[int, int] = {}
    stopping = False
    node = _node_id()
    host = HostLoop(GuardHost() if config.guard.backend == "shared" else None, time.time)

    def spawn(slot: int) -> None:
        parent = os.getpid()
        channel = host.open_channel()
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            code = 1
            try:
                host.in_child()
                _die_with_parent(parent)
                code = asyncio.run(_serve(config, sockets, deliver=slot == 0, parent=parent,
                                          guard_channel=channel, node=node))
            finally:
                os._exit(code)
        if channel is not None:
            channel.close()  # the worker's end; the parent sees EOF on its own when the worker is gone
        children[pid] = slot

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            for name, sock in sockets.items():  # no worker is started any more: the ports close with the workers'
                if name != "admin":
                    sock.close()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)  # wakes the loop through the wakeup fd
    signal.set_wakeup_fd(host.wakeup_write.fileno())
    # What the parent loaded (the preflight imported the services) is shared with the
    # workers by fork; frozen, the collector never writes to those objects, so their pages
    # stay shared instead of being copied into every worker.
    gc.collect()
    gc.freeze()
    for slot in range(workers):
        spawn(slot)
    log.info("started %d workers (guard: %s)", workers, config.guard.backend)
    from smtpgate.metrics import worker_exited

    last_sweep = time.monotonic()
    restart_at: dict[int, float] = {}  # slot -> when to start its new worker
    try:
        while children or (restart_at and not stopping):
            host.poll(0.2 if restart_at else 1.0)
            if host.host is not None and time.monotonic() - last_sweep >= 30:
                last_sweep = time.monotonic()
                host.host.sweep(now=time.time())
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    children.clear()
                    break
                if pid == 0:
                    break
                exited_slot = children.pop(pid, None)
                worker_exited(pid)  # its live gauges (open connections) stop counting
                if exited_slot is not None and not stopping:
                    if status == 0:  # it stopped itself: recycled after growing past worker_memory_limit_mib
                        log.info("worker %d recycled; starting a new one", pid)
                    else:
                        log.error("worker %d exited (status %d); starting a new one", pid, status)
                    restart_at[exited_slot] = time.monotonic() + 0.5
            for slot, when in list(restart_at.items()):
                if stopping:
                    restart_at.clear()
                elif time.monotonic() >= when:
                    del restart_at[slot]
                    spawn(slot)
    finally:
        signal.set_wakeup_fd(-1)
        host.close()
    return 0
