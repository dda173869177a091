"""Resident memory of a worker before, during and after a connection flood.

    .venv/bin/python bench/memory.py [--connections 2000] [--workers 2]

Starts a server of its own (loopback, free ports), opens the connections (each does
EHLO, STARTTLS and a TLS handshake, then idles), closes them all, and prints each
worker's RSS: at rest, at the peak, and once the memory keeper has run
(`smtpgate.process`: malloc_trim after a crowd is gone). Figures go to RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.smtp.server_harness import RunningServer, init_data_dir  # noqa: E402


def workers_of(server: RunningServer, count: int) -> list[int]:
    assert server.proc is not None
    if count <= 1:
        return [server.proc.pid]
    pid = server.proc.pid
    return [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def flood(server: RunningServer, connections: int, sources: int) -> list[asyncio.StreamWriter]:
    context = server.client_context()

    async def one(n: int) -> asyncio.StreamWriter | None:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.submission_port, local_addr=(f"127.0.1.{n % sources + 1}", 0))
            await reader.readline()
            writer.write(b"EHLO flood.test\r\n")
            while not (await reader.readline()).startswith(b"250 "):
                pass
            writer.write(b"STARTTLS\r\n")
            await reader.readline()
            await writer.start_tls(context, server_hostname="localhost")
            return writer
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            return None

    held: list[asyncio.StreamWriter] = []
    for start in range(0, connections, 200):
        batch = await asyncio.gather(*(one(n) for n in range(start, min(connections, start + 200))))
        held += [w for w in batch if w is not None]
    return held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        per_ip = str(args.connections)
        server = RunningServer(init_data_dir(Path(tmp) / "data", smtp={
            "max_connections": str(args.connections * 2), "max_connections_per_ip": per_ip,
            "pre_auth_timeout": '"10m"', "auth_deadline": '"10m"', "pre_auth_stress_timeout": '"10m"',
        }))
        server.start("--workers", str(args.workers))
        try:
            time.sleep(2)
            pids = workers_of(server, args.workers)
            rest = {pid: rss_mib(pid) for pid in pids}

            async def run() -> dict[int, float]:
                held = await flood(server, args.connections, sources=16)
                print(f"held {len(held)} connections", flush=True)
                peak = {pid: rss_mib(pid) for pid in pids}
                for writer in held:
                    writer.close()
                return peak

            peak = asyncio.run(run())
            time.sleep(25)  # two rounds of the memory keeper
            after = {pid: rss_mib(pid) for pid in pids}
            for pid in pids:
                print(f"worker {pid}: at rest {rest[pid]:.0f} MiB, peak {peak[pid]:.0f} MiB, after {after[pid]:.0f} MiB")
        finally:
            server.close()


if __name__ == "__main__":
    main()
