"""The admin listener off loopback: HTTPS with the SMTP certificate by default, plain HTTP
only with `[admin] allow_plain_http` (and a warning), `/metrics` behind a token on request.

Real servers in subprocesses bound to 0.0.0.0 (all interfaces: not loopback), reached
through 127.0.0.1 only, with httpx trusting the local CA that `smtpgate init` made.
"""

from __future__ import annotations

import re
import signal
import ssl
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from cryptography import x509

from smtpgate import pki
from smtpgate.config import AdminConfig, ConfigError, load_config
from smtpgate.process import admin_tls_context, describe_admin_listener
from smtpgate.smtp.tls import ReloadableTlsContext, TlsConfigError
from tests.admin.conftest import Api
from tests.smtp.server_harness import PASSWORD, RunningServer, init_data_dir, wait_for_port


def start_admin(data: Path, admin_keys: str) -> tuple[RunningServer, Api]:
    """A server whose admin listener binds 0.0.0.0 (every interface), with `admin_keys` added."""
    config = init_data_dir(data)
    text, moved = re.subn(r'\[admin\]\nlisten = "127\.0\.0\.1:(\d+)"',
                          lambda m: f'[admin]\nlisten = "0.0.0.0:{m.group(1)}"\n{admin_keys}', config.read_text())
    assert moved == 1
    config.write_text(text)
    server = RunningServer(config)
    tokens = {role: server.credentials.api_tokens.create(f"test-{role}", role, actor="test")
              for role in ("viewer", "admin")}
    server.start()
    port = int(server.config.admin.listen.rpartition(":")[2])
    wait_for_port(port, server.proc, server.log_path)  # type: ignore[arg-type]
    return server, Api(server, f"{server.config.admin.scheme}://127.0.0.1:{port}", tokens)


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Nothing about TLS configured: off loopback that means HTTPS with the [tls] certificate."""
    server, api = start_admin(tmp_path_factory.mktemp("admin-https") / "data", "metrics_token_required = true")
    yield api
    server.close()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server, api = start_admin(tmp_path_factory.mktemp("admin-plain") / "data", "allow_plain_http = true")
    yield api
    server.close()


def verified(api: Api, role: str | None = "admin") -> httpx.Client:
    return api.client(role, verify=ssl.create_default_context(cafile=str(api.server.ca)))


# ------------------------------------------------------------------ HTTPS by default


def test_off_loopback_the_listener_serves_https_and_says_so(https: Api) -> None:
    port = https.base.rpartition(":")[2]
    assert https.base.startswith("https://")
    log = https.server.log()
    assert f"admin listener on https://0.0.0.0:{port} " in log
    assert "TLS 1.2+ with tls/server.pem (the [tls] certificate)" in log
    assert "plain HTTP" not in log
    with verified(https, None) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.extensions["network_stream"].get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        assert client.get("/api/v1/accounts").status_code == 401


def test_https_serves_the_api_with_a_token(https: Api) -> None:
    https.server.credentials.create_account("tls-owner@example.com", password=PASSWORD)
    with verified(https) as client:
        listed = client.get("/api/v1/accounts")
    assert listed.status_code == 200
    assert "tls-owner@example.com" in [a["login"] for a in listed.json()]


def test_plain_http_to_the_tls_port_fails(https: Api) -> None:
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as client:
        client.get(https.base.replace("https://", "http://") + "/healthz")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused_like_smtp(https: Api) -> None:
    context = ssl.create_default_context(cafile=str(https.server.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT@SECLEVEL=0")  # this client could speak TLS 1.1: the server must be what refuses
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=context, timeout=5) as client:
        client.get(https.base + "/healthz")


def test_the_console_cookies_are_secure_over_https(https: Api) -> None:
    login = "tls-console@example.com"
    https.server.credentials.create_account(login, password=PASSWORD)
    with verified(https, None) as client:
        form = client.get("/signin")
        assert form.status_code == 200
        assert re.search(r"sg_form=[^;]+;.*Secure", form.headers["set-cookie"], re.I)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)  # type: ignore[union-attr]
        signed = client.post("/signin", data={"login": login, "password": PASSWORD, "csrf": csrf})
    assert signed.status_code == 303 and signed.headers["location"] == "/apps"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("sg_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict"} <= flags


def test_metrics_ask_for_a_token_when_configured(https: Api) -> None:
    with verified(https, None) as anonymous:
        refused = anonymous.get("/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["code"] == "unauthorized"
    with verified(https, "viewer") as viewer:  # any role reads the figures
        scraped = viewer.get("/metrics")
    assert scraped.status_code == 200 and "smtpgate_" in scraped.text
    with verified(https, None) as forger:
        forged = forger.get("/metrics", headers={"Authorization": "Bearer sga_not_a_real_token"})
    assert forged.status_code == 401


def test_sighup_renews_the_admin_certificate_with_the_smtp_one(https: Api) -> None:
    server = https.server
    tls_dir = server.config.path("tls")

    def serial() -> int:
        with verified(https, None) as client:
            response = client.get("/healthz")
            der = response.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True)
        return x509.load_der_x509_certificate(der).serial_number

    before = serial()
    ca_cert, ca_key = pki.load_certificate(tls_dir / "ca.pem"), pki.load_private_key(tls_dir / "ca.key")
    now = datetime.now(timezone.utc)
    cert_pem, key_pem = pki.issue_server_cert(ca_cert, ca_key, ["localhost"], now - timedelta(minutes=1),
                                              now + timedelta(days=30), include_loopback=True)
    (tls_dir / "server.key").write_bytes(key_pem)
    (tls_dir / "server.pem").write_bytes(cert_pem + pki.cert_to_pem(ca_cert))
    server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while "TLS certificate reloaded" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = serial()
    assert after != before
    assert after == x509.load_pem_x509_certificate(cert_pem).serial_number


# ------------------------------------------------------------------ plain HTTP, on request


def test_allow_plain_http_serves_http_with_a_warning(plain: Api) -> None:
    port = plain.base.rpartition(":")[2]
    log = plain.server.log()
    assert f"admin listener on http://0.0.0.0:{port} " in log
    warning = next(line for line in log.splitlines() if "plain HTTP on a non-loopback address" in line)
    assert " WARNING " in warning and f"0.0.0.0:{port}" in warning and "allow_plain_http" in warning
    with plain.client(None) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200  # public unless metrics_token_required
    with pytest.raises(httpx.ConnectError), verified(plain, None) as tls_client:
        tls_client.get(plain.base.replace("http://", "https://") + "/healthz")


# ------------------------------------------------------------------ the decision, in-process


@pytest.mark.parametrize(("keys", "https"), [
    ({"listen": "127.0.0.1:8025"}, False),
    ({"listen": "[::1]:8025"}, False),
    ({"listen": "localhost:8025"}, False),
    ({"listen": "0.0.0.0:8025"}, True),
    ({"listen": "[::]:8025"}, True),
    ({"listen": "192.0.2.10:8025"}, True),
    ({"listen": "mail.example.com:8025"}, True),
    ({"listen": "0.0.0.0:8025", "allow_plain_http": True}, False),
    ({"listen": "127.0.0.1:8025", "tls": "on"}, True),
    ({"listen": "0.0.0.0:8025", "tls": "on", "allow_plain_http": True}, True),
    ({"listen": "0.0.0.0:8025", "tls": "off", "allow_plain_http": True}, False),
    ({"listen": "127.0.0.1:8025", "tls": "off"}, False),
])
def test_https_is_decided_by_the_address_and_the_keys(keys: dict[str, object], https: bool) -> None:
    assert AdminConfig.model_validate(keys).https is https


def config_file(tmp_path: Path, admin: str, hostname: str = "localhost") -> Path:
    path = tmp_path / "smtpgate.toml"
    path.write_text(f'hostname = "{hostname}"\n[admin]\n{admin}\n')
    return path


def test_tls_off_off_loopback_needs_allow_plain_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(config_file(tmp_path, 'listen = "0.0.0.0:8025"\ntls = "off"'))
    message = str(refused.value)
    assert "`admin`" in message and "allow_plain_http = true" in message and 'tls = "off"' in message


def test_own_certificate_keys_go_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key together"):
        load_config(config_file(tmp_path, 'listen = "0.0.0.0:8025"\ntls_cert = "admin.pem"'))


def test_the_admin_listener_may_have_its_own_certificate(tmp_path: Path) -> None:
    pki.make_local_ca_and_server_cert(tmp_path / "tls", ["localhost"])
    pki.make_self_signed_cert(tmp_path / "admin.pem", tmp_path / "admin.key", "console.example.test")
    config = load_config(config_file(tmp_path, 'listen = "0.0.0.0:8025"\ntls_cert = "admin.pem"\ntls_key = "admin.key"',
                                     hostname="mail.example.test"))
    smtp = ReloadableTlsContext(config.path(config.tls.cert), config.path(config.tls.key))
    own = admin_tls_context(config, smtp)
    assert own is not None and own is not smtp and own.cert_path == tmp_path / "admin.pem"
    assert own.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert "admin.pem (from [admin] tls_cert)" in describe_admin_listener(config)
    assert config.console_url == "https://mail.example.test:8025"  # what 534 5.7.9 and invitations name
    loopback = load_config(config_file(tmp_path, 'listen = "127.0.0.1:8025"'))
    assert admin_tls_context(loopback, smtp) is None
    assert describe_admin_listener(loopback).startswith("admin listener on http://127.0.0.1:8025 (")
    assert loopback.console_url == "http://127.0.0.1:8025"
    default = load_config(config_file(tmp_path, 'listen = "0.0.0.0:8025"'))
    assert admin_tls_context(default, smtp) is smtp  # one context: one SIGHUP renews both
    missing = load_config(config_file(tmp_path, 'listen = "0.0.0.0:8025"\ntls_cert = "gone.pem"\ntls_key = "admin.key"'))
    with pytest.raises(TlsConfigError, match="gone.pem does not exist"):  # the start stops on it (process._preflight)
        admin_tls_context(missing, smtp)


def test_a_bad_admin_certificate_stops_the_start(tmp_path: Path) -> None:
    config = init_data_dir(tmp_path / "data")
    config.write_text(config.read_text().replace("[admin]\n", '[admin]\ntls = "on"\ntls_cert = "tls/ca.key"\ntls_key = "tls/server.key"\n', 1))
    server = RunningServer(config)
    try:
        with pytest.raises(RuntimeError, match=r"exited with 1"):
            server.start()
        log = server.log()
        assert "tls/ca.key does not contain a valid PEM certificate" in log and "[admin] tls_cert / tls_key" in log
    finally:
        server.close()
