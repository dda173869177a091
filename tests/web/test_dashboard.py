"""The operators' dashboard counts what happened in each interval of the last hour or day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smtpgate.audit.events import AuditEvent
from smtpgate.audit.store import Alert
from smtpgate.config import load_config
from smtpgate.ops import Operations
from smtpgate.ops.console import console_actor
from smtpgate.runtime import Runtime
from smtpgate.web.charts import bar_chart
from tests.smtp.server_harness import init_data_dir

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[Operations]:
    runtime = Runtime(load_config(init_data_dir(tmp_path / "data")))
    yield Operations(runtime)
    runtime.close()


def test_counts_fall_in_their_interval_and_old_ones_are_left_out(ops: Operations) -> None:
    def event(kind: str, result: str, minutes_ago: float) -> tuple[AuditEvent, str, str]:
        return AuditEvent(kind=kind, result=result, time=NOW - timedelta(minutes=minutes_ago)), "", ""

    ops.runtime.audit_store.insert([
        event("auth", "ok", 1), event("auth", "ok", 2), event("auth", "fail", 58), event("auth", "fail", 61),
        event("message", "ok", 3), event("message", "fail", 3), event("connect", "ok", 1), event("auth", "ok", 600),
    ])
    ops.runtime.audit_store.add_alert(Alert("failure-burst", "warning", "burst", "k1", NOW - timedelta(minutes=30)),
                                      webhook="off", email="off")
    viewer = console_actor("v@example.com", "viewer", "192.0.2.1")
    hour = ops.console.dashboard(viewer, "hour", now=NOW)
    assert len(hour.starts) == 12 and hour.bucket == timedelta(minutes=5)
    assert hour.get("logins_ok").points[-1] == 2 and hour.get("logins_ok").total == 2
    assert hour.get("logins_failed").points == (1,) + (0,) * 11            # 58 minutes ago: the first interval
    assert hour.get("messages").total == 1 and hour.get("alerts").points[6] == 1
    assert (hour.queue_depth, hour.active_bans, hour.open_alerts) == (0, 0, 1)
    day = ops.console.dashboard(viewer, "day", now=NOW)
    assert len(day.starts) == 24 and day.get("logins_ok").total == 3 and day.get("logins_failed").total == 2
    assert ops.console.dashboard(viewer, "week", now=NOW).window == "hour"   # an unknown window: the hour


def test_the_chart_is_svg_with_its_figures_in_words() -> None:
    starts = tuple(NOW - timedelta(minutes=60 - 5 * i) for i in range(12))
    svg = str(bar_chart("Sign-ins <failed>", (0,) * 11 + (4,), starts, timedelta(minutes=5), "fail"))
    assert svg.count("<rect") == 12 and "Sign-ins &lt;failed&gt;: 4 in all" in svg and "<failed>" not in svg
    assert "<title>11:55–12:00: 4</title>" in svg
