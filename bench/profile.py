#!/usr/bin/env python3
"""Where a worker's time goes: py-spy on a fresh smtpgate while bench/loadgen.py runs.

Starts smtpgate as bench/run.py does (`smtpgate init` defaults, `serve --workers N`),
records every process of it with `py-spy record --subprocesses --format raw` while the
generator runs scenario a or b, and prints the share of non-idle samples per kind of work
(the rules in KINDS, first match wins, read from the innermost frame outwards). py-spy
counts a thread blocked in `fsync` or `open` as busy, so those rows are wall time spent
in the disk pool, not CPU.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py --scenario b --pipelining off --duration 12
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (the server set-up of bench/run.py)

# (label, substrings of a frame's function or file), checked from the innermost frame out
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("directory fsync (shared, group commit) and waiting for it", ("_fsync_dir", "synced (")),
    # py-spy shows no C frame: os.fsync is known by its line in SpoolWriter._commit
    ("fsync of the message file", ("fsync", "capture.py:368)")),
    ("creating the message file", ("_open_new",)),
    ("other spool file work", ("delivery/capture.py", "delivery/spool.py", "delivery/queue.py")),
    ("argon2 / password hashing", ("argon2", "passwords.py")),
    ("credential lookup and login caches", ("credentials/",)),
    ("audit", ("audit/",)),
    ("database (SQLAlchemy, sqlite3)", ("sqlalchemy", "sqlite3")),
    ("TLS (Python side: wrap, handshake calls, ssl reads/writes)", ("ssl.py", "smtp/tls.py", "sslproto", "do_handshake")),
    ("server adapter (_flush, transport, timers)", ("smtp/server.py",)),
    ("SMTP protocol state machine", ("smtp/protocol.py",)),
    ("session (policy, headers, spool calls)", ("smtp/session.py", "smtp/sasl.py")),
    ("guard", ("guard/",)),
    ("logging, metrics", ("logging/", "logformat.py", "metrics.py", "prometheus_client")),
    ("deliverability (foresight)", ("deliverability/", "mailauth/")),
    (STARTUP := "start-up (imports, building the admin app)", ("importlib", "pydantic", "fastapi", "inspect.py", "typing.py")),
    ("event loop and thread pool machinery (Python side)", ("asyncio/", "concurrent/futures", "threading.py")),
]
# the innermost Python frame of the event loop thread while uvloop runs its C code: TLS
# records (uvloop's SSL protocol is compiled), socket reads and writes, callbacks
IN_UVLOOP = ("Runner.run (", "run_until_complete (", "run (asyncio/runners.py")
UVLOOP = "uvloop's C code: TLS records, socket I/O, scheduling (no Python frame)"
IDLE = ("select (", "epoll", "_worker (concurrent", "wait (threading.py", "poll (selectors",
        "_keep_memory", "run_forever", "sleep (")


def classify(frames: list[str]) -> str | None:
    """The kind of work of one stack (outermost first), or None when the thread idles."""
    leaf = frames[-1] if frames else ""
    if any(word in leaf for word in IDLE) and "fsync" not in leaf:
        return None
    if leaf.startswith(IN_UVLOOP):
        return UVLOOP
    for frame in reversed(frames):
        for label, words in KINDS:
            if any(word in frame for word in words):
                return label
    return "other"


def summarise(raw: Path) -> tuple[int, collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")[2:]  # process, thread, then frames
        kind = classify(frames)
        if kind is not None:
            counts[kind] += int(n)
    startup = counts.pop(STARTUP, 0)
    if startup:
        print(f"({startup} samples of start-up left out: imports, the admin app being built)")
    return sum(counts.values()), counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=("a", "b"), default="b")
    ap.add_argument("--pipelining", choices=("auto", "off"), default="off")
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--raw", type=Path, help="also keep py-spy's raw output here")
    ap.add_argument("--summarise", type=Path, help="only classify an existing raw file")
    opts = ap.parse_args()
    if opts.summarise:
        report(*summarise(opts.summarise))
        return 0
    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.exists():
        print(f"{pyspy} not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    gen = argparse.Namespace(smtpgate=bench.ROOT / ".venv" / "bin" / "smtpgate",
                             smtpgate_user="bench@example.test", workers=opts.workers, keep=False)
    server = bench.Smtpgate(gen)
    raw = opts.raw or Path(tempfile.mkstemp(prefix="pyspy-", suffix=".txt")[1])
    try:
        server.start()
        time.sleep(2)
        spy = subprocess.Popen([str(pyspy), "record", "--subprocesses", "--format", "raw",
                                "--rate", str(opts.rate), "--duration", str(int(opts.duration + 2)),
                                "--pid", str(server.pids()[0]), "--output", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        args = argparse.Namespace(clients=opts.clients, size=opts.size, op_timeout=30.0, procs=1,
                                  pipelining=opts.pipelining, duration=opts.duration,
                                  max_messages=10**6, connections=0, hold=0, ramp_timeout=0,
                                  ramp_stall=0, warmup=0, source_ips=1)
        res = bench.loadgen(server, args, opts.scenario)
        spy.wait(60)
        n = res.get("messages_ok", 0)
        print(f"scenario {opts.scenario} (pipelining {opts.pipelining}): {res.get('msg_per_s')} msg/s, "
              f"{n} messages, server CPU {res.get('server_cpu_s')} s")
        report(*summarise(raw))
    finally:
        server.stop()
        if not opts.raw:
            raw.unlink(missing_ok=True)
    return 0


def report(total: int, counts: collections.Counter[str]) -> None:
    print(f"{total} non-idle samples")
    print("| share | work |\n|---:|---|")
    for label, n in counts.most_common():
        print(f"| {100 * n / max(1, total):.1f} % | {label} |")


if __name__ == "__main__":
    sys.exit(main())
