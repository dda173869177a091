"""The NOTIFY channel's logic without a server: payloads, and when a cache may be trusted."""

from __future__ import annotations

import pytest

from smtpgate.credentials.cluster_channel import NotifyChannel, decode, encode
from smtpgate.credentials.invalidation import EVERYTHING, Change
from smtpgate.store import open_store
from smtpgate.store.db import StoreUnavailable
from smtpgate.store.notify import Notifier


@pytest.mark.parametrize("change", [Change(account_id=7), Change(credential_id="ap_1f"),
                                    Change(account_id=7, credential_id="ap_1f"), EVERYTHING])
def test_payloads_round_trip(change: Change) -> None:
    assert decode(encode(change)) == change


@pytest.mark.parametrize("payload", ["x:1", "a:seven", "a:1 zzz", "c:"])
def test_an_odd_payload_forgets_everything(payload: str) -> None:
    assert decode(payload) == EVERYTHING


class FakeListener:
    def __init__(self) -> None:
        self.up = True
        self.alive_at = 0.0

    def subscribe(self, topic: str, callback: object) -> None:
        del topic, callback

    def on_state(self, callback: object) -> None:
        del callback


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trust_while_listening_then_a_bounded_lifetime_once_nothing_answers() -> None:
    store = open_store("postgresql+psycopg://postgres@127.0.0.1:1/none", upgrade=False)  # never answers
    listener, clock = FakeListener(), Clock()
    channel = NotifyChannel(store, Notifier(store), listener, fallback_ttl=2.0, clock=clock)  # type: ignore[arg-type]
    channel.check()  # listening: no query at all (the database is not even reachable)
    listener.up, listener.alive_at = False, 100.5
    clock.now = 102.0
    channel.check()  # down, database down too: within 2 s of the last answer
    clock.now = 102.6
    with pytest.raises(StoreUnavailable):
        channel.check()
    store.dispose()
