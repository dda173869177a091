"""Audit events in the database (SQLite and PostgreSQL): written, filtered, pruned, asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smtpgate.audit import AuditEvent, AuditStore
from smtpgate.audit import events as ev
from smtpgate.credentials import FailureReason
from smtpgate.audit.store import Alert

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def auth(result: str, *, login: str = "alice@example.com", ip: str = "192.0.2.1", credential: str | None = "ap_1",
         reason: str = "", minutes: float = 0) -> AuditEvent:
    return AuditEvent(kind=ev.AUTH, result=result, reason=reason, listener="submission", remote_ip=ip,
                      tls="TLSv1.3", mechanism="PLAIN", login=login, credential_id=credential,
                      time=T0 + timedelta(minutes=minutes))


def test_insert_and_query_with_filters(store) -> None:
    audit = AuditStore(store)
    ids = audit.insert([
        (auth(ev.OK, login="Alice@Example.com"), "192.0.2.0/24", "192.0.2.1"),
        (auth(ev.FAIL, reason=FailureReason.BAD_SECRET, credential=None, minutes=1), "192.0.2.0/24", "192.0.2.1"),
        (auth(ev.FAIL, login="bob@example.com", reason=FailureReason.UNKNOWN_LOGIN, credential=None, minutes=2), "198.51.100.0/24", "198.51.100.7"),
        (AuditEvent(kind=ev.MESSAGE, result=ev.OK, reason=ev.ACCEPTED, login="alice@example.com", credential_id="ap_1",
                    details={"rcpts": 2}, time=T0 + timedelta(minutes=3)), "192.0.2.0/24", "192.0.2.1"),
    ])
    assert ids == sorted(ids) and len(ids) == 4
    everything = audit.query()
    assert [e.id for e in everything] == ids[::-1]  # newest first
    first = everything[-1]
    assert first.event.login == "Alice@Example.com"  # the login as given
    assert (first.event.tls, first.event.mechanism, first.network) == ("TLSv1.3", "PLAIN", "192.0.2.0/24")
    assert [e.id for e in audit.query(account="alice@example.com")] == [ids[3], ids[1], ids[0]]
    assert [e.id for e in audit.query(result=ev.FAIL)] == [ids[2], ids[1]]
    assert [e.id for e in audit.query(credential_id="ap_1", kind=ev.MESSAGE)] == [ids[3]]
    assert audit.query(kind=ev.MESSAGE)[0].event.details == {"rcpts": 2}
    assert [e.id for e in audit.query(since=T0 + timedelta(minutes=2))] == [ids[3], ids[2]]
    assert len(audit.query(limit=1)) == 1


def test_known_good_and_credential_networks(store) -> None:
    audit = AuditStore(store)
    ids = audit.insert([
        (auth(ev.OK), "192.0.2.0/24", "192.0.2.1"),
        (auth(ev.FAIL, ip="203.0.113.9", reason=FailureReason.BAD_SECRET), "203.0.113.0/24", "203.0.113.9"),
        (auth(ev.OK, ip="198.51.100.4", minutes=5), "198.51.100.0/24", "198.51.100.4"),
    ])
    since = T0 - timedelta(days=30)
    assert audit.known_good("alice@example.com", "192.0.2.1", since)
    assert audit.known_good("ALICE@example.com", "192.0.2.1", since)
    assert audit.known_good(None, "192.0.2.1", since)
    assert not audit.known_good("bob@example.com", "192.0.2.1", since)
    assert not audit.known_good(None, "203.0.113.9", since)  # failed there: not good
    assert not audit.known_good(None, "192.0.2.1", T0 + timedelta(minutes=1))  # too long ago
    assert audit.credential_networks("ap_1", ids[2]) == {"192.0.2.0/24"}
    assert audit.credential_networks("ap_1", ids[2] + 1) == {"192.0.2.0/24", "198.51.100.0/24"}
    assert audit.usage("ap_1")[1:] == ("198.51.100.4", 2)


def test_prune_removes_old_events_and_alerts(store) -> None:
    audit = AuditStore(store)
    audit.insert([(auth(ev.OK, minutes=-60 * 24 * 100), "n", "s"), (auth(ev.OK), "n", "s")])
    old = Alert("volume", "critical", "old", "k-old", T0 - timedelta(days=100))
    new = Alert("volume", "critical", "new", "k-new", T0)
    assert audit.add_alert(old, webhook="off", email="off") is not None
    assert audit.add_alert(new, webhook="off", email="off") is not None
    assert audit.prune(T0 - timedelta(days=90)) == 1
    assert len(audit.query()) == 1
    assert [a.summary for a in audit.alerts()] == ["new"]


def test_an_alert_is_stored_once_per_dedupe_key(store) -> None:
    audit = AuditStore(store)
    alert = Alert("new-network", "warning", "s", "new-network:ap_1:10.0.0.0/24", T0, login="a@example.com")
    stored = audit.add_alert(alert, webhook="pending", email="off")
    assert stored is not None and stored.id is not None
    assert audit.add_alert(alert, webhook="pending", email="off") is None  # another worker's copy
    audit.set_delivery(stored.id, webhook="sent")
    (row,) = audit.alerts()
    assert (row.webhook, row.email, row.login) == ("sent", "off", "a@example.com")
