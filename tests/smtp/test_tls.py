"""TLS server contexts: strict settings, clear errors, hot reload."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from smtpgate.pki import (
    TlsFiles,
    issue_server_cert,
    load_certificate,
    load_private_key,
    make_local_ca_and_server_cert,
    make_self_signed_cert,
)
from smtpgate.smtp.tls import ReloadableTlsContext, TlsConfigError, describe_tls, server_context

TIMEOUT = 10.0


class EchoServer:
    """A threaded TLS echo server on 127.0.0.1 taking its context from a callable."""

    def __init__(self, context: Callable[[], ssl.SSLContext]) -> None:
        self._context = context
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(TIMEOUT)
        self.port: int = self._sock.getsockname()[1]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        try:
            with self._context().wrap_socket(conn, server_side=True) as tls:
                while data := tls.recv(1024):
                    tls.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(exc)
        finally:
            conn.close()

    def wait_for_error(self) -> BaseException:
        deadline = time.monotonic() + TIMEOUT
        while not self.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.errors[0]

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def client_context(ca: Path | None, **settings: object) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ctx.load_verify_locations(ca)
    for name, value in settings.items():
        if name == "ciphers":
            ctx.set_ciphers(str(value))
        else:
            setattr(ctx, name, value)
    return ctx


def connect(port: int, ctx: ssl.SSLContext, hostname: str = "localhost") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(raw, server_hostname=hostname)
    except BaseException:
        raw.close()
        raise


def serial_seen(port: int, ca: Path) -> int:
    with connect(port, client_context(ca)) as tls:
        tls.sendall(b"ping")
        assert tls.recv(4) == b"ping"
        return peer_serial(tls)


def peer_serial(tls: ssl.SSLSocket) -> int:
    return int(tls.getpeercert()["serialNumber"], 16)


def serial_of(cert: Path) -> int:
    return load_certificate(cert).serial_number


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    return make_local_ca_and_server_cert(tmp_path / "tls", ["mail.example.com"])


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], ssl.SSLContext]], EchoServer]]:
    servers: list[EchoServer] = []

    def start(context: Callable[[], ssl.SSLContext]) -> EchoServer:
        servers.append(EchoServer(context))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def reissue(files: TlsFiles, hostnames: list[str]) -> None:
    """Replace server.pem/server.key in place with a new cert from the same CA."""
    now = datetime.now(timezone.utc)
    ca_pem = files.ca_cert.read_bytes()
    cert_pem, key_pem = issue_server_cert(
        ca_pem, load_private_key(files.ca_cert.with_name("ca.key")), hostnames,
        now - timedelta(minutes=1), now + timedelta(days=1), include_loopback=True,
    )
    files.key.write_bytes(key_pem)
    files.cert.write_bytes(cert_pem + ca_pem)


# --------------------------------------------------------------------------- handshakes


def test_client_trusting_the_ca_connects(files: TlsFiles, serve) -> None:
    ctx = server_context(files.cert, files.key)
    server = serve(lambda: ctx)
    with connect(server.port, client_context(files.ca_cert)) as tls:
        tls.sendall(b"hello\r\n")
        assert tls.recv(16) == b"hello\r\n"
        assert tls.version() == "TLSv1.3"
        assert describe_tls(tls).startswith("TLSv1.3 TLS_")


def test_tls12_negotiates_ecdhe_aead(files: TlsFiles, serve) -> None:
    ctx = server_context(files.cert, files.key)
    server = serve(lambda: ctx)
    client = client_context(files.ca_cert, maximum_version=ssl.TLSVersion.TLSv1_2)
    with connect(server.port, client) as tls:
        name = tls.cipher()[0]
        assert tls.version() == "TLSv1.2"
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)
        assert describe_tls(tls) == f"TLSv1.2 {name}"


def test_tls11_client_is_refused(files: TlsFiles, serve) -> None:
    ctx = server_context(files.cert, files.key)
    server = serve(lambda: ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = client_context(
            files.ca_cert,
            ciphers="DEFAULT:@SECLEVEL=0",
            minimum_version=ssl.TLSVersion.TLSv1_1,
            maximum_version=ssl.TLSVersion.TLSv1_1,
        )
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the server's alert
        connect(server.port, client)
    assert "UNSUPPORTED_PROTOCOL" in str(server.wait_for_error())


def test_cbc_only_tls12_client_is_refused(files: TlsFiles, serve) -> None:
    ctx = server_context(files.cert, files.key)
    server = serve(lambda: ctx)
    client = client_context(
        files.ca_cert,
        maximum_version=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA",
    )
    with pytest.raises(ssl.SSLError):
        connect(server.port, client)


def test_context_settings(files: TlsFiles) -> None:
    ctx = server_context(files.cert, files.key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_CIPHER_SERVER_PREFERENCE):
        assert ctx.options & option
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["aead"] and c["kea"] == "kx-ecdhe" for c in tls12)


# --------------------------------------------------------------------------- rejected certificates


def test_expired_certificate_is_rejected_by_verifying_client(
    files: TlsFiles, tmp_path: Path, serve
) -> None:
    now = datetime.now(timezone.utc)
    ca = (files.ca_cert.read_bytes(), files.ca_cert.with_name("ca.key").read_bytes())
    make_self_signed_cert(
        tmp_path / "old.pem", tmp_path / "old.key", "localhost",
        not_before=now - timedelta(days=60), not_after=now - timedelta(days=1), ca=ca,
    )
    ctx = server_context(tmp_path / "old.pem", tmp_path / "old.key")
    server = serve(lambda: ctx)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired") as err:
        connect(server.port, client_context(files.ca_cert))
    assert err.value.verify_code == 10  # X509_V_ERR_CERT_HAS_EXPIRED


def test_other_host_certificate_is_rejected_by_verifying_client(
    files: TlsFiles, tmp_path: Path, serve
) -> None:
    ca = (files.ca_cert.read_bytes(), files.ca_cert.with_name("ca.key").read_bytes())
    make_self_signed_cert(tmp_path / "o.pem", tmp_path / "o.key", "other.example", ca=ca)
    ctx = server_context(tmp_path / "o.pem", tmp_path / "o.key")
    server = serve(lambda: ctx)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch") as err:
        connect(server.port, client_context(files.ca_cert))
    assert err.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


def test_untrusted_self_signed_certificate_is_rejected(
    files: TlsFiles, tmp_path: Path, serve
) -> None:
    make_self_signed_cert(tmp_path / "s.pem", tmp_path / "s.key", "localhost")
    ctx = server_context(tmp_path / "s.pem", tmp_path / "s.key")
    server = serve(lambda: ctx)
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        connect(server.port, client_context(files.ca_cert))
    assert err.value.verify_code == 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT


# --------------------------------------------------------------------------- configuration errors


def _assert_no_key_material(message: str, key: Path) -> None:
    assert "PRIVATE KEY" not in message
    for line in key.read_text(errors="replace").splitlines():
        if line and not line.startswith("-----"):
            assert line not in message


def test_missing_certificate(files: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"certificate file .*nope\.pem does not exist"):
        server_context(tmp_path / "nope.pem", files.key)


def test_missing_key(files: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"private key file .*nope\.key does not exist"):
        server_context(files.cert, tmp_path / "nope.key")


def test_unreadable_certificate(files: TlsFiles, tmp_path: Path) -> None:
    (tmp_path / "dir.pem").mkdir()
    with pytest.raises(TlsConfigError, match=r"dir\.pem is a directory"):
        server_context(tmp_path / "dir.pem", files.key)


def test_garbage_certificate(files: TlsFiles, tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("hello\n")
    with pytest.raises(TlsConfigError, match=r"bad\.pem does not contain a valid PEM certificate"):
        server_context(tmp_path / "bad.pem", files.key)


def test_garbage_key(files: TlsFiles, tmp_path: Path) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    (tmp_path / "bad.key").write_text(pem)
    with pytest.raises(TlsConfigError, match=r"bad\.key does not contain a valid PEM private key"):
        server_context(files.cert, tmp_path / "bad.key")


def test_mismatched_key_names_both_files_and_no_secret(files: TlsFiles, tmp_path: Path) -> None:
    make_self_signed_cert(tmp_path / "x.pem", tmp_path / "x.key", "x.example")
    with pytest.raises(TlsConfigError) as err:
        server_context(files.cert, tmp_path / "x.key")
    message = str(err.value)
    assert "does not match" in message
    assert str(files.cert) in message and str(tmp_path / "x.key") in message
    _assert_no_key_material(message, tmp_path / "x.key")


def test_encrypted_key_fails_fast_without_prompting(files: TlsFiles, tmp_path: Path) -> None:
    encrypted = load_private_key(files.key).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "enc.key").write_bytes(encrypted)
    with pytest.raises(TlsConfigError, match=r"enc\.key is encrypted"):
        server_context(files.cert, tmp_path / "enc.key")


# --------------------------------------------------------------------------- reload


def test_reload_swaps_certificate_for_new_connections(files: TlsFiles, serve) -> None:
    tls = ReloadableTlsContext(files.cert, files.key)
    server = serve(lambda: tls.context)  # STARTTLS style: context read per connection
    first = serial_seen(server.port, files.ca_cert)
    assert first == serial_of(files.cert)
    reissue(files, ["mail.example.com"])
    old_context = tls.context
    assert tls.reload() is tls.context is not old_context
    assert tls.generation == 2
    second = serial_seen(server.port, files.ca_cert)
    assert second == serial_of(files.cert) != first


def test_reload_reaches_a_listener_built_with_the_old_context(files: TlsFiles, serve) -> None:
    tls = ReloadableTlsContext(files.cert, files.key)
    fixed = tls.context  # implicit TLS style: one context captured at startup
    server = serve(lambda: fixed)
    established = connect(server.port, client_context(files.ca_cert))
    first = peer_serial(established)
    reissue(files, ["mail.example.com"])
    tls.reload()
    assert serial_seen(server.port, files.ca_cert) == serial_of(files.cert) != first
    with established:  # the connection made before the reload keeps working
        established.sendall(b"still here")
        assert established.recv(32) == b"still here"
        assert peer_serial(established) == first


def test_reload_with_broken_key_keeps_old_context(files: TlsFiles, serve) -> None:
    tls = ReloadableTlsContext(files.cert, files.key)
    server = serve(lambda: tls.context)
    before = serial_seen(server.port, files.ca_cert)
    old_context = tls.context
    files.key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(TlsConfigError, match=str(files.key)):
        tls.reload()
    assert tls.context is old_context and tls.generation == 1
    assert serial_seen(server.port, files.ca_cert) == before


def test_reload_with_mismatched_pair_keeps_old_context(
    files: TlsFiles, tmp_path: Path, serve
) -> None:
    tls = ReloadableTlsContext(files.cert, files.key)
    server = serve(lambda: tls.context)
    before = serial_seen(server.port, files.ca_cert)
    make_self_signed_cert(tmp_path / "x.pem", tmp_path / "x.key", "x.example")
    files.key.write_bytes((tmp_path / "x.key").read_bytes())
    with pytest.raises(TlsConfigError, match="does not match"):
        tls.reload()
    assert serial_seen(server.port, files.ca_cert) == before


def test_reloadable_startup_failure_raises(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="does not exist"):
        ReloadableTlsContext(tmp_path / "a.pem", tmp_path / "a.key")


def test_describe_tls_without_session() -> None:
    assert describe_tls(None) == ""
