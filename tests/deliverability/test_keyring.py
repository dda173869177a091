"""DKIM keys as data: states, the switch only once the record is visible, retirement, live reload."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from smtpgate.delivery.dkim import DkimError
from smtpgate.delivery.keyring import Keyring, KeyringSigner

MESSAGE = b"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_a_key_signs_only_once_visible_and_the_old_one_retires_later(tmp_path: Path) -> None:
    clock = Clock()
    ring = Keyring(tmp_path / "dkim", clock=clock).with_retire_after(timedelta(days=2))
    signer = KeyringSigner(ring)
    first = ring.add("example.com", algorithm="ed25519")
    assert first.selector == "sg20261201" and first.state == "pending"
    assert (tmp_path / "dkim" / first.file).stat().st_mode & 0o777 == 0o600
    assert signer.sign(MESSAGE) == MESSAGE                       # pending: not signing
    assert ring.advance("example.com", lambda n, v: False) == [f"waiting for {first.dns_name} to be visible in DNS"]
    ring.advance("example.com", lambda n, v: n == first.dns_name)
    assert b"s=sg20261201" in signer.sign(MESSAGE)                # picked up without a restart
    second = ring.add("example.com", algorithm="ed25519")
    assert second.selector == "sg20261201b"
    ring.advance("example.com", lambda n, v: n == first.dns_name)  # the new one not visible yet
    assert b"s=sg20261201;" in signer.sign(MESSAGE)
    changes = ring.advance("example.com", lambda n, v: True)
    assert any("sg20261201 stops signing" in c for c in changes)
    assert b"s=sg20261201b" in signer.sign(MESSAGE)
    states = {e.selector: e.state for e in ring.entries()}
    assert states == {"sg20261201": "retiring", "sg20261201b": "active"}
    assert [e.selector for e, _, _ in ring.published("example.com")] == ["sg20261201", "sg20261201b"]
    clock.now += timedelta(days=3)
    changes = ring.advance("example.com", lambda n, v: True)
    assert changes == [f"retired sg20261201: remove the TXT record {first.dns_name}"]
    assert not (tmp_path / "dkim" / first.file).exists()
    assert [e.selector for e, _, _ in ring.published("example.com")] == ["sg20261201b"]


def test_selectors_are_never_reused_and_domains_are_checked(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "dkim")
    ring.add("example.com", selector="s1", algorithm="ed25519")
    with pytest.raises(DkimError, match="selector 's1' already"):
        ring.add("example.com", selector="s1", algorithm="ed25519")
    with pytest.raises(DkimError, match="not a domain name"):
        ring.add("not a domain", algorithm="ed25519")
