"""The hashing pools of several processes share one machine-wide bound (flock gate)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

from smtpgate.pools import HashingPool, hashing_slots


def _busy(marker: Path) -> None:
    """Hold a slot for a while and record when, so overlaps can be seen."""
    start = time.monotonic()
    time.sleep(0.05)
    with marker.open("a") as out:
        out.write(f"{start} {time.monotonic()}\n")


def _other_process(gate: str, marker: str) -> None:
    pool = HashingPool(Path(gate), slots=1)
    for f in [pool.submit(_busy, Path(marker)) for _ in range(4)]:
        f.result()


def test_two_processes_never_hash_at_once_with_one_slot(tmp_path: Path) -> None:
    marker = tmp_path / "spans"
    gate = tmp_path / "locks"
    other = multiprocessing.get_context("fork").Process(target=_other_process, args=(str(gate), str(marker)))
    other.start()
    pool = HashingPool(gate, slots=1)
    for f in [pool.submit(_busy, marker) for _ in range(4)]:
        f.result()
    other.join(30)
    spans = sorted(tuple(map(float, line.split())) for line in marker.read_text().splitlines())
    assert len(spans) == 8
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two argon2 slots were held at once"


def test_hashing_runs_at_a_lower_priority_and_leaves_a_core(tmp_path: Path) -> None:
    pool = HashingPool(tmp_path / "locks", slots=1)
    niceness = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert niceness >= 10
    assert hashing_slots() == max(1, (os.cpu_count() or 2) - 1)


def test_an_unwritable_gate_still_hashes(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    pool = HashingPool(blocker / "locks", slots=1)
    assert pool.submit(lambda x: x * 2, 21).result() == 42
