"""Quotas against a real server on both backends: exact at the boundary, refusals never counted."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.audit import events as ev
from tests.guard.servers import client, eventually, guarded_config, message
from tests.smtp.server_harness import RunningServer


@pytest.fixture(params=["memory", "redis"])
def quota_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else ""
    config = guarded_config(tmp_path / "data", backend=request.param, redis_prefix=prefix,
                            guard={"account_max_per_hour": "5"})
    server = RunningServer(config)
    server.start()
    yield server
    server.close()


def send(server: RunningServer, login: str, secret: str, rcpts: list[str], subject: str = "q") -> dict:
    with client(server) as smtp:
        smtp.login(login, secret)
        return smtp.sendmail(login, rcpts, message(login, subject))


def test_message_quota_is_exact_and_refused_messages_do_not_count(quota_server: RunningServer) -> None:
    login = "quota-msg@example.com"
    secret = quota_server.account_with_app_password(login, max_per_hour=3)
    with client(quota_server) as smtp:
        smtp.login(login, secret)
        # refused by the header check: not counted
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(login, ["x@example.org"], message("ceo@example.com"))
        assert refused.value.smtp_code == 550
        for n in range(3):
            assert smtp.sendmail(login, ["x@example.org"], message(login, f"m{n}")) == {}
        code, text = smtp.mail(login)
        assert (code, text[:5]) == (451, b"4.7.1")
        assert b"3 messages per hour" in text
    events = eventually(
        lambda: quota_server.runtime.audit_store.query(account=login, kind=ev.MESSAGE, limit=100),
        lambda found: len(found) >= 5,
    )
    assert sorted(e.event.reason for e in events) == ["accepted"] * 3 + ["quota", "sender-not-allowed"]
    quota = next(e for e in events if e.event.reason == "quota")
    assert quota.event.details["kind"] == "messages" and quota.event.details["limit"] == 3


def test_recipient_quota_refuses_the_recipient_past_the_limit(quota_server: RunningServer) -> None:
    login = "quota-rcpt@example.com"
    secret = quota_server.account_with_app_password(login, max_rcpt_per_hour=5)
    assert send(quota_server, login, secret, ["a@example.org", "b@example.org", "c@example.org"]) == {}
    refused = send(quota_server, login, secret, ["d@example.org", "e@example.org", "f@example.org"], "second")
    assert list(refused) == ["f@example.org"] and refused["f@example.org"][0] == 452
    assert refused["f@example.org"][1].startswith(b"4.5.3")
    (second,) = [m for m in quota_server.runtime.capture.list() if m.subject == "second"]
    assert second.rcpt_to == ("d@example.org", "e@example.org")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(quota_server, login, secret, ["g@example.org"])
    assert info.value.recipients["g@example.org"][0] == 452


def test_account_quota_spans_its_credentials(quota_server: RunningServer) -> None:
    login = "quota-acct@example.com"
    first = quota_server.account_with_app_password(login)
    second = quota_server.account_with_app_password(login)
    for n in range(5):
        assert send(quota_server, login, first if n % 2 else second, ["x@example.org"]) == {}
    with client(quota_server) as smtp:
        smtp.login(login, first)
        code, text = smtp.mail(login)
    assert code == 451 and b"of this account" in text


def test_the_account_limit_counts_each_account_on_its_own(quota_server: RunningServer) -> None:
    login = "quota-free@example.com"
    secret = quota_server.account_with_app_password(login)
    for _ in range(5):
        send(quota_server, login, secret, ["x@example.org"])
    other = quota_server.account_with_app_password("quota-other@example.com")
    assert send(quota_server, "quota-other@example.com", other, ["x@example.org"]) == {}
