"""A leaked app password contained in one step, through the CLI and through the API, with a
server running: the attacker's source sends with it, the incident revokes it, holds its
queued mail (relayed to a sink, so held mail is mail that does not leave), bans the
attacker but not the owner's office, alerts the webhook, and the report lists it all."""

from __future__ import annotations

import asyncio
import hashlib
import json
import smtplib
from pathlib import Path

import pytest

from smtpgate.ops import Actor, Operations
from smtpgate.ops.journal import Journal
from tests.delivery.harness import wait_until
from tests.guard.servers import client, eventually
from tests.incidents.conftest import KEY_ID, Gate
from tests.smtp.server_harness import PASSWORD

ATTACKER_CLI, ATTACKER_API = "127.0.0.9", "127.0.0.10"


def _audited(gate: Gate, credential_id: str, message_ids: list[str]) -> None:
    """The audit writer logs in batches: wait until it holds these messages."""
    eventually(lambda: {str(e.event.details.get("id")) for e in
                        gate.server.runtime.audit_store.query(credential_id=credential_id, kind="message")},
               lambda found: set(message_ids) <= found)


def _alert(gate: Gate, rule: str, credential_id: str) -> dict:
    wait_until(lambda: any(a["rule"] == rule and a["credential_id"] == credential_id for a in list(gate.receiver.delivered)),
               timeout=20, what=f"the {rule} alert at the webhook")
    return next(a for a in gate.receiver.delivered if a["rule"] == rule and a["credential_id"] == credential_id)


def test_incident_open_on_the_cli_contains_a_leaked_app_password(gate: Gate, tmp_path: Path) -> None:
    login = "dana@example.com"
    creds = gate.server.credentials
    creds.create_account(login, password=PASSWORD, owner="it@example.org")
    leaked = creds.create_app_password(login, "build-server")
    laptop = creds.create_app_password(login, "laptop")
    nightly = gate.send("127.0.0.1", login, leaked.secret, ["ops@example.org"], "owner nightly")  # the owner's own use
    gate.send("127.0.0.1", login, laptop.secret, ["ops@example.org"], "laptop before")
    spam = gate.send(ATTACKER_CLI, login, leaked.secret, ["a@victim.example", "b@victim.example", "c@other.example"], "spam 1")
    _audited(gate, leaked.credential.id, [nightly, spam])
    _audited(gate, laptop.credential.id, [])
    eventually(lambda: gate.server.runtime.audit_store.login_sources(login, leaked.credential.created_at,
                                                                     excluding=[leaked.credential.id]),
               lambda found: "127.0.0.1" in found)

    opened = gate.cli.ok("incident", "open", "--credential", leaked.credential.id, "--reason", "found in a public gist",
                         "--json").json()

    assert opened["revoked"] == [{"id": leaked.credential.id, "kind": "app-password", "name": "build-server", "already": False}]
    assert sorted(opened["held"]) == sorted([nightly, spam]) and opened["left"] == []
    assert [b["network"] for b in opened["banned"]] == [f"{ATTACKER_CLI}/32"]
    assert [s["source"] for s in opened["spared"]] == ["127.0.0.1"]  # the office: the laptop works from there
    assert opened["alert_id"] is not None and opened["problems"] == []
    # the attacker's next try is refused, and soon the source is turned away at connect
    assert gate.login_refused(ATTACKER_CLI, login, leaked.secret)
    assert eventually(lambda: gate.login_refused(ATTACKER_CLI, login, laptop.secret), bool)
    # the owner's other credential and network are unaffected; the relay takes mail again
    gate.deferring["on"] = False
    gate.send("127.0.0.1", login, laptop.secret, ["ops@example.org"], "laptop after")
    wait_until(lambda: gate.delivered("laptop after") and gate.delivered("laptop before"), what="the owner's mail")
    assert not gate.delivered("spam 1") and not gate.delivered("owner nightly")
    rules = gate.server.runtime.queue.hold_rules()
    held = {e.message.id: e.held_by(rules) for e in gate.server.runtime.queue.entries()}
    assert held.get(spam) is True and held.get(nightly) is True
    alert = _alert(gate, "incident", leaked.credential.id)
    assert alert["severity"] == "critical" and alert["details"]["banned"] == [f"{ATTACKER_CLI}/32"]
    assert leaked.secret not in json.dumps(list(gate.receiver.delivered))

    html = tmp_path / "incident.html"
    report = gate.cli.ok("incident", "show", str(opened["id"]), "--json", "--html", str(html)).json()
    timeline = report["timeline"]
    assert any(e["what"] == "login" and e["remote_ip"] == ATTACKER_CLI for e in timeline)
    (entry,) = [e for e in timeline if e["message_id"] == spam]
    assert (entry["remote_ip"], entry["recipients"], entry["domains"], entry["fate"]) == (
        ATTACKER_CLI, 3, ["other.example", "victim.example"], "held")
    page = html.read_text()
    assert spam in page and ATTACKER_CLI in page and "found in a public gist" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
    text = gate.cli.ok("incident", "show", str(opened["id"])).stdout
    assert spam in text and ATTACKER_CLI in text and "victim.example" in text

    closed = gate.cli.ok("incident", "close", str(opened["id"]), "--delete-held", "--json").json()
    assert (closed["state"], closed["resolution"]) == ("closed", "deleted")
    assert spam not in gate.server.runtime.queue.ids() and not gate.delivered("spam 1")
    journal = Journal(gate.server.runtime.store)
    (opening,) = journal.query(action="incident.open", actor=opened["opened_by"])
    assert opening.target == f"credential:{leaked.credential.id}" and opening.details["banned"] == [f"{ATTACKER_CLI}/32"]
    assert [e.outcome for e in journal.query(action="incident.close")] == ["ok"]


def test_incident_through_the_api_reports_what_had_left_and_releases_on_close(gate: Gate) -> None:
    login = "erin@example.com"
    creds = gate.server.credentials
    creds.create_account(login, password=PASSWORD)
    leaked = creds.create_app_password(login, "crm")
    gate.deferring["on"] = False
    first = gate.send(ATTACKER_API, login, leaked.secret, ["x@victim.example"], "api first")
    wait_until(lambda: gate.delivered("api first"), what="the first message at the sink")
    wait_until(lambda: first not in gate.server.runtime.queue.ids(), what="the first message to leave the queue")
    gate.deferring["on"] = True
    second = gate.send(ATTACKER_API, login, leaked.secret, ["y@victim.example", "z@victim.example"], "api second")
    _audited(gate, leaked.credential.id, [first, second])

    with gate.api("viewer") as viewer:
        refused = viewer.post("/api/v1/incidents", json={"credential": leaked.credential.id})
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "role-insufficient"
    with gate.api("operator") as operator:
        created = operator.post("/api/v1/incidents", json={"credential": leaked.credential.id, "reason": "seen in a paste"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["held"] == [second] and body["left"] == [first]
        assert [b["network"] for b in body["banned"]] == [f"{ATTACKER_API}/32"]
        assert operator.post("/api/v1/incidents", json={}).json()["code"] == "incident-subject-required"
    assert gate.login_refused(ATTACKER_API, login, leaked.secret)
    with gate.api("viewer") as viewer:
        report = viewer.get(f"/api/v1/incidents/{body['id']}").json()
        fates = {e["message_id"]: e["fate"] for e in report["timeline"] if e["what"] == "message"}
        assert fates == {first: "left", second: "held"} and ATTACKER_API in report["sources"]
        page = viewer.get(f"/api/v1/incidents/{body['id']}", headers={"Accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html") and second in page.text
        assert body["id"] in [i["id"] for i in viewer.get("/api/v1/incidents", params={"state": "open"}).json()]
        assert viewer.post(f"/api/v1/incidents/{body['id']}/close", json={}).status_code == 403
    with gate.api("operator") as operator:
        assert operator.post(f"/api/v1/incidents/{body['id']}/close", json={"held": "delete"}).status_code == 403  # admin's
        gate.deferring["on"] = False
        closed = operator.post(f"/api/v1/incidents/{body['id']}/close", json={"held": "release"})
        assert closed.status_code == 200 and closed.json()["resolution"] == "released"
        wait_until(lambda: gate.delivered("api second"), what="the released message at the sink")
        again = operator.post(f"/api/v1/incidents/{body['id']}/close", json={})
        assert again.status_code == 409 and again.json()["code"] == "incident-closed"
        trail = operator.get("/api/v1/audit", params={"kind": "operator"}).json()
    events = trail if isinstance(trail, list) else trail.get("events", trail.get("items", []))
    assert any(e["action"] == "incident.open" and e["actor"] == "api:test-operator" for e in events)
    assert any(e["action"] == "incident.open" and e["outcome"] == "forbidden" and e["actor"] == "api:test-viewer" for e in events)


def test_an_account_incident_revokes_every_credential_and_the_password_until_reset(gate: Gate) -> None:
    login, attacker = "ivan@example.com", "127.0.0.11"
    creds = gate.server.credentials
    creds.create_account(login, password=PASSWORD)
    app = creds.create_app_password(login, "phone")
    sent = gate.send(attacker, login, PASSWORD, ["q@victim.example"], "guessed password")
    password_id = next(c.id for c in creds.list_credentials(account=login) if c.kind == "password")
    _audited(gate, password_id, [sent])
    ops = Operations(gate.server.runtime)
    incident = asyncio.run(ops.incidents.open(Actor.local(), account=login.upper(), reason="phished"))
    assert {c["id"] for c in incident.contained["revoked"]} == {password_id, app.credential.id}
    assert incident.contained["password_reset"] and not creds.get_account(login).has_password
    assert sent in incident.contained["held"] + incident.contained["left"]
    assert [b["network"] for b in incident.contained["banned"]] == [f"{attacker}/32"]
    assert gate.login_refused("127.0.0.1", login, PASSWORD) and gate.login_refused("127.0.0.1", login, app.secret)
    creds.set_password(login, PASSWORD + "-new")  # the owner sets a new one: it works from the office
    assert not gate.login_refused("127.0.0.1", login, PASSWORD + "-new")
    page = ops.incidents.report(Actor.local(), incident.id).to_html()
    assert f"account of {login}" in page and "unusable until its owner sets a new one" in page


def test_a_session_opened_before_the_incident_sends_no_more(gate: Gate) -> None:
    login = "kim@example.com"
    gate.server.credentials.create_account(login)
    leaked = gate.server.credentials.create_app_password(login, "smtp-relay")
    message = f"From: {login}\r\nSubject: held open\r\n\r\nx\r\n".encode()
    with client(gate.server, "127.0.0.12") as smtp:
        smtp.login(login, leaked.secret)
        assert smtp.sendmail(login, ["a@victim.example"], message) == {}
        asyncio.run(Operations(gate.server.runtime).incidents.open(Actor.local(), credential=leaked.credential.id))
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail(login, ["b@victim.example"], message)
    assert refused.value.smtp_code == 421  # and the connection is closed
    events = eventually(lambda: gate.server.runtime.audit_store.query(credential_id=leaked.credential.id, kind="message"),
                        lambda found: any(e.event.reason == "credential-ended" for e in found))
    assert any(e.event.reason == "credential-ended" and e.event.remote_ip == "127.0.0.12" for e in events)


def test_leak_reports_act_only_on_a_valid_signature(gate: Gate) -> None:
    login = "frank@example.com"
    creds = gate.server.credentials
    creds.create_account(login)
    live = creds.create_app_password(login, "ci-deploy")
    wrong_check = live.secret[:-1] + ("a" if live.secret[-1] != "a" else "b")
    report = [
        {"token": live.secret, "type": "smtpgate_app_password", "url": "https://github.com/o/r/blob/main/.env", "source": "content"},
        {"token": wrong_check, "type": "smtpgate_app_password", "url": "https://github.com/o/r/blob/main/x", "source": "content"},
        {"token": "ghp_" + "x" * 36, "type": "other", "url": "https://github.com/o/r", "source": "commit"},
    ]
    body = json.dumps(report).encode()
    headers = {"Content-Type": "application/json", "Github-Public-Key-Identifier": KEY_ID}
    with gate.api(None) as anyone:
        missing = anyone.post("/api/v1/leaks", content=body, headers={"Content-Type": "application/json"})
        assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
        forged = anyone.post("/api/v1/leaks", content=body, headers={**headers, "Github-Public-Key-Signature": gate.sign(body + b" ")})
        assert forged.status_code == 403 and forged.headers["content-type"] == "application/problem+json"
        assert forged.json()["code"] == "leak-signature-invalid"
        unknown = anyone.post("/api/v1/leaks", content=body, headers={
            **headers, "Github-Public-Key-Identifier": "someone-else", "Github-Public-Key-Signature": gate.sign(body)})
        assert unknown.status_code == 403
        assert creds.get_credential(live.credential.id).revoked_at is None  # nothing was done

        answer = anyone.post("/api/v1/leaks", content=body, headers={**headers, "Github-Public-Key-Signature": gate.sign(body)})
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {"token_hash": hashlib.sha256(item["token"].encode()).hexdigest(), "token_type": item["type"], "label": label}
        for item, label in zip(report, ["true_positive", "false_positive", "false_positive"], strict=True)
    ]
    assert creds.get_credential(live.credential.id).revoked_at is not None
    incidents = gate.cli.ok("incident", "list", "--json").json()
    (mine,) = [i for i in incidents if i.get("credential") == live.credential.id]
    assert mine["opened_by"] == f"leaks:{KEY_ID}" and "github.com/o/r/blob/main/.env" in mine["reason"]
    _alert(gate, "incident", live.credential.id)
    log = gate.server.log() + json.dumps(list(gate.receiver.delivered))
    assert live.secret not in log and wrong_check not in log
