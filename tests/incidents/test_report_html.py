"""The HTML report: one self-contained file, every value escaped (they came from the network)."""

from __future__ import annotations

from datetime import UTC, datetime

from smtpgate.ops.incidents import Incident, Report, TimelineEntry

T = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
EVIL = '<script>alert("x")</script>'


def test_values_are_escaped_and_nothing_is_fetched() -> None:
    incident = Incident(7, T, "api:oncall", "account", "eve@example.com", "eve@example.com", f"reason {EVIL}", T, "open",
                        {"revoked": [{"id": "ap_1", "kind": "app-password", "name": EVIL, "already": False}],
                         "held": ["m1"], "left": ["m0"], "banned": [{"network": "192.0.2.9/32", "until": "2026-12-08T09:30:00Z"}],
                         "spared": [], "password_reset": True, "alert_id": 3, "problems": []})
    timeline = [TimelineEntry(T, "message", "192.0.2.9", "ap_1", "accepted", 2, ("victim.example", EVIL), "m1", "held")]
    page = Report(incident, timeline).to_html()
    assert EVIL not in page and "&lt;script&gt;" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "default-src 'none'" in page and "192.0.2.9/32" in page and "m0" in page
    assert "unusable until its owner sets a new one" in page
