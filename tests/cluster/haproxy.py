"""A real HAProxy on loopback in front of smtpgate nodes: its configuration, process and state.

The configuration is the one docs/proxy-protocol.md shows (`mode tcp`, `send-proxy-v2`, an
HTTP health check on each node's /healthz), with loopback ports and round robin, so that
consecutive connections reach the nodes in turn and a test knows which node each one met.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.smtp.server_harness import RunningServer, free_port

BALANCER_SOURCE = "127.0.0.2"  # HAProxy's own address towards the nodes: their proxy_protocol_from


def haproxy_config(nodes: list[RunningServer], *, submission: int, submissions: int, stats: Path) -> str:
    def servers(port_of: str) -> str:
        return "\n".join(
            f"    server n{n} 127.0.0.1:{getattr(node, port_of)} port {node.config.admin.listen.rpartition(':')[2]}"
            for n, node in enumerate(nodes, 1)
        )

    backend = f"""    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host smtpgate
    http-check expect status 200
    default-server send-proxy-v2 check inter 1s fall 3 rise 1 source {BALANCER_SOURCE}"""
    return f"""global
    maxconn 2000
    stats socket {stats} mode 600 level admin
    log stderr format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout check 5s
    timeout connect 2s
    timeout client 1m
    timeout server 1m
    retries 2
    option redispatch

frontend submission
    bind 127.0.0.1:{submission}
    default_backend smtpgate_submission

frontend submissions
    bind 127.0.0.1:{submissions}
    default_backend smtpgate_submissions

backend smtpgate_submission
{backend}
{servers("submission_port")}

backend smtpgate_submissions
{backend}
{servers("submissions_port")}
"""


@dataclass
class HAProxy:
    directory: Path
    submission_port: int = 0
    submissions_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def stats_path(self) -> Path:
        return self.directory / "haproxy.sock"

    def start(self, nodes: list[RunningServer]) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.submission_port, self.submissions_port = free_port(), free_port()
        config = self.directory / "haproxy.cfg"
        config.write_text(haproxy_config(nodes, submission=self.submission_port,
                                         submissions=self.submissions_port, stats=self.stats_path))
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        log = (self.directory / "haproxy.log").open("wb")
        self.proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def servers(self) -> dict[tuple[str, str], dict[str, str]]:
        """`show stat` from the stats socket: (backend, server) -> its row."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_path))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
        return {(row["pxname"], row["svname"]): row for row in rows if row["svname"].startswith("n")}

    def wait_until_all_up(self, count: int, timeout: float = 20) -> dict[tuple[str, str], dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = self.servers()
            except OSError:
                rows = {}
            if len(rows) == count and all(r["status"] == "UP" and r["check_status"] == "L7OK" for r in rows.values()):
                return rows
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                log = (self.directory / "haproxy.log").read_text(errors="replace")
                raise AssertionError(f"HAProxy servers not all up: {rows}\n{log}")
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
