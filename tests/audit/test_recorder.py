"""The audit writer and the anomaly rules over a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from smtpgate.audit import (
    AlertDispatcher,
    AlertSettings,
    AnomalyDetector,
    AuditEvent,
    AuditRecorder,
    AuditStore,
)
from smtpgate.audit import events as ev
from smtpgate.credentials import FailureReason


def classify(ip: str) -> tuple[str, str]:
    """/24 networks, the address as the source (what the guard does for IPv4)."""
    return ip.rsplit(".", 1)[0] + ".0/24", ip


def recorder_for(store, settings: AlertSettings | None = None, **kwargs) -> tuple[AuditRecorder, AuditStore]:
    audit = AuditStore(store)
    recorder = AuditRecorder(
        audit, classify, detector=AnomalyDetector(audit, settings or AlertSettings()), dispatcher=AlertDispatcher(audit),
        flush_interval=0.02, **kwargs,
    )
    recorder.start()
    return recorder, audit


def ok(ip: str, credential: str = "ap_1", login: str = "alice@example.com") -> AuditEvent:
    return AuditEvent(ev.AUTH, ev.OK, listener="submission", remote_ip=ip, login=login, credential_id=credential)


def test_events_are_written_in_batches_and_logged_as_json_lines(store, caplog: pytest.LogCaptureFixture) -> None:
    recorder, audit = recorder_for(store)
    with caplog.at_level(logging.INFO, logger="smtpgate.audit"):
        for i in range(1200):
            recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.BAD_SECRET, remote_ip="192.0.2.1", login=f"u{i}@example.com"))
        assert recorder.flush()
    recorder.close()
    assert len(audit.query(limit=5000)) == 1200 and recorder.dropped == 0
    lines = [line for r in caplog.records if r.name == "smtpgate.audit" for line in r.getMessage().split("\n")]
    assert len(lines) == 1200
    first = json.loads(lines[0])
    assert first["event"] == "auth" and first["reason"] == "bad-secret" and first["login"] == "u0@example.com"


def test_the_writer_prunes_past_the_retention(store) -> None:
    audit = AuditStore(store)
    old = datetime.now(UTC) - timedelta(days=91)
    audit.insert([(AuditEvent(ev.AUTH, ev.OK, time=old), "", ""), (AuditEvent(ev.AUTH, ev.OK), "", "")])
    recorder = AuditRecorder(audit, classify, retention=timedelta(days=90))
    recorder.start()
    recorder.record(AuditEvent(ev.AUTH, ev.OK))
    assert recorder.flush()
    recorder.close()
    assert all(e.event.time > old for e in audit.query()) and len(audit.query()) == 2


def test_new_network_alert_spares_the_first_use_and_fires_once(store) -> None:
    recorder, audit = recorder_for(store)
    for ip in ("192.0.2.1", "192.0.2.77", "198.51.100.5", "198.51.100.6", "192.0.2.1"):
        recorder.record(ok(ip))
    assert recorder.flush()
    recorder.close()
    (alert,) = audit.alerts()
    assert alert.rule == "new-network" and alert.credential_id == "ap_1" and alert.remote_ip == "198.51.100.5"
    assert alert.details["network"] == "198.51.100.0/24" and alert.details["known_networks"] == ["192.0.2.0/24"]


def test_two_workers_raise_a_new_network_alert_once(store) -> None:
    first, audit = recorder_for(store)
    second, _ = recorder_for(store)
    first.record(ok("192.0.2.1"))
    assert first.flush()
    second.record(ok("192.0.2.1"))  # the second worker learns the credential
    assert second.flush()
    first.record(ok("203.0.113.1"))
    assert first.flush()
    second.record(ok("203.0.113.2"))  # its cache is stale; the database says the network is known
    assert second.flush()
    first.close()
    second.close()
    assert [a.rule for a in audit.alerts()] == ["new-network"]


def test_leaked_secret_and_out_of_scope_and_bursts_raise_alerts(store) -> None:
    recorder, audit = recorder_for(store, AlertSettings(failure_burst=5))
    recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.REVOKED, remote_ip="203.0.113.9", login="a@example.com", credential_id="ap_old"))
    recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.REVOKED, remote_ip="203.0.113.9", login="a@example.com", credential_id="ap_old"))
    recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.EXPIRED, remote_ip="203.0.113.9", login="a@example.com", credential_id="ap_exp"))
    recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.IP_NOT_ALLOWED, remote_ip="203.0.113.9", login="a@example.com", credential_id="ap_2"))
    recorder.record(AuditEvent(ev.MESSAGE, ev.FAIL, ev.SENDER_NOT_ALLOWED, remote_ip="192.0.2.1", login="a@example.com",
                               credential_id="ap_2", details={"where": "mail-from", "address": "ceo@example.com"}))
    for n in (4, 5, 6):
        recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.BAD_SECRET, remote_ip="203.0.113.9", login="b@example.com",
                                   details={"login_failures": n}))
    assert recorder.flush()
    recorder.close()
    rules = sorted((a.rule, a.severity) for a in audit.alerts())
    assert rules == [
        ("expired-credential", "critical"), ("failure-burst", "warning"), ("out-of-scope", "warning"),
        ("out-of-scope", "warning"), ("revoked-credential", "critical"),
    ]
    sender = next(a for a in audit.alerts() if a.rule == "out-of-scope" and "ceo@" in a.summary)
    assert sender.details["where"] == "mail-from"


def test_volume_far_above_the_baseline_raises_one_alert(store) -> None:
    settings = AlertSettings(volume_factor=10, volume_min_messages=5, recheck_after=0)
    recorder, audit = recorder_for(store, settings)
    now = datetime.now(UTC)
    # a steady credential: 2 messages an hour over the last 24 hours
    audit.insert([
        (AuditEvent(ev.MESSAGE, ev.OK, ev.ACCEPTED, credential_id="ap_steady", time=now - timedelta(hours=h, minutes=m)), "", "")
        for h in range(2, 26) for m in (0, 30)
    ])
    for _ in range(19):
        recorder.record(AuditEvent(ev.MESSAGE, ev.OK, ev.ACCEPTED, credential_id="ap_steady", login="s@example.com"))
    for _ in range(6):
        recorder.record(AuditEvent(ev.MESSAGE, ev.OK, ev.ACCEPTED, credential_id="ap_new", login="n@example.com"))
    assert recorder.flush()
    assert [a.credential_id for a in audit.alerts()] == ["ap_new"]  # 19 < 10 x 2/h: not yet for the steady one
    recorder.record(AuditEvent(ev.MESSAGE, ev.OK, ev.ACCEPTED, credential_id="ap_steady", login="s@example.com"))
    assert recorder.flush()  # the 20th message of the hour: 10 x its baseline
    recorder.record(AuditEvent(ev.MESSAGE, ev.OK, ev.ACCEPTED, credential_id="ap_steady", login="s@example.com"))
    assert recorder.flush()
    recorder.close()
    steady = [a for a in audit.alerts() if a.credential_id == "ap_steady"]
    assert len(steady) == 1 and steady[0].rule == "volume"
    assert steady[0].details["last_hour"] == 20 and steady[0].details["baseline_per_hour"] == pytest.approx(2, rel=0.1)


def test_a_password_spray_found_by_the_guard_raises_one_critical_alert(store) -> None:
    recorder, audit = recorder_for(store)
    for i, spray in enumerate((True, True, False)):  # two workers saw it start: one alert
        recorder.record(AuditEvent(ev.AUTH, ev.FAIL, FailureReason.BAD_SECRET, remote_ip=f"203.0.113.{i}", login=f"u{i}@example.com",
                                   details={"spray": True} if spray else {}))
    assert recorder.flush()
    recorder.close()
    (alert,) = audit.alerts()
    assert (alert.rule, alert.severity) == ("password-spray", "critical") and "many logins" in alert.summary
