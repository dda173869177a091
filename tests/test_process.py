"""The server process: workers end with their parent, so a restart can bind the ports again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from smtpgate.process import _keep_memory, _watch_parent, rss_bytes, trim_memory
from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import RunningServer, init_data_dir


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def alive(pid: int) -> bool:
    """Running, not a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_until(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_workers_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    config = init_data_dir(tmp_path / "data", smtp={"shutdown_grace": '"1s"'})
    first = RunningServer(config)
    first.start("--workers", "2")
    second = RunningServer(config)
    assert first.proc is not None
    workers: list[int] = []
    try:
        wait_until(lambda: len(children_of(first.proc.pid)) == 2, "two workers")
        workers = children_of(first.proc.pid)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        wait_until(lambda: not any(alive(pid) for pid in workers), f"workers {workers} still running")
        second.start("--workers", "2")  # binds the same ports
        client = RawClient(second.submission_port)
        assert client.reply()[0] == 220
        client.close()
    finally:
        for pid in workers:  # a failed run must not leave them holding the ports
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        second.close()
        first.runtime.close()


def test_the_watchdog_stops_a_worker_whose_parent_is_gone() -> None:
    """Where PR_SET_PDEATHSIG is missing, getppid() changing is the sign."""

    async def scenario() -> bool:
        stop = asyncio.Event()
        watch = asyncio.get_running_loop().create_task(_watch_parent(os.getppid() + 1_000_000, stop, interval=0.01))
        await asyncio.wait_for(stop.wait(), 10)
        watch.cancel()
        return stop.is_set()

    assert asyncio.run(scenario())


def test_the_watchdog_leaves_a_worker_whose_parent_lives() -> None:
    async def scenario() -> bool:
        stop = asyncio.Event()
        watch = asyncio.get_running_loop().create_task(_watch_parent(os.getppid(), stop, interval=0.01))
        await asyncio.sleep(0.2)
        watch.cancel()
        return stop.is_set()

    assert not asyncio.run(scenario())


# ------------------------------------------------------------------ memory after floods


def test_trim_memory_gives_freed_memory_back() -> None:
    """What a flood leaves: many small freed blocks that glibc keeps unless asked."""
    before = rss_bytes()
    crowd = [bytearray(3000) for _ in range(60_000)]  # ~180 MB of small allocations
    grown = rss_bytes()
    assert grown - before > 100 * 2**20
    del crowd[:-1]  # all but the last: the heap top stays in use, so only a trim returns the holes
    trim_memory()
    assert rss_bytes() - before < (grown - before) / 2


class _Crowd:
    """A stand-in for SmtpServer: only its connection registry is read."""

    def __init__(self, size: int) -> None:
        self.connections: set[object] = {object() for _ in range(size)}


def test_the_keeper_trims_after_a_crowd_leaves_and_recycles_an_idle_worker(monkeypatch) -> None:
    import smtpgate.process as process

    trims: list[int] = []
    monkeypatch.setattr(process, "trim_memory", lambda: trims.append(1))

    async def scenario() -> bool:
        server, stop = _Crowd(500), asyncio.Event()
        keeper = asyncio.get_running_loop().create_task(
            _keep_memory(server, stop, limit=1, interval=0.01))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert trims == [] and not stop.is_set()  # still crowded, not idle
        server.connections = set(list(server.connections)[:10])
        while not trims:
            await asyncio.sleep(0.01)
        assert not stop.is_set()  # over the limit, but not idle: no session is dropped
        server.connections = set()
        await asyncio.wait_for(stop.wait(), 10)  # idle and over the limit: recycled
        await keeper
        return True

    assert asyncio.run(scenario())


def test_no_recycling_without_a_limit() -> None:
    async def scenario() -> bool:
        stop = asyncio.Event()
        keeper = asyncio.get_running_loop().create_task(_keep_memory(_Crowd(0), stop, limit=0, interval=0.01))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        keeper.cancel()
        return stop.is_set()

    assert not asyncio.run(scenario())


# ------------------------------------------------------------------ open files for max_connections

_RAISE = """
import logging, resource, sys
from smtpgate.process import raise_open_files_limit
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}))
print("soft", raise_open_files_limit(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def _raise_in_child(hard: int) -> str:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _RAISE.format(hard=hard)], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_the_open_files_limit_is_raised_to_what_max_connections_needs() -> None:
    """One worker may hold nearly all of the machine's connections: 1000 + the margin."""
    out = _raise_in_child(hard=8192)
    assert "soft 2024 2024" in out
    assert "WARNING" not in out


def test_a_hard_limit_below_max_connections_is_used_and_named() -> None:
    out = _raise_in_child(hard=1500)
    assert "soft 1500 1500" in out
    assert "WARNING open files limited to 1500" in out and "max_connections" in out
