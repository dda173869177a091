"""Tokens and SCRAM through the real server, over real TLS, with real clients.

Tokens come from the built-in issuer (`POST /oauth/token` on the admin listener) and
from a test IdP whose JWKS is served on loopback. Clients: curl (`--oauth2-bearer`,
XOAUTH2 and OAUTHBEARER), aiosmtplib's XOAUTH2, nodemailer's OAuth2, and scramp's
SCRAM client driving a raw socket. Every refusal is checked on the wire (the JSON error
challenge, then 535 5.7.8) and in the audit (its reason code).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from scramp import ScramClient

from smtpgate.credentials import ScopeRequest
from smtpgate.credentials.tokens import MAX_TOKEN_LENGTH
from tests.cli.conftest import SMTPGATE
from tests.conftest import need
from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import PASSWORD, RunningServer, init_data_dir
from tests.tokens.idp import TestIdP

CLIENTS = Path(__file__).parents[1] / "clients"


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def idp() -> Iterator[TestIdP]:
    provider = TestIdP()
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, idp: TestIdP) -> Iterator[RunningServer]:
    config = init_data_dir(tmp_path_factory.mktemp("tokens") / "data")
    with config.open("a", encoding="utf-8") as fh:
        fh.write(
            f'\n[[tokens.issuers]]\nname = "corp"\nissuer = "{idp.issuer}"\naudience = "{idp.audience}"\n'
            f'jwks_url = "{idp.jwks_url}"\nalgorithms = ["RS256", "ES256"]\n'
        )
    running = RunningServer(config)
    running.start()
    yield running
    running.close()


def admin_url(server: RunningServer) -> str:
    host, _, port = server.config.admin.listen.rpartition(":")
    return f"http://{host}:{port}"


def service_account(server: RunningServer, login: str, **scopes) -> tuple[str, str]:
    created = server.runtime.tokens.create_service_account(login, scopes=ScopeRequest(**scopes))
    return created.account.id, created.client_secret


def fetch_token(server: RunningServer, client_id: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    response = httpx.post(f"{admin_url(server)}/oauth/token", data=form, auth=(client_id, secret), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def account(server: RunningServer, login: str) -> None:
    try:
        server.credentials.create_account(login, password=PASSWORD)
    except Exception:  # noqa: BLE001 - exists already in the shared server
        pass


def captured(server: RunningServer, subject: str) -> list:
    return [m for m in server.runtime.capture.list() if m.subject == subject]


def audit_reasons(server: RunningServer, login: str, want: str, timeout: float = 15) -> list[str]:
    """Reasons of failed AUTH events for `login`, once `want` is among them (the writer batches)."""
    deadline = time.monotonic() + timeout
    while True:
        reasons = [e.event.reason for e in server.runtime.audit_store.query(kind="auth", result="fail", limit=5000)
                   if e.event.login == login]
        if want in reasons or time.monotonic() > deadline:
            return reasons
        time.sleep(0.1)


def tls_client(server: RunningServer) -> RawClient:
    client = RawClient(server.submissions_port)
    client.starttls(server.client_context())
    assert client.reply()[0] == 220
    assert client.cmd("EHLO client.example.org")[0] == 250
    return client


def bearer_blob(mechanism: str, login: str, token: str) -> str:
    if mechanism == "XOAUTH2":
        raw = f"user={login}\x01auth=Bearer {token}\x01\x01"
    else:
        raw = f"n,a={login},\x01host=localhost\x01port=465\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode()).decode()


# -------------------------------------------------------------------- the endpoint


def test_token_endpoint_with_basic_and_body_authentication(server: RunningServer) -> None:
    client_id, secret = service_account(server, "endpoint-bot@example.com")
    url = f"{admin_url(server)}/oauth/token"
    basic = httpx.post(url, data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10)
    assert basic.status_code == 200 and basic.headers["cache-control"] == "no-store"
    body = basic.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "smtp"
    form = httpx.post(url, data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
                                 "scope": "smtp sender:endpoint-bot@example.com"}, timeout=10)
    assert form.status_code == 200 and form.json()["scope"] == "smtp sender:endpoint-bot@example.com"
    jwks = httpx.get(f"{admin_url(server)}/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200 and all("d" not in k for k in jwks.json()["keys"])
    claims = jwt.decode(body["access_token"], KeySet.import_key_set(jwks.json()), algorithms=["ES256"]).claims
    assert claims["sub"] == "endpoint-bot@example.com" and claims["client_id"] == client_id
    assert secret not in server.log() and body["access_token"] not in server.log()


def test_token_endpoint_errors_are_rfc6749(server: RunningServer) -> None:
    client_id, secret = service_account(server, "errors-bot@example.com")
    url = f"{admin_url(server)}/oauth/token"
    grant = {"grant_type": "client_credentials"}

    def post(**kwargs) -> httpx.Response:
        return httpx.post(url, timeout=10, **kwargs)

    cases = [
        (post(data=grant), 401, "invalid_client"),
        (post(data=grant, auth=(client_id, "sgc_" + "a" * 39)), 401, "invalid_client"),
        (post(data=grant, auth=("sa_nobody", secret)), 401, "invalid_client"),
        (post(data={"grant_type": "password"}, auth=(client_id, secret)), 400, "unsupported_grant_type"),
        (post(data={}, auth=(client_id, secret)), 400, "invalid_request"),
        (post(json=grant, auth=(client_id, secret)), 400, "invalid_request"),
        (post(content=b"grant_type=client_credentials&grant_type=client_credentials", auth=(client_id, secret),
              headers={"content-type": "application/x-www-form-urlencoded"}), 400, "invalid_request"),
        (post(data={**grant, "client_secret": secret}, auth=(client_id, secret)), 400, "invalid_request"),
        (post(data={**grant, "scope": "smtp sender:ceo@example.com"}, auth=(client_id, secret)), 400, "invalid_scope"),
        (post(data={**grant, "scope": "admin"}, auth=(client_id, secret)), 400, "invalid_scope"),
    ]
    for response, status, error in cases:
        assert (response.status_code, response.json()["error"]) == (status, error), response.text
        assert "error_description" in response.json()
    assert cases[0][0].headers["www-authenticate"].startswith("Basic")
    assert secret not in server.log()


# ------------------------------------------------------------------ real clients


def curl(server: RunningServer, mechanism: str, login: str, token: str, subject: str, *, implicit: bool = False):
    need(shutil.which("curl") is not None, "curl is not installed")
    port = server.submissions_port if implicit else server.submission_port
    scheme = "smtps" if implicit else "smtp"
    conf = server.config_path.parent / f"curl-{subject}.conf"
    conf.write_text(f'user = "{login}:"\noauth2-bearer = "{token}"\n')  # the token never on argv
    conf.chmod(0o600)
    body = f"From: {login}\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\n\r\nSent by curl\r\n".encode()
    return subprocess.run([
        "curl", "-sS", "--ssl-reqd", f"{scheme}://localhost:{port}", "--cacert", str(server.ca),
        "--config", str(conf), "--login-options", f"AUTH={mechanism}",
        "--mail-from", login, "--mail-rcpt", "rcpt@example.org", "--upload-file", "-",
    ], input=body, capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize("source", ["built-in", "idp"])
def test_curl_sends_with_a_bearer_token(server: RunningServer, idp: TestIdP, mechanism: str, source: str) -> None:
    if source == "built-in":
        login = f"curl-{mechanism.lower()}@example.com"
        client_id, secret = service_account(server, login)
        token = fetch_token(server, client_id, secret)
    else:
        login = "alice@example.com"
        account(server, login)
        token = idp.token(email=login)
    subject = f"curl-{mechanism}-{source}"
    result = curl(server, mechanism, login, token, subject, implicit=source == "idp")
    assert result.returncode == 0, result.stderr
    (message,) = captured(server, subject)
    assert message.credential_id == ("idp:corp" if source == "idp" else client_id)
    assert token not in server.log()


def test_curl_refused_token(server: RunningServer, idp: TestIdP) -> None:
    account(server, "alice@example.com")
    for mechanism in ("XOAUTH2", "OAUTHBEARER"):
        result = curl(server, mechanism, "alice@example.com", idp.token(aud="api://other"), f"curl-refused-{mechanism}")
        assert result.returncode == 67, result.stderr  # CURLE_LOGIN_DENIED
    assert not captured(server, "curl-refused-XOAUTH2") and not captured(server, "curl-refused-OAUTHBEARER")
    assert "reason=token-wrong-audience" in server.log()


def test_aiosmtplib_xoauth2(server: RunningServer) -> None:
    import aiosmtplib

    client_id, secret = service_account(server, "aio-bot@example.com")
    token = fetch_token(server, client_id, secret)

    async def send() -> str:
        smtp = aiosmtplib.SMTP(hostname="localhost", port=server.submissions_port, use_tls=True,
                               tls_context=server.client_context())
        async with smtp:
            await smtp.auth_xoauth2("aio-bot@example.com", token)
            message = b"From: aio-bot@example.com\r\nTo: rcpt@example.org\r\nSubject: aiosmtplib-xoauth2\r\n\r\nhi\r\n"
            errors, response = await smtp.sendmail("aio-bot@example.com", ["rcpt@example.org"], message)
            assert not errors
            return response

    assert asyncio.run(send()).startswith("2.0.0 Ok: queued as")
    assert len(captured(server, "aiosmtplib-xoauth2")) == 1

    async def refused() -> int:
        smtp = aiosmtplib.SMTP(hostname="localhost", port=server.submissions_port, use_tls=True,
                               tls_context=server.client_context())
        async with smtp:
            try:
                await smtp.auth_xoauth2("aio-bot@example.com", token[:-6] + "AAAAAA")
            except aiosmtplib.SMTPAuthenticationError as exc:
                return exc.code
        return 0

    assert asyncio.run(refused()) == 535
    assert "token-bad-signature" in audit_reasons(server, "aio-bot@example.com", "token-bad-signature")


def nodemailer(server: RunningServer, login: str, token: str, subject: str) -> dict:
    need(shutil.which("node") is not None, "node is not installed")
    need((CLIENTS / "node_modules" / "nodemailer").is_dir(), "nodemailer is not installed (scripts/install-test-clients.sh)")
    result = subprocess.run(["node", str(CLIENTS / "send.js")], capture_output=True, text=True, timeout=60, check=False, env={
        **os.environ, "SMTP_PORT": str(server.submission_port), "SMTP_SECURE": "0", "SMTP_USER": login,
        "SMTP_TOKEN": token, "SMTP_CA": str(server.ca), "SMTP_FROM": login, "SMTP_TO": "rcpt@example.org",
        "SMTP_SUBJECT": subject,
    })
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_nodemailer_xoauth2(server: RunningServer, idp: TestIdP) -> None:
    client_id, secret = service_account(server, "node-bot@example.com")
    outcome = nodemailer(server, "node-bot@example.com", fetch_token(server, client_id, secret), "nodemailer-xoauth2")
    assert outcome["ok"], outcome
    assert len(captured(server, "nodemailer-xoauth2")) == 1
    account(server, "bob@example.com")
    idp_outcome = nodemailer(server, "bob@example.com", idp.token(email="bob@example.com"), "nodemailer-idp")
    assert idp_outcome["ok"], idp_outcome
    expired = nodemailer(server, "bob@example.com", idp.token(datetime.now(UTC) - timedelta(hours=2),
                                                                email="bob@example.com"), "nodemailer-expired")
    assert expired == {"ok": False, "code": 535, "response": "535 5.7.8 Authentication credentials invalid"}


# -------------------------------------------------------------------- refusals


def refusal(server: RunningServer, mechanism: str, login: str, token: str) -> tuple[int, dict, str]:
    """AUTH with `token`: the error challenge, its JSON, and the final reply after the dummy response."""
    client = tls_client(server)
    try:
        code, lines = client.cmd(f"AUTH {mechanism} {bearer_blob(mechanism, login, token)}")
        challenge = json.loads(base64.b64decode(lines[-1][4:])) if code == 334 else {}
        final = client.cmd("AQ==" if mechanism == "OAUTHBEARER" else "")[1][-1] if code == 334 else lines[-1]
        assert client.cmd("MAIL FROM:<x@example.com>")[0] == 530  # still not authenticated
        return code, challenge, final
    finally:
        client.close()


BAD_IDP_TOKENS = {
    "token-expired": lambda idp, login: idp.token(datetime.now(UTC) - timedelta(hours=1), email=login),
    "token-not-yet-valid": lambda idp, login: idp.token(datetime.now(UTC) + timedelta(minutes=10), email=login),
    "token-wrong-audience": lambda idp, login: idp.token(aud="api://someone-else", email=login),
    "token-wrong-issuer": lambda idp, login: idp.token(iss="https://evil.test/", email=login),
    "token-bad-signature": lambda idp, login: idp.forged(email=login),
    "token-alg-not-allowed": lambda idp, login: idp.unsigned(email=login),
    "token-too-long": lambda idp, login: idp.token(email=login, pad="x" * MAX_TOKEN_LENGTH),
    # 30 KB: its base64 AUTH line is over 32 KiB, yet it must reach the check, not "line too long"
    "token-too-long-30kb": lambda idp, login: idp.token(email=login, pad="x" * 22_000),
}


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
@pytest.mark.parametrize("why", sorted(BAD_IDP_TOKENS))
def test_bad_tokens_are_refused_with_the_json_challenge(server: RunningServer, idp: TestIdP, mechanism: str, why: str) -> None:
    login = f"refused-{why}-{mechanism.lower()}@example.com"
    account(server, login)
    token = BAD_IDP_TOKENS[why](idp, login)
    if why.startswith("token-too-long"):
        assert len(token) > MAX_TOKEN_LENGTH
        assert why != "token-too-long-30kb" or 29_000 < len(token) <= 30 * 1024
        why = "token-too-long"
    code, challenge, final = refusal(server, mechanism, login, token)
    assert code == 334
    assert challenge == ({"status": "invalid_token", "schemes": "bearer"} if mechanism == "OAUTHBEARER"
                         else {"status": "401", "schemes": "bearer"})
    assert final == "535 5.7.8 Authentication credentials invalid"
    assert why in audit_reasons(server, login, why)
    assert f"login={login} credential=- ip=127.0.0.1 mech={mechanism} reason={why}" in server.log()


def test_revocation_takes_effect_at_once(server: RunningServer) -> None:
    client_id, secret = service_account(server, "revoke-bot@example.com")
    first, second = fetch_token(server, client_id, secret), fetch_token(server, client_id, secret)
    client = tls_client(server)
    assert client.cmd(f"AUTH XOAUTH2 {bearer_blob('XOAUTH2', 'revoke-bot@example.com', first)}")[0] == 235
    client.close()
    env = {**os.environ, "SMTPGATE_CONFIG": str(server.config_path)}
    jti = jwt.decode(first, KeySet.import_key_set(server.runtime.tokens.jwks()), algorithms=["ES256"]).claims["jti"]
    done = subprocess.run([SMTPGATE, "token", "revoke", jti], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert refusal(server, "XOAUTH2", "revoke-bot@example.com", first)[2].startswith("535 5.7.8")
    assert "token-revoked" in audit_reasons(server, "revoke-bot@example.com", "token-revoked")
    client = tls_client(server)
    assert client.cmd(f"AUTH OAUTHBEARER {bearer_blob('OAUTHBEARER', 'revoke-bot@example.com', second)}")[0] == 235
    client.close()
    done = subprocess.run([SMTPGATE, "service-account", "revoke", client_id], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert refusal(server, "OAUTHBEARER", "revoke-bot@example.com", second)[2].startswith("535 5.7.8")
    assert "revoked" in audit_reasons(server, "revoke-bot@example.com", "revoked")


def test_login_must_match_and_senders_are_scoped(server: RunningServer) -> None:
    client_id, secret = service_account(server, "scoped-bot@example.com", allowed_senders=("@example.com",))
    narrow = fetch_token(server, client_id, secret, scope="smtp sender:billing@example.com")
    assert refusal(server, "XOAUTH2", "someone@example.com", narrow)[2].startswith("535")
    assert "token-login-mismatch" in audit_reasons(server, "someone@example.com", "token-login-mismatch")
    client = tls_client(server)
    try:
        assert client.cmd(f"AUTH XOAUTH2 {bearer_blob('XOAUTH2', 'scoped-bot@example.com', narrow)}")[0] == 235
        assert client.cmd("MAIL FROM:<other@example.com>")[1][-1].startswith("553 5.7.1")
        assert client.cmd("MAIL FROM:<billing@example.com>")[0] == 250
    finally:
        client.close()


def test_key_rotation_while_serving(server: RunningServer) -> None:
    client_id, secret = service_account(server, "rotate-bot@example.com")
    before = fetch_token(server, client_id, secret)
    env = {**os.environ, "SMTPGATE_CONFIG": str(server.config_path)}
    done = subprocess.run([SMTPGATE, "token", "rotate-key", "--json"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    new_kid = json.loads(done.stdout)["kid"]
    after = fetch_token(server, client_id, secret)
    assert jwt.decode(after, KeySet.import_key_set(httpx.get(f"{admin_url(server)}/.well-known/jwks.json").json()),
                      algorithms=["ES256"]).header["kid"] == new_kid
    for token in (before, after):
        client = tls_client(server)
        assert client.cmd(f"AUTH XOAUTH2 {bearer_blob('XOAUTH2', 'rotate-bot@example.com', token)}")[0] == 235
        client.close()


# --------------------------------------------------------------------------- SCRAM


def scram(server: RunningServer, login: str, password: str) -> tuple[RawClient, str]:
    """SCRAM-SHA-256 with scramp's client over a raw TLS socket; the last reply line."""
    client = tls_client(server)
    scram_client = ScramClient(["SCRAM-SHA-256"], login, password)
    code, lines = client.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(scram_client.get_client_first().encode()).decode())
    assert code == 334, lines
    scram_client.set_server_first(base64.b64decode(lines[-1][4:]).decode())
    code, lines = client.cmd(base64.b64encode(scram_client.get_client_final().encode()).decode())
    if code == 334:  # the server's signature: check it, then acknowledge
        scram_client.set_server_final(base64.b64decode(lines[-1][4:]).decode())
        code, lines = client.cmd("")
    return client, lines[-1]


def test_scram_sends_without_the_password_on_the_wire(server: RunningServer) -> None:
    account(server, "scram@example.com")
    client, final = scram(server, "scram@example.com", PASSWORD)
    try:
        assert final == "235 2.7.0 Authentication successful"
        assert client.cmd("MAIL FROM:<scram@example.com>")[0] == 250
        assert client.cmd("RCPT TO:<rcpt@example.org>")[0] == 250
        assert client.cmd("DATA")[0] == 354
        code, lines = client.cmd("From: scram@example.com\r\nSubject: scram-sha-256\r\n\r\nhi\r\n.")
        assert code == 250, lines
    finally:
        client.close()
    assert len(captured(server, "scram-sha-256")) == 1


def test_scram_with_an_app_password_and_a_wrong_password(server: RunningServer) -> None:
    secret = server.account_with_app_password("scram-app@example.com")
    client, final = scram(server, "scram-app@example.com", secret)
    client.close()
    assert final == "235 2.7.0 Authentication successful"
    client, final = scram(server, "scram-app@example.com", "not-the-password-at-all")
    client.close()
    assert final == "535 5.7.8 Authentication credentials invalid"
    assert "bad-secret" in audit_reasons(server, "scram-app@example.com", "bad-secret")
    assert "mech=SCRAM-SHA-256 reason=bad-secret" in server.log()
