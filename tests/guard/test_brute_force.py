"""Brute force on loopback against a real server, on both backends: the attacker is banned,
the owner of the attacked account keeps sending.

127.0.0.2 and up are other sources than 127.0.0.1 (Linux routes all of 127/8 to lo), so the
legitimate client and the attackers differ only by source address, as on the Internet.
The figures of each run are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.audit import events as ev
from tests.guard.servers import client, eventually, guarded_config, message, one_auth_try
from tests.smtp.server_harness import RunningServer

ACCOUNT = "alice@example.com"


@pytest.fixture(params=["memory", "redis"])
def guarded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else ""
    config = guarded_config(
        tmp_path / "data", backend=request.param, redis_prefix=prefix,
        guard={"ip_failures": "10", "network_failures": "25", "login_failures": "20", "ban_for": '"15m"',
               "protected_delay": '"100ms"'},
    )
    server = RunningServer(config)
    server.start()
    yield server
    server.close()


def attempt(server: RunningServer, source: str, secret: str = "sgp_wrong-guess") -> str:
    """One attacker try: connect, STARTTLS, AUTH. What the server answered, in short."""
    return one_auth_try(lambda: client(server, source), ACCOUNT, secret, helo="attacker.test")


def send_legit(server: RunningServer, secret: str, n: int) -> None:
    with client(server, "127.0.0.1") as smtp:
        smtp.login(ACCOUNT, secret)
        assert smtp.sendmail(ACCOUNT, ["bob@example.org"], message(ACCOUNT, f"legit {n}")) == {}


def delivered(server: RunningServer) -> int:
    return sum(1 for m in server.runtime.capture.list() if m.subject.startswith("legit"))


def test_sixty_attempts_ban_the_attacker_and_the_owner_keeps_sending(guarded: RunningServer) -> None:
    secret = guarded.account_with_app_password(ACCOUNT)
    send_legit(guarded, secret, 0)  # the owner's usual source: known-good from now on
    answers: Counter[str] = Counter()
    legit = 1
    for n in range(1, 61):
        answers[attempt(guarded, "127.0.0.2")] += 1
        if n % 5 == 0:
            send_legit(guarded, secret, n)
            legit += 1
    # even the right secret does not get the banned source in
    answers_with_secret = attempt(guarded, "127.0.0.2", secret)
    bans = guarded.runtime.guard.recorded_bans()
    figures = {
        "backend": guarded.config.guard.backend, "attempts": 60, "auth_failures_535": answers["535"],
        "refused_at_connect_421": answers["421 at connect"], "bans": [b.network for b in bans],
        "legit_sent": legit, "legit_delivered": delivered(guarded),
    }
    print("BRUTE-FORCE FIGURES (single source):", json.dumps(figures))
    assert answers == {"535": 10, "421 at connect": 50}
    assert answers_with_secret == "421 at connect"
    assert [b.network for b in bans] == ["127.0.0.2/32"]
    assert legit == 13 and delivered(guarded) == 13
    assert secret not in guarded.log()
    # 51 refusals at connect, audited once (a reconnecting attacker cannot flood the audit)
    eventually(lambda: guarded.runtime.audit_store.query(kind=ev.MESSAGE), lambda found: len(found) >= 13)
    refusals = guarded.runtime.audit_store.query(kind=ev.CONNECT)  # written before the last messages
    assert [(e.event.remote_ip, e.event.reason) for e in refusals] == [("127.0.0.2", "banned")]


def test_a_distributed_attack_protects_the_login_and_spares_its_known_network(guarded: RunningServer) -> None:
    secret = guarded.account_with_app_password(ACCOUNT)
    send_legit(guarded, secret, 0)
    answers: Counter[str] = Counter()
    legit = 1
    sources = [f"127.0.0.{i}" for i in range(10, 18)]
    for round_ in range(5):
        for source in sources:
            answers[attempt(guarded, source)] += 1
        send_legit(guarded, secret, round_ + 1)  # the owner, from 127.0.0.1, all along
        legit += 1
    # a fresh attacker address in the banned /24 is refused at connect; the owner is not
    fresh = attempt(guarded, "127.0.0.99")
    send_legit(guarded, secret, 99)
    legit += 1
    events = eventually(  # the server writes its audit in the background
        lambda: guarded.runtime.audit_store.query(account=ACCOUNT, kind=ev.AUTH, result=ev.FAIL, limit=1000),
        lambda found: len(found) >= 25,
    )
    reasons = Counter(e.event.reason for e in events)
    bans = sorted(b.network for b in guarded.runtime.guard.recorded_bans())
    figures = {
        "backend": guarded.config.guard.backend, "attempts": 41, "sources": len(sources) + 1,
        "answers": dict(answers), "fresh_source": fresh, "bans": bans, "audit_reasons": dict(reasons),
        "legit_sent": legit, "legit_delivered": delivered(guarded),
    }
    print("BRUTE-FORCE FIGURES (distributed):", json.dumps(figures))
    assert bans == ["127.0.0.0/24"]  # no address reached 10 failures; the network reached 25
    assert fresh == "421 at connect"
    assert answers["535"] == 25 and answers["421 at connect"] == 15
    # failures 21 to 25 came while the login was protected; the guesses have the app-password
    # shape (sgp_...), which cannot be guessed, so they were checked at once, never held or refused
    assert reasons["bad-secret"] == 25 and not any(e.event.details.get("held") for e in events)
    assert legit == 7 and delivered(guarded) == 7


def test_the_owner_of_an_attacked_login_gets_in_from_a_new_place(guarded: RunningServer) -> None:
    """Protection is no lockout lever: after 20 failures from 20 sources, the right app password
    from a never-seen address gets in at once, and the right account password too (held first)."""
    from tests.smtp.server_harness import PASSWORD

    secret = guarded.account_with_app_password(ACCOUNT)  # the account password is PASSWORD
    for i in range(20):
        assert attempt(guarded, f"127.0.{2 + i}.9") == "535"  # 20 /24s: no network reaches its threshold
    assert attempt(guarded, "127.0.200.1", secret) == "235"
    assert attempt(guarded, "127.0.201.1", PASSWORD) == "235"
    events = eventually(
        lambda: guarded.runtime.audit_store.query(account=ACCOUNT, kind=ev.AUTH, result=ev.OK, limit=100),
        lambda found: len(found) >= 2,
    )
    held = {e.event.remote_ip: e.event.details.get("held") for e in events}
    assert held["127.0.200.1"] is None and held["127.0.201.1"] >= 0.1  # only the guessable secret waited
