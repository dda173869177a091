"""Bounded thread pools for the blocking work of a server process, one per kind of wait.

argon2 is CPU: a handful of threads at a lower priority (niceness), so a burst of
account-password logins queues in its own pool and the event loop (every other
session) keeps the CPU first. fsync is disk latency: many threads, since they mostly
wait. Database calls use the loop's default executor. Kept apart, none of them can
starve another: before, argon2 checks and spool commits queued in one pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

HASHING_NICENESS = 10
DISK_THREADS = 32


def hashing_threads() -> int:
    """One per two cores per process (a server runs one process per core by default)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _lower_priority() -> None:
    try:  # on Linux a thread has its own niceness, addressed by its thread id
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    except (AttributeError, OSError):
        pass


def hashing_pool(threads: int | None = None) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads or hashing_threads(), thread_name_prefix="smtpgate-hash",
                              initializer=_lower_priority)


def disk_pool(threads: int = DISK_THREADS) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smtpgate-disk")
