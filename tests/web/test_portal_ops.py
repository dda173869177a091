"""The console's operations in-process: sign-in counted and banned by the guard like SMTP
AUTH (same allow-list), every attempt audited, the owner's reach limited to their account,
and turning the last factor off asking for a code and alerting the owner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from smtpgate.config import load_config
from smtpgate.errors import OpError
from smtpgate.ops import Actor, Operations
from smtpgate.ops.portal import SourceBanned
from smtpgate.runtime import Runtime
from tests.smtp.server_harness import PASSWORD, init_data_dir

ATTACKER = "203.0.113.7"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operations]:
    config_path = init_data_dir(tmp_path_factory.mktemp("portal") / "data")
    lines = config_path.read_text().replace('backend = "shared"', 'backend = "memory"').splitlines()
    config_path.write_text("\n".join("ip_failures = 3" if line.startswith("ip_failures ") else line for line in lines) + "\n")
    runtime = Runtime(load_config(Path(config_path)))
    runtime.audit.start()
    yield Operations(runtime)
    runtime.close()


def sign_in(ops: Operations, login: str, password: str, ip: str):  # noqa: ANN201 - SignedIn
    return asyncio.run(ops.portal.sign_in(login, password, ip=ip))


def auth_events(ops: Operations, login: str) -> list[tuple[str, str, str, str]]:
    ops.runtime.audit.flush(5)
    return [(s.event.result, s.event.reason, s.event.remote_ip, s.event.mechanism)
            for s in ops.runtime.audit_store.query(account=login, kind="auth") if s.event.listener == "web"]


def test_sign_in_failures_ban_the_source_like_smtp_auth(ops: Operations) -> None:
    login = "guarded@example.com"
    ops.runtime.credentials.create_account(login, password=PASSWORD)
    for _ in range(3):
        with pytest.raises(OpError) as wrong:
            sign_in(ops, login, "not-the-password", ATTACKER)
        assert wrong.value.code == "sign-in-failed"
    with pytest.raises(SourceBanned):  # even with the right password, from a banned source
        sign_in(ops, login, PASSWORD, ATTACKER)
    for _ in range(4):  # the guard's allow-list (loopback) is the same as for SMTP: never banned
        with pytest.raises(OpError):
            sign_in(ops, login, "not-the-password", "127.0.0.1")
    assert sign_in(ops, login, PASSWORD, "127.0.0.1").complete
    events = auth_events(ops, login)
    assert events.count(("fail", "bad-secret", ATTACKER, "password")) == 3
    assert ("fail", "banned", ATTACKER, "password") in events
    assert ("ok", "", "127.0.0.1", "password") in events


def test_an_owner_reaches_only_their_own_credentials(ops: Operations) -> None:
    ops.runtime.credentials.create_account("mine@example.com", password=PASSWORD)
    ops.runtime.credentials.create_account("theirs@example.com", password=PASSWORD)
    theirs = ops.runtime.credentials.create_app_password("theirs@example.com", "phone").credential.id
    me = Actor.owner("mine@example.com", "127.0.0.1")
    with pytest.raises(OpError) as refused:
        ops.portal.revoke_app(me, theirs)
    assert refused.value.code == "credential-not-found"
    assert ops.runtime.credentials.get_credential(theirs).revoked_at is None
    assert [c.account for c in ops.portal.apps(me)] == ["mine@example.com"]
    with pytest.raises(OpError):  # an operator's actor is not an owner
        ops.portal.apps(Actor.local())


def test_the_last_factor_off_needs_password_and_code_and_alerts_the_owner(ops: Operations) -> None:
    login = "leaving@example.com"
    ops.runtime.credentials.create_account(login, password=PASSWORD)
    me = Actor.owner(login, "127.0.0.1")
    enrolment = ops.portal.totp_begin(me)
    totp = pyotp.TOTP(enrolment.secret)
    factor = ops.portal.totp_confirm(me, enrolment.factor_id, totp.now()).factor
    half = sign_in(ops, login, PASSWORD, "127.0.0.1")
    assert not half.complete
    with pytest.raises(OpError) as wrong:
        ops.portal.remove_factor(me, factor.id, password="wrong", code=totp.now())
    assert wrong.value.code == "wrong-password"
    with pytest.raises(OpError) as wrong:
        ops.portal.remove_factor(me, factor.id, password=PASSWORD, code="000000" if totp.now() != "000000" else "111111")
    assert wrong.value.code == "wrong-code"
    assert ops.portal.security(me).on
    import time

    assert ops.portal.remove_factor(me, factor.id, password=PASSWORD, code=totp.at(time.time() + 30)) == 0
    assert not ops.portal.security(me).on
    alerts = ops.portal.alerts(me)
    assert [a.rule for a in alerts] == ["two-factor-off"] and login in alerts[0].summary
    trail = [(e.action, e.outcome, e.face) for e in ops.journal.query(actor=f"owner:{login}")]
    assert ("second-factor.remove", "ok", "web") in trail and ("second-factor.add", "ok", "web") in trail


def test_the_session_cookie_is_secure_over_https(ops: Operations) -> None:
    import re

    from fastapi.testclient import TestClient

    from smtpgate.admin.app import create_app

    login = "https@example.com"
    ops.runtime.credentials.create_account(login, password=PASSWORD)
    with TestClient(create_app(ops.runtime), base_url="https://localhost") as client:
        form = client.get("/signin")
        assert "Secure" in form.headers["set-cookie"]  # the form's own cookie too
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
        signed = client.post("/signin", data={"login": login, "password": PASSWORD, "csrf": csrf}, follow_redirects=False)
        assert signed.status_code == 303 and signed.headers["location"] == "/apps"
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith("sg_session=") and "Secure" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert signed.headers["x-frame-options"] == "DENY"


def test_changing_the_password_needs_the_current_one_and_signs_every_browser_out(ops: Operations) -> None:
    login = "changer@example.com"
    ops.runtime.credentials.create_account(login, password=PASSWORD)
    browsers = [sign_in(ops, login, PASSWORD, "127.0.0.1").token for _ in range(2)]
    me = Actor.owner(login, "127.0.0.1")
    with pytest.raises(OpError) as wrong:
        ops.portal.change_password(me, "not-it", "quartz-tulip-anvil-orbit-73")
    assert wrong.value.code == "wrong-password"
    with pytest.raises(OpError) as weak:
        ops.portal.change_password(me, PASSWORD, "password1")
    assert weak.value.code == "weak-password" and "most common passwords" in str(weak.value)
    assert all(ops.portal.session(t) is not None for t in browsers)
    ops.portal.change_password(me, PASSWORD, "quartz-tulip-anvil-orbit-73")
    assert all(ops.portal.session(t) is None for t in browsers)
    assert sign_in(ops, login, "quartz-tulip-anvil-orbit-73", "127.0.0.1").complete
