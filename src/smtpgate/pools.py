"""Bounded thread pools for the blocking work of a server process, one per kind of wait.

argon2 is CPU: a handful of threads at a lower priority (niceness), and on top a gate
shared by every process of the machine (flock on lock files in the data dir), so that
all workers together run at most `hashing_slots()` argon2 checks at once and leave a
core to the event loops; a burst of account-password logins queues there and the other
sessions keep their latency. A process that dies releases its flock with it. fsync is
disk latency: many threads, since they mostly wait. Database calls use the loop's
default executor. Kept apart, none of them can starve another: before, argon2 checks
and spool commits queued in one pool.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

HASHING_NICENESS = 10
DISK_THREADS = 32


def hashing_slots() -> int:
    """argon2 checks at once on this machine: every core but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _lower_priority() -> None:
    try:  # on Linux a thread has its own niceness, addressed by its thread id
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    except (AttributeError, OSError):
        pass


class HashingPool(ThreadPoolExecutor):
    """A pool whose tasks each hold one of `slots` machine-wide flocks while they run."""

    def __init__(self, gate: Path | None, slots: int | None = None) -> None:
        self.slots = slots or hashing_slots()
        super().__init__(max_workers=self.slots, thread_name_prefix="smtpgate-hash", initializer=_lower_priority)
        self._gate = gate
        self._local = threading.local()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._gated, fn, *args, **kwargs)

    def _gated(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        fd = self._slot_fd()
        if fd is None:  # no gate, or its folder is not ours to write: bounded per process only
            return fn(*args, **kwargs)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return fn(*args, **kwargs)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _slot_fd(self) -> int | None:
        """This thread's own open file (flocks of separate opens exclude each other)."""
        if self._gate is None:
            return None
        if not hasattr(self._local, "fd"):
            slot = threading.get_native_id() % self.slots
            try:
                self._gate.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._local.fd = os.open(self._gate / f"hashing-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._local.fd = None
        fd: int | None = self._local.fd
        return fd


def hashing_pool(gate: Path | None = None, slots: int | None = None) -> HashingPool:
    return HashingPool(gate, slots)


def disk_pool(threads: int = DISK_THREADS) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smtpgate-disk")
