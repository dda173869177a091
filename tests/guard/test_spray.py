"""Password spraying against a real server: a few guesses on each of many logins from many
sources, each under its own threshold. The spread is caught: an alert, then bans at a few
failures per source. Printed figures (`pytest -s`) are for the record."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guard.servers import client, eventually, guarded_config, one_auth_try
from tests.smtp.server_harness import RunningServer


@pytest.fixture
def sprayed(tmp_path: Path) -> Iterator[RunningServer]:
    config = guarded_config(tmp_path / "data", backend="memory", guard={
        "ip_failures": "10", "network_failures": "1000", "login_failures": "1000",
        "spray_logins": "10", "spray_sources": "10", "spray_ip_failures": "3", "spray_for": '"1h"',
    })
    server = RunningServer(config)
    server.start()
    yield server
    server.close()


def guess(server: RunningServer, source: str, login: str) -> str:
    return one_auth_try(lambda: client(server, source), login, "Summer2026!", helo="sprayer.test")


def test_a_spray_over_many_logins_and_sources_raises_an_alert_and_bans(sprayed: RunningServer) -> None:
    answers: Counter[str] = Counter()
    for round_ in range(3):  # 30 guesses: 10 logins, 10 sources in 10 networks, 3 each
        for i in range(10):
            answers[guess(sprayed, f"127.0.{10 + i}.1", f"user{i}@example.com")] += 1
    alerts = eventually(lambda: [a for a in sprayed.runtime.audit_store.alerts() if a.rule == "password-spray"],
                        lambda found: len(found) >= 1)
    bans = sorted(b.network for b in sprayed.runtime.guard.recorded_bans())
    figures = {"guesses": 30, "answers": dict(answers), "alerts": [a.rule for a in alerts], "bans": bans}
    print("SPRAY FIGURES:", json.dumps(figures))
    assert [(a.rule, a.severity) for a in alerts] == [("password-spray", "critical")]
    # each source's third failure (spray_ip_failures) banned it; without the rule none would be (10 needed)
    assert bans == sorted(f"127.0.{10 + i}.1/32" for i in range(10))
    assert answers["535"] == 30
    assert guess(sprayed, "127.0.10.1", "user0@example.com") == "421 at connect"
