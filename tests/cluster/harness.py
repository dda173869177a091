"""Several smtpgate nodes (each its own process and data directory) on one PostgreSQL
schema and one Redis prefix, and a TCP relay that can cut one node off the database."""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from smtpgate.config import load_config
from smtpgate.runtime import Runtime
from tests.conftest import PG_URL, _plain
from tests.guard.servers import set_section
from tests.smtp.server_harness import RunningServer, free_port, init_data_dir


@contextmanager
def cluster_schema() -> Iterator[str]:
    """A schema of its own (the nodes run migrations on first start); dropped afterwards."""
    name = f"sgtest_{secrets.token_hex(4)}"
    with psycopg.connect(_plain(PG_URL), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(_plain(PG_URL), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def node_configs(base: Path, names: list[str], *, database_url: str, redis_prefix: str,
                 cluster: dict[str, str] | None = None, delivery: str = "",
                 sections: dict[str, dict[str, str]] | None = None,
                 database_urls: dict[str, str] | None = None, redis_urls: dict[str, str] | None = None) -> list[Path]:
    """`smtpgate init` for the first node; the others get what an operator copies to a new
    node: the config, the TLS files and the cluster master key (the app-password key and every
    other key come from the database). Each on ports of its own; all with the Redis guard
    under one prefix and `[cluster] enabled = true`."""
    first = init_data_dir(base / names[0], database_url=database_url, smtp={"auth_failure_delay": '"20ms"'})
    set_section(first, "guard", {
        "backend": '"redis"', "redis_prefix": f'"{redis_prefix}"', "sync_interval": '"200ms"',
        "login_failures": "100000", "ip_failures": "100000", "network_failures": "100000",
        "allow_networks": "[]",  # bans apply to loopback sources too
    })
    if delivery:
        first.write_text(first.read_text().replace('mode = "capture"', delivery, 1))
    for section, values in (sections or {}).items():
        set_section(first, section, values)
    configs = []
    for name in names:
        directory = base / name
        if name == names[1]:
            # The first node opens the store: the schema, the master key, its keys sealed in.
            set_section(first, "cluster", {"enabled": "true", "node_name": f'"{names[0]}"'})
            runtime = Runtime(load_config(first))
            runtime.store
            runtime.close()
        if name != names[0]:  # config, TLS files and the master key; no other secret
            shutil.copytree(base / names[0], directory,
                            ignore=shutil.ignore_patterns("*.log", "*.db*", "metrics", "secrets"))
        config = directory / "smtpgate.toml"
        ports = [free_port() for _ in range(3)]
        set_section(config, "smtp", {"submission": f'"127.0.0.1:{ports[0]}"', "submissions": f'"127.0.0.1:{ports[1]}"'})
        set_section(config, "admin", {"listen": f'"127.0.0.1:{ports[2]}"'})
        set_section(config, "database", {"url": f'"{(database_urls or {}).get(name, database_url)}"'})
        if name in (redis_urls or {}):
            set_section(config, "guard", {"redis_url": f'"{(redis_urls or {})[name]}"'})
        set_section(config, "cluster", {
            "enabled": "true", "node_name": f'"{name}"', "lease": '"3s"', "heartbeat_interval": '"1s"',
            "cache_fallback_ttl": '"1s"', **(cluster or {}),
        })
        configs.append(config)
    return configs


def start_all(nodes: list[RunningServer]) -> None:
    """Start the nodes side by side (each start waits for its ports)."""
    errors: list[BaseException] = []

    def start(node: RunningServer) -> None:
        try:
            node.start()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class Relay:
    """A TCP forwarder on loopback to PostgreSQL that can be cut (every connection reset,
    new ones refused) and restored on the same port: one node's view of a database outage."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.restore()

    def url(self, schema_url: str) -> str:
        return schema_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{self.port}/")

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            sockets, self._sockets = self._sockets, []
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, frees the port
            except OSError:
                pass
            server.close()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the pipes; the node sees its connections end
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.cut()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.close()
            except OSError:
                pass
