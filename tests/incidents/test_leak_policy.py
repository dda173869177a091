"""Leak reports in process: the signature check, the report's shape, and `on_leak` policies."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smtpgate.config import load_config
from smtpgate.credentials.leak_reports import ReporterKeys, parse_report
from smtpgate.errors import Forbidden, Invalid, Unauthorized, Unavailable
from smtpgate.ops import Operations
from smtpgate.runtime import Runtime
from tests.guard.servers import set_section
from tests.smtp.server_harness import init_data_dir

KEY = ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _keys_file(path: Path, **keys: str) -> Path:
    path.write_text(json.dumps({"public_keys": [{"key_identifier": k, "key": v} for k, v in keys.items()]}))
    return path


def _sign(body: bytes) -> str:
    return base64.b64encode(KEY.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


def test_signatures_are_checked_over_the_raw_body(tmp_path: Path) -> None:
    keys = ReporterKeys.load(_keys_file(tmp_path / "k.json", k1=_pem(KEY)))
    body = b'[{"token":"x","type":"t","url":"u","source":"s"}]'
    assert keys.verify(body, "k1", _sign(body)) == "k1"
    with pytest.raises(Unauthorized):
        keys.verify(body, None, _sign(body))
    with pytest.raises(Forbidden):
        keys.verify(body + b"\n", "k1", _sign(body))
    with pytest.raises(Forbidden):
        keys.verify(body, "k1", "not base64!")
    with pytest.raises(Unavailable, match="not an ECDSA P-256 key"):
        ReporterKeys.load(_keys_file(tmp_path / "rsa.json", r=_pem(rsa.generate_private_key(65537, 2048))))


@pytest.mark.parametrize("body", [b"{}", b"not json", b'[{"type":"t"}]', b'["x"]', b"[" + b'{"token":"a"},' * 1000 + b'{"token":"a"}]'])
def test_a_report_that_is_not_a_list_of_tokens_is_invalid(body: bytes) -> None:
    with pytest.raises(Invalid) as info:
        parse_report(body)
    assert "sgp_" not in str(info.value)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = init_data_dir(tmp_path_factory.mktemp("leaks") / "data")
    set_section(config, "incidents", {"leak_report_keys": f'"{_keys_file(config.parent / "keys.json", k1=_pem(KEY))}"',
                                      "on_leak": '"alert"'})
    rt = Runtime(load_config(config))
    yield rt
    rt.close()


def _report(rt: Runtime, *tokens: str) -> list:
    body = json.dumps([{"token": t, "type": "smtpgate", "url": "https://example.org/leak", "source": "content"}
                       for t in tokens]).encode()
    return asyncio.run(Operations(rt).leaks.report(body, key_id="k1", signature=_sign(body), remote_ip="192.0.2.5"))


def test_alert_policy_alerts_and_revokes_nothing(runtime: Runtime) -> None:
    runtime.credentials.create_account("gina@example.com")
    live = runtime.credentials.create_app_password("gina@example.com", "a")
    (verdict,) = _report(runtime, live.secret)
    assert (verdict.label, verdict.state, verdict.action) == ("true_positive", "live", "alerted")
    assert runtime.credentials.get_credential(live.credential.id).revoked_at is None
    (alert,) = [a for a in runtime.audit_store.alerts(rule="leaked-secret") if a.credential_id == live.credential.id]
    assert alert.severity == "critical" and alert.login == "gina@example.com"
    assert live.secret not in json.dumps(alert.to_json())


def test_revoke_policy_revokes_api_tokens_but_never_a_canary(runtime: Runtime) -> None:
    runtime.config.incidents.on_leak = "revoke"
    try:
        runtime.credentials.create_account("hank@example.com")
        canary = runtime.credentials.create_app_password("hank@example.com", "wiki", canary=True)
        token = runtime.credentials.api_tokens.create("leaky-ci", "viewer")
        revoked = runtime.credentials.create_app_password("hank@example.com", "old")
        runtime.credentials.revoke(revoked.credential.id)
        verdicts = _report(runtime, canary.secret, token.secret, revoked.secret)
    finally:
        runtime.config.incidents.on_leak = "alert"
    assert [(v.kind, v.state, v.action, v.label) for v in verdicts] == [
        ("app-password", "live", "alerted", "true_positive"),     # a canary stays: its use is the alarm
        ("api-token", "live", "revoked", "true_positive"),
        ("app-password", "revoked", "none", "true_positive"),
    ]
    assert runtime.credentials.get_credential(canary.credential.id).revoked_at is None
    assert runtime.credentials.api_tokens.get(token.info.id).state == "revoked"
