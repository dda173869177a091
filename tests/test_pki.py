"""The local CA and server certificates made by `smtpgate init`."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smtpgate.pki import (
    PkiError,
    TlsFiles,
    cert_to_pem,
    describe_certificate,
    ensure_local_ca_and_server_cert,
    issue_server_cert,
    key_to_pem,
    load_certificate,
    load_private_key,
    make_ca,
    make_local_ca_and_server_cert,
    make_self_signed_cert,
)

HOSTS = ["mail.example.com", "smtp.example.org"]
NOW = datetime.now(timezone.utc)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """Run a TLS handshake between two contexts in memory; raises on failure."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_obj = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_obj = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj in (("client", client_obj), ("server", server_obj)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def _server_ctx(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


def _client_ctx(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # what newer Pythons do by default
    return ctx


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    return make_local_ca_and_server_cert(tmp_path / "tls", HOSTS)


def test_creates_four_files_with_private_keys_0600(files: TlsFiles) -> None:
    tls_dir = files.cert.parent
    assert files == TlsFiles(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
    names = sorted(p.name for p in tls_dir.iterdir())
    assert names == ["ca.key", "ca.pem", "server.key", "server.pem"]
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((tls_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700


def test_ca_is_a_p256_ca_named_after_the_host(files: TlsFiles) -> None:
    ca = load_certificate(files.ca_cert)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "smtpgate local CA mail.example.com"
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature


def test_server_cert_is_signed_by_the_ca_with_every_name(files: TlsFiles) -> None:
    ca = load_certificate(files.ca_cert)
    chain = x509.load_pem_x509_certificates(files.cert.read_bytes())
    leaf = chain[0]
    assert [c.fingerprint(ca.signature_hash_algorithm) for c in chain[1:]] == [
        ca.fingerprint(ca.signature_hash_algorithm)
    ]
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [*HOSTS, "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = load_private_key(files.key)
    assert key.public_key() == leaf.public_key()


def test_validity_follows_days(tmp_path: Path) -> None:
    tls = make_local_ca_and_server_cert(tmp_path, ["a.example"], days=30)
    leaf = load_certificate(tls.cert)
    span = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=30) <= span <= timedelta(days=30, minutes=10)
    assert leaf.not_valid_before_utc <= datetime.now(timezone.utc)


@pytest.mark.parametrize("hostname", [*HOSTS, "localhost", "127.0.0.1", "::1"])
def test_openssl_client_accepts_it_with_hostname_checking(files: TlsFiles, hostname: str) -> None:
    _handshake(_server_ctx(files), _client_ctx(files.ca_cert), hostname)


def test_openssl_client_rejects_unknown_hostname(files: TlsFiles) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        _handshake(_server_ctx(files), _client_ctx(files.ca_cert), "other.example.net")
    assert err.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


def test_never_overwrites(files: TlsFiles) -> None:
    before = {p: p.read_bytes() for p in files.cert.parent.iterdir()}
    with pytest.raises(PkiError, match="refusing to overwrite"):
        make_local_ca_and_server_cert(files.cert.parent, HOSTS)
    assert {p: p.read_bytes() for p in files.cert.parent.iterdir()} == before


def test_ensure_keeps_existing_files(files: TlsFiles) -> None:
    before = {p: p.read_bytes() for p in files.cert.parent.iterdir()}
    again = ensure_local_ca_and_server_cert(files.cert.parent, ["different.example"])
    assert again == files
    assert {p: p.read_bytes() for p in files.cert.parent.iterdir()} == before


def test_ensure_creates_when_empty(tmp_path: Path) -> None:
    tls = ensure_local_ca_and_server_cert(tmp_path / "tls", ["x.example"])
    assert tls.ca_cert is not None and tls.ca_cert.exists() and tls.key.exists()


def test_ensure_reissues_server_cert_from_existing_ca(files: TlsFiles) -> None:
    ca_before = files.ca_cert.read_bytes()
    files.cert.unlink()
    files.key.unlink()
    again = ensure_local_ca_and_server_cert(files.cert.parent, ["new.example"])
    assert files.ca_cert.read_bytes() == ca_before
    load_certificate(again.cert).verify_directly_issued_by(load_certificate(files.ca_cert))
    assert "new.example" in describe_certificate(again.cert)["sans"]


def test_ensure_refuses_half_a_pair(files: TlsFiles) -> None:
    files.key.unlink()
    with pytest.raises(PkiError, match="server.key is missing"):
        ensure_local_ca_and_server_cert(files.cert.parent, HOSTS)
    assert not files.key.exists()


def test_ensure_accepts_operator_supplied_cert_without_ca(tmp_path: Path) -> None:
    make_self_signed_cert(tmp_path / "server.pem", tmp_path / "server.key", "mx.example")
    tls = ensure_local_ca_and_server_cert(tmp_path, ["mx.example"])
    assert tls == TlsFiles(None, tmp_path / "server.pem", tmp_path / "server.key")
    assert not (tmp_path / "ca.pem").exists()


def test_issue_server_cert_expired_and_other_host(tmp_path: Path) -> None:
    ca_cert, ca_key = make_ca("test CA")
    cert_pem, key_pem = issue_server_cert(
        ca_cert, ca_key, ["other.example"], NOW - timedelta(days=30), NOW - timedelta(days=1)
    )
    leaf = x509.load_pem_x509_certificate(cert_pem)
    assert leaf.not_valid_after_utc < NOW
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["other.example"]
    assert san.get_values_for_type(x509.IPAddress) == []
    assert b"PRIVATE KEY" in key_pem


def test_issue_server_cert_accepts_pem_bytes() -> None:
    ca_cert, ca_key = make_ca("test CA")
    cert_pem, _ = issue_server_cert(
        cert_to_pem(ca_cert), key_to_pem(ca_key), ["h.example"], NOW, NOW + timedelta(days=1)
    )
    x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(ca_cert)


def test_issue_server_cert_rejects_bad_period() -> None:
    ca_cert, ca_key = make_ca("test CA")
    with pytest.raises(PkiError):
        issue_server_cert(ca_cert, ca_key, ["h.example"], NOW, NOW - timedelta(days=1))


def test_make_self_signed_and_ca_signed_helpers(tmp_path: Path) -> None:
    make_self_signed_cert(tmp_path / "a.pem", tmp_path / "a.key", "a.example")
    info = describe_certificate(tmp_path / "a.pem")
    assert info["self_signed"] and info["chain_length"] == 1 and info["sans"] == ["a.example"]
    ca = make_ca("helper CA")
    make_self_signed_cert(tmp_path / "b.pem", tmp_path / "b.key", ["b.example"], ca=ca)
    info = describe_certificate(tmp_path / "b.pem")
    assert info["issuer"] == "CN=helper CA" and info["chain_length"] == 2
    with pytest.raises(PkiError, match="refusing to overwrite"):
        make_self_signed_cert(tmp_path / "b.pem", tmp_path / "b.key", "b.example")
    make_self_signed_cert(tmp_path / "b.pem", tmp_path / "b.key", "c.example", overwrite=True)
    assert describe_certificate(tmp_path / "b.pem")["sans"] == ["c.example"]


def test_describe_certificate(files: TlsFiles) -> None:
    info = describe_certificate(files.cert)
    assert info["subject"] == "CN=mail.example.com"
    assert info["issuer"] == "CN=smtpgate local CA mail.example.com"
    assert info["sans"] == [*HOSTS, "localhost", "127.0.0.1", "::1"]
    assert info["not_after"].tzinfo is not None and info["not_after"] > NOW
    leaf = load_certificate(files.cert)
    fingerprint = info["fingerprint_sha256"].replace(":", "").lower()
    assert fingerprint == leaf.fingerprint(hashes.SHA256()).hex()
    assert info["serial"] == format(leaf.serial_number, "x")
    assert info["is_ca"] is False and describe_certificate(files.ca_cert)["is_ca"] is True


def test_describe_certificate_errors(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="does not exist"):
        describe_certificate(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(PkiError, match="does not contain a PEM certificate"):
        describe_certificate(tmp_path / "junk.pem")


def test_pki_does_not_import_the_smtp_package() -> None:
    code = (
        "import sys, smtpgate.pki; "
        "bad = [m for m in sys.modules if m.startswith('smtpgate.smtp')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ensure_refuses_to_issue_from_an_expired_ca(tmp_path: Path) -> None:
    ca_cert, ca_key = make_ca("old CA", not_before=NOW - timedelta(days=30), not_after=NOW)
    (tmp_path / "ca.pem").write_bytes(cert_to_pem(ca_cert))
    (tmp_path / "ca.key").write_bytes(key_to_pem(ca_key))
    with pytest.raises(PkiError, match="ca.pem expires"):
        ensure_local_ca_and_server_cert(tmp_path, ["x.example"])
    assert not (tmp_path / "server.pem").exists()
