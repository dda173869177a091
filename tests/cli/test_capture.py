"""`capture delete` and `capture purge`, through the real entry point, on captured mail."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from smtpgate.delivery.capture import CaptureStore, Envelope
from tests.cli.conftest import Cli


def capture(cli: Cli, days_ago: float, subject: str) -> str:
    store = CaptureStore(cli.config.parent / "capture")
    received = datetime.now(timezone.utc) - timedelta(days=days_ago)
    with store.begin(Envelope("a@example.com", ("b@example.org",), None, None, "192.0.2.1", "client.test", received)) as writer:
        writer.write(f"Subject: {subject}\r\n\r\nhi\r\n".encode())
        return writer.commit().id


def ids(cli: Cli) -> set[str]:
    return {m["id"] for m in cli.ok("capture", "list", "--json").json()}


def test_delete_by_id(cli: Cli) -> None:
    first, second = capture(cli, 0, "one"), capture(cli, 0, "two")
    cli.ok("capture", "delete", first)
    assert ids(cli) == {second}
    missing = cli("capture", "delete", first)
    assert missing.code == 1 and f"no captured message {first}" in missing.stderr


def test_purge_older_than_or_all(cli: Cli) -> None:
    old, recent = capture(cli, 10, "old"), capture(cli, 1, "recent")
    purged = cli.ok("capture", "purge", "--older-than", "7d", "--json").json()
    assert purged == {"deleted": [old]} and ids(cli) == {recent}
    assert "Deleted 1 captured message" in cli.ok("capture", "purge", "--all").stdout
    assert ids(cli) == set()
    assert cli("capture", "purge").code == 2  # which ones must be said
    assert cli("capture", "purge", "--all", "--older-than", "1d").code == 2
    assert cli("capture", "purge", "--older-than", "soon").code == 2
