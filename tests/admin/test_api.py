"""The REST API through the real admin listener: every route, roles, problems, pagination."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx

from smtpgate.delivery.capture import Envelope
from tests.admin.conftest import Api

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["code"] == code and body["type"].endswith(code)
    assert body["title"] and body["detail"]
    return body


# ---------------------------------------------------------------- public and auth

def test_openapi_and_doc_page_are_public_and_offline(api: Api) -> None:
    with api.client(None) as http:
        spec = http.get("/api/v1/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/api/v1/credentials/{credential_id}/revoke" in spec["paths"]
        page = http.get("/api/v1/docs")
        assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
        for asset in re.findall(r'(?:src|href)="(/api/v1/docs/[^"]+)"', page.text):
            body = http.get(asset)
            assert body.status_code == 200
            assert not re.search(r"https?://", body.text), f"{asset} loads something from the network"
        assert http.get("/healthz").json()["status"] == "ok"


def test_every_api_route_but_the_public_ones_needs_a_token(api: Api) -> None:
    with api.client(None) as http:
        spec = http.get("/api/v1/openapi.json").json()
        for path, methods in spec["paths"].items():
            for method in methods:
                url = path.replace("{login}", "a@example.com").replace("{network}", "192.0.2.1")
                url = re.sub(r"\{[a-z_]+\}", "x1", url)
                response = http.request(method.upper(), url, json={})
                body = problem(response, 401, "unauthorized")
                assert response.headers["www-authenticate"].startswith("Bearer"), (method, path, body)
        problem(http.get("/api/v1/accounts", headers={"Authorization": "Bearer sga_" + "a" * 39}), 401, "unauthorized")
        problem(http.get("/api/v1/accounts", headers={"Authorization": "Basic eDp5"}), 401, "unauthorized")


# ------------------------------------------------------------- the new user's path

def test_account_app_password_revoke_with_secrets_shown_once(api: Api) -> None:
    with api.client("admin") as http:
        created = http.post("/api/v1/accounts", json={"login": "Carol@Example.com", "generate": True})
        assert created.status_code == 201, created.text
        password = created.json()["password"]
        assert created.json()["login"] == "carol@example.com" and len(password) >= 20
        assert http.get("/api/v1/accounts/carol@example.com").json()["has_password"] is True
        patched = http.patch("/api/v1/accounts/carol@example.com", json={"display_name": "Carol", "notes": "x"})
        assert patched.json()["display_name"] == "Carol"
        issued = http.post("/api/v1/accounts/carol@example.com/app-passwords",
                           json={"name": "billing", "allow_ip": ["127.0.0.0/8"], "expires": "90d", "max_per_hour": 50})
        assert issued.status_code == 201, issued.text
        app = issued.json()
        assert app["secret"].startswith("sgp_") and app["scopes"]["allowed_networks"] == ["127.0.0.0/8"]
        assert app["scopes"]["max_per_hour"] == 50 and app["expires_at"]
        listed = http.get("/api/v1/credentials", params={"account": "carol@example.com"})
        shown = http.get(f"/api/v1/credentials/{app['id']}")
        for later in (listed, shown, http.get("/api/v1/accounts/carol@example.com"), http.get("/api/v1/credentials")):
            assert app["secret"] not in later.text and password not in later.text
        assert {c["kind"] for c in listed.json()} == {"password", "app-password"}
        rotated = http.post(f"/api/v1/credentials/{app['id']}/rotate", json={"overlap": "1h"})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["new"]
        assert new["secret"].startswith("sgp_") and new["rotated_from"] == app["id"]
        assert rotated.json()["old"]["replaced_by"] == new["id"]
        revoked = http.post(f"/api/v1/credentials/{new['id']}/revoke")
        assert revoked.json()["state"] == "revoked"
        only_active = http.get("/api/v1/credentials", params={"state": "revoked"}).json()
        assert [c["id"] for c in only_active] == [new["id"]]
        password_set = http.post("/api/v1/accounts/carol@example.com/password", json={"generate": True})
        assert password_set.status_code == 200 and len(password_set.json()["password"]) >= 20


def test_problems_name_the_field_and_the_code(api: Api) -> None:
    with api.client("admin") as http:
        body = problem(http.post("/api/v1/accounts", json={}), 422, "invalid-request")
        assert body["field"] == "login"
        body = problem(http.post("/api/v1/accounts", json={"login": "not an address"}), 422, "invalid-login")
        assert body["field"] == "login"
        http.post("/api/v1/accounts", json={"login": "dave@example.com"})
        problem(http.post("/api/v1/accounts", json={"login": "dave@example.com"}), 409, "account-exists")
        body = problem(http.post("/api/v1/accounts/dave@example.com/app-passwords",
                                 json={"name": "x", "allow_ip": ["nonsense"]}), 422, "invalid-network")
        assert body["field"] == "allow_ip"
        body = problem(http.post("/api/v1/accounts/dave@example.com/app-passwords",
                                 json={"name": "x", "expires": "soon"}), 422, "invalid-duration")
        assert body["field"] == "expires"
        body = problem(http.post("/api/v1/accounts/dave@example.com/app-passwords",
                                 json={"name": "x", "max_per_day": 0}), 422, "invalid-request")
        assert body["field"] == "max_per_day"
        body = problem(http.post("/api/v1/accounts", json={"login": "e@example.com", "password": "password1"}),
                       422, "weak-password")
        assert body["field"] == "password" and "password1" not in json.dumps(body)
        problem(http.get("/api/v1/accounts/nobody@example.com"), 404, "account-not-found")
        problem(http.get("/api/v1/credentials/ap_000000000000"), 404, "credential-not-found")
        body = problem(http.get("/api/v1/credentials", params={"state": "sleepy"}), 422, "invalid-request")
        assert body["field"] == "state"
        body = problem(http.post("/api/v1/accounts", json={"login": "f@example.com", "colour": "red"}),
                       422, "invalid-request")
        assert body["field"] == "colour"


# ------------------------------------------------------------------------ roles

def test_a_viewer_reads_and_its_revoke_is_403_and_changes_nothing(api: Api) -> None:
    with api.client("admin") as admin:
        admin.post("/api/v1/accounts", json={"login": "erin@example.com"})
        app = admin.post("/api/v1/accounts/erin@example.com/app-passwords", json={"name": "phone"}).json()
    with api.client("viewer") as viewer:
        assert viewer.get("/api/v1/credentials").status_code == 200
        body = problem(viewer.post(f"/api/v1/credentials/{app['id']}/revoke"), 403, "role-insufficient")
        assert "operator" in body["detail"]
        assert viewer.get(f"/api/v1/credentials/{app['id']}").json()["state"] == "active"
        problem(viewer.post("/api/v1/bans", json={"network": "192.0.2.9"}), 403, "role-insufficient")
        problem(viewer.post("/api/v1/accounts", json={"login": "v@example.com"}), 403, "role-insufficient")
        problem(viewer.get("/api/v1/api-tokens"), 403, "role-insufficient")
        assert viewer.get("/api/v1/accounts/v@example.com").status_code == 404  # nothing was created
    with api.client("operator") as operator:
        problem(operator.post("/api/v1/accounts", json={"login": "o@example.com"}), 403, "role-insufficient")
        problem(operator.post("/api/v1/accounts/erin@example.com/app-passwords", json={"name": "x"}),
                403, "role-insufficient")
        assert operator.post(f"/api/v1/credentials/{app['id']}/revoke").json()["state"] == "revoked"
    with api.client("admin") as admin:
        trail = admin.get("/api/v1/audit", params={"kind": "operator", "limit": 1000}).json()["items"]
    refusal = next(e for e in trail if e["action"] == "credential.revoke" and e["outcome"] == "forbidden")
    assert refusal["actor"] == "api:test-viewer" and refusal["role"] == "viewer" and refusal["remote_ip"] == "127.0.0.1"
    done = next(e for e in trail if e["action"] == "credential.revoke" and e["outcome"] == "ok")
    assert done["actor"] == "api:test-operator" and done["target"] == app["id"] and done["face"] == "api"


# ---------------------------------------------------------- service accounts, tokens

def test_service_accounts_tokens_and_api_tokens(api: Api) -> None:
    with api.client("admin") as http:
        created = http.post("/api/v1/service-accounts", json={"login": "bot@example.com", "name": "bot"})
        assert created.status_code == 201, created.text
        secret = created.json()["client_secret"]
        assert secret.startswith("sgc_")
        client_id = created.json()["client_id"]
        assert [a["login"] for a in http.get("/api/v1/service-accounts").json()] == ["bot@example.com"]
        assert secret not in http.get(f"/api/v1/service-accounts/{client_id}").text
        reset = http.post(f"/api/v1/service-accounts/{client_id}/reset-secret").json()
        assert reset["client_secret"] != secret
        token = httpx.post(f"{api.base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client_id, reset["client_secret"])).json()
        tokens = http.get("/api/v1/tokens").json()
        assert len(tokens) == 1 and token["access_token"] not in json.dumps(tokens)
        assert http.post(f"/api/v1/tokens/{tokens[0]['jti']}/revoke").json()["revoked_at"]
        problem(http.post("/api/v1/tokens/nope/revoke"), 404, "token-not-found")
        assert http.post(f"/api/v1/service-accounts/{client_id}/revoke").json()["state"] == "revoked"
        made = http.post("/api/v1/api-tokens", json={"name": "ci", "role": "viewer", "expires": "1d"})
        assert made.status_code == 201 and made.json()["token"].startswith("sga_")
        listed = http.get("/api/v1/api-tokens").json()
        assert {t["name"] for t in listed} >= {"ci", "test-admin"} and made.json()["token"] not in json.dumps(listed)
        with httpx.Client(base_url=api.base, headers={"Authorization": f"Bearer {made.json()['token']}"}) as ci:
            assert ci.get("/api/v1/accounts").status_code == 200
            assert http.post(f"/api/v1/api-tokens/{made.json()['id']}/revoke").json()["state"] == "revoked"
            problem(ci.get("/api/v1/accounts"), 401, "unauthorized")
        problem(http.post("/api/v1/api-tokens", json={"name": "ci", "role": "viewer"}), 409, "api-token-exists")
        problem(http.post("/api/v1/api-tokens", json={"name": "x", "role": "root"}), 422, "invalid-request")


# ------------------------------------------------------------------ bans, alerts

def test_bans_add_list_remove(api: Api) -> None:
    with api.client("operator") as http:
        added = http.post("/api/v1/bans", json={"network": "192.0.2.0/24", "duration": "30m", "reason": "test"})
        assert added.status_code == 201, added.text
        assert added.json()["network"] == "192.0.2.0/24"
        listed = http.get("/api/v1/bans").json()
        assert [b["network"] for b in listed] == ["192.0.2.0/24"] and listed[0]["created_by"] == "api:test-operator"
        body = problem(http.post("/api/v1/bans", json={"network": "127.0.0.1"}), 409, "network-allow-listed")
        assert "127.0.0.0/8" in body["detail"] and body["hint"]
        problem(http.post("/api/v1/bans", json={"network": "nonsense"}), 422, "invalid-network")
        problem(http.post("/api/v1/bans", json={"network": "192.0.2.1", "duration": "-1"}), 422, "invalid-duration")
        assert http.delete("/api/v1/bans/192.0.2.0/24").status_code == 204
        assert http.get("/api/v1/bans").json() == []
        problem(http.delete("/api/v1/bans/192.0.2.0/24"), 404, "not-banned")
        assert http.get("/api/v1/alerts").status_code == 200


# ----------------------------------------------------------------------- audit

def test_audit_pages_with_a_cursor_and_never_repeats(api: Api) -> None:
    with api.client("admin") as http:
        for i in range(5):
            http.post("/api/v1/accounts", json={"login": f"page{i}@example.com"})
        seen: list[int] = []
        cursor = None
        while True:
            params = {"kind": "operator", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/v1/audit", params=params).json()
            seen += [e["id"] for e in page["items"]]
            assert len(page["items"]) <= 2
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
        everything = http.get("/api/v1/audit", params={"kind": "operator", "limit": 1000}).json()
        assert [e["id"] for e in everything["items"]] == seen and everything["next_cursor"] is None
        creates = http.get("/api/v1/audit", params={"kind": "operator", "action": "account.create", "limit": 1000})
        assert {e["target"] for e in creates.json()["items"]} >= {f"page{i}@example.com" for i in range(5)}
        body = problem(http.get("/api/v1/audit", params={"cursor": "garbage"}), 422, "invalid-cursor")
        assert body["field"] == "cursor"
        events = http.get("/api/v1/audit", params={"limit": 1000})
        assert events.status_code == 200
        assert all(e["event"] in ("auth", "message", "connect") for e in events.json()["items"])
        problem(http.get("/api/v1/audit", params={"result": "maybe"}), 422, "invalid-request")


# ------------------------------------------------------------------ queue, capture

def envelope(rcpt: str, credential: str | None) -> Envelope:
    return Envelope("a@example.com", (rcpt,), credential, "a@example.com" if credential else None, "127.0.0.1",
                    "client.test", datetime.now(UTC))


def test_queue_hold_release_retry_delete(api: Api) -> None:
    queue = api.server.runtime.queue
    message = queue.enqueue(envelope("b@example.org", "ap_leaked"), b"Subject: hi\r\n\r\nbody\r\n")
    other = queue.enqueue(envelope("c@example.org", None), b"Subject: two\r\n\r\nx\r\n")
    with api.client("operator") as http:
        listed = http.get("/api/v1/queue").json()
        assert {m["id"] for m in listed} == {message.id, other.id}
        assert http.get(f"/api/v1/queue/{message.id}").json()["subject"] == "hi"
        assert http.get(f"/api/v1/queue/{message.id}/raw").content.endswith(b"body\r\n")
        held = http.post("/api/v1/queue/hold", json={"credential": "ap_leaked"}).json()
        assert held == {"count": 1, "target": "credential:ap_leaked", "rule": True, "still_held": []}
        assert [m["id"] for m in http.get("/api/v1/queue", params={"held": True}).json()] == [message.id]
        assert http.post(f"/api/v1/queue/{other.id}/hold").json()["count"] == 1
        released = http.post(f"/api/v1/queue/{message.id}/release").json()
        assert released["still_held"] == [message.id]  # the credential's hold rule still holds it
        assert http.post("/api/v1/queue/release", json={"all": True}).json()["count"] == 1
        assert http.get("/api/v1/queue", params={"held": True}).json() == []
        assert http.post(f"/api/v1/queue/{message.id}/retry").status_code == 200
        problem(http.post("/api/v1/queue/hold", json={}), 422, "selection-required")
        problem(http.post("/api/v1/queue/nothere/hold"), 404, "message-not-found")
        problem(http.delete(f"/api/v1/queue/{other.id}"), 403, "role-insufficient")
    with api.client("viewer") as viewer:
        problem(viewer.get(f"/api/v1/queue/{message.id}/raw"), 403, "role-insufficient")
    with api.client("admin") as http:
        assert http.delete(f"/api/v1/queue/{other.id}").json()["count"] == 1
        assert http.delete(f"/api/v1/queue/{message.id}").json()["count"] == 1
        assert http.get("/api/v1/queue").json() == []


def test_capture_list_show_raw(api: Api) -> None:
    capture = api.server.runtime.capture
    with capture.begin(envelope("z@example.org", None)) as writer:
        writer.write(b"Subject: captured\r\n\r\nhello\r\n")
        stored = writer.commit()
    with api.client("operator") as http:
        assert stored.id in [m["id"] for m in http.get("/api/v1/capture").json()]
        assert http.get(f"/api/v1/capture/{stored.id}").json()["subject"] == "captured"
        assert http.get(f"/api/v1/capture/{stored.id}/raw").content.endswith(b"hello\r\n")
        problem(http.get("/api/v1/capture/nothere"), 404, "captured-message-not-found")


# -------------------------------------------------------------------- dkim, upstream

def test_dkim_and_upstream(api: Api) -> None:
    with api.client("admin") as http:
        key = http.post("/api/v1/dkim/keys", json={"domain": "example.com", "selector": "s1", "algorithm": "ed25519"})
        assert key.status_code == 201, key.text
        assert key.json()["dns_name"] == "s1._domainkey.example.com" and "p=" in key.json()["dns_txt"]
        problem(http.post("/api/v1/dkim/keys", json={"domain": "example.com", "selector": "s1", "algorithm": "ed25519"}),
                409, "dkim-key-exists")
        problem(http.post("/api/v1/dkim/keys", json={"domain": "not a domain"}), 422, "invalid-domain")
        listed = http.get("/api/v1/dkim").json()
        assert [(r["selector"], r["state"]) for r in listed] == [("s1", "pending")]  # to publish before it signs
        before = http.get("/api/v1/upstream").json()
        assert before["password_set"] is False
        assert http.put("/api/v1/upstream/password", json={"password": "Smarthost-Secret-1"}).status_code == 204
        after = http.get("/api/v1/upstream")
        assert after.json()["password_set"] is True and "Smarthost-Secret-1" not in after.text


# ------------------------------------------------------------------ no secret leaks

def test_no_secret_in_the_operator_audit_or_the_log(api: Api) -> None:
    with api.client("admin") as http:
        http.post("/api/v1/accounts", json={"login": "leak@example.com", "password": "Correct-Horse-Battery-99"})
        secret = http.post("/api/v1/accounts/leak@example.com/app-passwords", json={"name": "x"}).json()["secret"]
        made = http.post("/api/v1/api-tokens", json={"name": "leaky", "role": "viewer"}).json()["token"]
        trail = http.get("/api/v1/audit", params={"kind": "operator", "limit": 1000}).text
        events = http.get("/api/v1/audit", params={"limit": 1000}).text
    log = api.server.log()
    for value in (secret, made, "Correct-Horse-Battery-99", "Smarthost-Secret-1", *api.secrets()):
        assert value not in trail and value not in events and value not in log
