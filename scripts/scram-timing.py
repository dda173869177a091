#!/usr/bin/env python3
"""Does the first SCRAM-SHA-256 step tell whether a login exists?  Measure it.

Starts a throw-away server on loopback (SQLite, one worker), creates one account with a
password and two app passwords, then for N rounds sends `AUTH SCRAM-SHA-256 <client-first>`
for the existing login and for an unknown one (interleaved, order alternating), times the
wait for the `334` server-first, and cancels with `*`. Prints the mean and median of both
and how often a single sample classifies correctly by the best threshold (50 % = no signal).

    .venv/bin/python scripts/scram-timing.py [N]
"""

from __future__ import annotations

import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.smtp.raw_client import RawClient  # noqa: E402
from tests.smtp.server_harness import PASSWORD, RunningServer, init_data_dir  # noqa: E402

KNOWN = "timing@example.com"
UNKNOWN = "nobody-here@example.com"


def first_step(raw: RawClient, login: str, n: int) -> float:
    client_first = base64.b64encode(f"n,,n={login},r=timing{n}".encode()).decode()
    started = time.perf_counter()
    code, _ = raw.cmd(f"AUTH SCRAM-SHA-256 {client_first}")
    elapsed = time.perf_counter() - started
    assert code == 334, code
    assert raw.cmd("*")[0] == 501
    return elapsed


def best_single_sample_accuracy(known: list[float], unknown: list[float]) -> float:
    """The best threshold's accuracy at telling one sample's class (0.5 means no signal)."""
    best = 0.5
    for threshold in sorted(known + unknown):
        right = sum(k > threshold for k in known) + sum(u <= threshold for u in unknown)
        best = max(best, right / (len(known) + len(unknown)), 1 - right / (len(known) + len(unknown)))
    return best


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    with tempfile.TemporaryDirectory() as tmp:
        server = RunningServer(init_data_dir(Path(tmp) / "data"))
        server.start()
        try:
            server.credentials.create_account(KNOWN, password=PASSWORD)
            for name in ("phone", "laptop"):
                server.credentials.create_app_password(KNOWN, name)
            known: list[float] = []
            unknown: list[float] = []
            raw = None
            for n in range(rounds):
                if n % 8 == 0:  # well under the protocol's error limit per connection
                    if raw is not None:
                        raw.close()
                    raw = RawClient(server.submissions_port)
                    raw.starttls(server.client_context())
                    raw.reply()
                    raw.cmd("EHLO timing.test")
                assert raw is not None
                pair = [(KNOWN, known), (UNKNOWN, unknown)]
                for login, samples in pair if n % 2 else reversed(pair):
                    samples.append(first_step(raw, login, n))
            if raw is not None:
                raw.close()
        finally:
            server.close()
    ms = 1000.0
    print(f"samples per login: {rounds}")
    print(f"existing login: mean {statistics.mean(known) * ms:.3f} ms, median {statistics.median(known) * ms:.3f} ms")
    print(f"unknown login:  mean {statistics.mean(unknown) * ms:.3f} ms, median {statistics.median(unknown) * ms:.3f} ms")
    print(f"difference of means: {(statistics.mean(known) - statistics.mean(unknown)) * ms:+.3f} ms")
    print(f"one sample tells them apart: {best_single_sample_accuracy(known, unknown) * 100:.0f} % (50 % = chance)")


if __name__ == "__main__":
    main()
