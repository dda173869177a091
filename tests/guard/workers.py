"""Which worker process holds a client's connection, read from /proc (no debug header needed).

The server side of a TCP connection is a socket whose remote end is the client's local
address; /proc/net/tcp maps it to an inode, and the worker holding that inode has it
among its file descriptors.
"""

from __future__ import annotations

import os
import smtplib
import socket
import time
from collections.abc import Callable
from pathlib import Path


def _hex_address(host: str, port: int) -> str:
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def _server_inode(client: tuple[str, int], server: tuple[str, int]) -> str | None:
    """The inode of the server's socket: local address the server's, remote the client's
    (a closed connection in TIME_WAIT may share the client's port; it has inode 0)."""
    local, remote = _hex_address(*server), _hex_address(*client)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote and fields[9] != "0":
            return fields[9]
    return None


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def worker_of(parent: int, sock: socket.socket, timeout: float = 5.0) -> int:
    """The pid of the child of `parent` that holds the server side of `sock`."""
    host, port = sock.getsockname()[:2]
    server_host, server_port = sock.getpeername()[:2]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inode = _server_inode((host, port), (server_host, server_port))
        if inode is not None:
            target = f"socket:[{inode}]"
            for pid in children(parent):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except OSError:
                        continue
        time.sleep(0.02)
    raise AssertionError(f"no worker of {parent} holds the connection from {host}:{port}")


def spread(parent: int, connect: Callable[[], smtplib.SMTP], wanted: int, *, per_worker: int,
           attempts: int = 80) -> list[tuple[smtplib.SMTP, int]]:
    """`wanted` open connections on at least two workers, at most `per_worker` on each.

    Connections are opened one after the other (the kernel hands each to whichever worker
    accepts first); extra ones on a worker that has enough are closed again.
    """
    kept: list[tuple[smtplib.SMTP, int]] = []
    for _ in range(attempts):
        smtp = connect()
        pid = worker_of(parent, smtp.sock)
        if sum(1 for _, p in kept if p == pid) >= per_worker:
            smtp.close()
            continue
        kept.append((smtp, pid))
        if len(kept) >= wanted and len({p for _, p in kept}) >= 2:
            return interleave(kept)
    for smtp, _ in kept:
        smtp.close()
    raise AssertionError(f"{attempts} connections did not reach two workers of {parent}")


def interleave(kept: list[tuple[smtplib.SMTP, int]]) -> list[tuple[smtplib.SMTP, int]]:
    """Order connections so that consecutive ones are on different workers where possible."""
    by_pid: dict[int, list[tuple[smtplib.SMTP, int]]] = {}
    for item in kept:
        by_pid.setdefault(item[1], []).append(item)
    out: list[tuple[smtplib.SMTP, int]] = []
    while any(by_pid.values()):
        for queue in by_pid.values():
            if queue:
                out.append(queue.pop(0))
    return out
