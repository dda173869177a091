"""Hashes from Dovecot, made by the real `doveadm pw`, verified and then rehashed to argon2id."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

import pytest

from smtpgate.credentials import AuthFailure, CredentialService, FailureReason, Principal
from smtpgate.credentials import imported_hashes as ih
from smtpgate.credentials.importing import ImportProblem, ImportRecord, import_records, read_csv, read_dovecot_passwd
from tests.conftest import need

PASSWORD = "Grüne Äpfel, 7 Stück; teuer!"  # no ":", the passwd-file separator
VERIFIABLE = ["SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "CRYPT", "ARGON2I", "ARGON2ID",
              "SSHA512", "SSHA256", "SSHA", "SMD5", "SHA512", "SHA256", "SHA1", "SHA", "MD5", "LDAP-MD5",
              "PLAIN-MD5", "PBKDF2", "SCRAM-SHA-1", "SCRAM-SHA-256"]
REFUSED = ["CRAM-MD5", "HMAC-MD5", "DIGEST-MD5", "PLAIN-MD4", "DES-CRYPT"]


def doveadm(scheme: str, password: str = PASSWORD) -> str:
    need(shutil.which("doveadm") is not None, "doveadm (dovecot-core) is not installed")
    return subprocess.run(["doveadm", "pw", "-s", scheme, "-u", "alice@example.com", "-p", password],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_every_scheme_doveadm_offers_is_either_verified_or_refused_with_a_reason() -> None:
    need(shutil.which("doveadm") is not None, "doveadm (dovecot-core) is not installed")
    offered = subprocess.run(["doveadm", "pw", "-l"], capture_output=True, text=True, check=True).stdout.split()
    plaintext = {"PLAIN", "CLEAR", "CLEARTEXT"}
    unlisted = set(offered) - set(VERIFIABLE) - set(REFUSED) - plaintext - {"OTP", "PLAIN-TRUNC"}
    assert not unlisted, f"doveadm offers schemes this test does not cover: {unlisted}"


@pytest.mark.parametrize("scheme", VERIFIABLE)
def test_doveadm_hashes_verify_the_right_password_only(scheme: str) -> None:
    stored, plaintext = ih.normalise(doveadm(scheme))
    assert plaintext is None and ih.scheme_of(stored)
    assert ih.verify(stored, PASSWORD)
    assert not ih.verify(stored, PASSWORD + "x")
    assert not ih.verify(stored, "")


@pytest.mark.parametrize("scheme", REFUSED)
def test_unverifiable_schemes_are_refused_with_the_reason(scheme: str) -> None:
    with pytest.raises(ih.UnsupportedHash) as exc:
        ih.normalise(doveadm(scheme))
    assert str(exc.value)


def test_bare_crypt_strings_and_plaintext() -> None:
    bare = doveadm("SHA512-CRYPT").removeprefix("{SHA512-CRYPT}")
    stored, _ = ih.normalise(bare)
    assert stored == "{CRYPT}" + bare and ih.verify(stored, PASSWORD)
    assert ih.normalise("{PLAIN}" + PASSWORD) == ("", PASSWORD)
    for bad in ["{SHA}not base64!", "{SSHA512}AAAA", "$6$salt-only", "{NOPE}x", "abcdefghijklm", "{PLAIN}"]:
        with pytest.raises(ih.UnsupportedHash):
            ih.normalise(bad)


def test_dovecot_passwd_file_reader_numbers_each_problem() -> None:
    text = "\n".join([
        "# exported from dovecot",
        f"alice@example.com:{doveadm('SHA512-CRYPT')}:1000:1000::/home/alice::",
        "bob:{SSHA}AAAA::",
        "carol@example.com:{CRAM-MD5}38b57fd1a0c4b46c814aa05f20318edd71c455380655f2c0ac35c5b359528d29",
        "",
        "not a passwd line",
        f"dave:{{PLAIN}}{PASSWORD}",
        "erin@example.com:",
    ])
    items = list(read_dovecot_passwd(text, domain="example.org"))
    assert [type(i).__name__ for i in items] == ["ImportRecord", "ImportProblem", "ImportProblem",
                                                 "ImportProblem", "ImportRecord", "ImportProblem"]
    assert [i.line for i in items] == [2, 3, 4, 6, 7, 8]
    assert isinstance(items[4], ImportRecord) and items[4].login == "dave@example.org" and items[4].password == PASSWORD
    assert isinstance(items[1], ImportProblem) and "too short" in items[1].reason


def test_csv_reader_takes_a_hash_or_a_password_column() -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["email", "hash", "password"], ["alice@example.com", doveadm("SSHA512"), ""],
                                  ["bob@example.com", "", PASSWORD], ["", "", "x"]])
    text = buffer.getvalue()
    items = list(read_csv(text))
    assert isinstance(items[0], ImportRecord) and items[0].scheme == "SSHA512"
    assert isinstance(items[1], ImportRecord) and items[1].password == PASSWORD
    assert isinstance(items[2], ImportProblem) and items[2].line == 4
    bad = list(read_csv("name,secret\nx,y\n"))
    assert isinstance(bad[0], ImportProblem) and "header" in bad[0].reason


def auth(service: CredentialService, login: str, secret: str) -> Principal | AuthFailure:
    return service.authenticate(login, secret, "192.0.2.1", True)


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "BLF-CRYPT", "ARGON2I", "SSHA512", "PBKDF2"])
def test_imported_hash_logs_in_and_is_rehashed_to_argon2id_at_first_success(service: CredentialService, scheme: str) -> None:
    text = f"alice@example.com:{doveadm(scheme)}\n"
    report = import_records(service, read_dovecot_passwd(text))
    assert [r.login for r in report.created] == ["alice@example.com"] and not report.problems
    failed = auth(service, "alice@example.com", "wrong")
    assert isinstance(failed, AuthFailure) and failed.reason is FailureReason.BAD_SECRET
    assert isinstance(auth(service, "alice@example.com", PASSWORD), Principal)
    assert isinstance(auth(service, "alice@example.com", PASSWORD), Principal)  # and again, now on argon2id
    from smtpgate.store.models import AccountRow, CredentialRow
    with service._store.session() as db:
        row = db.query(CredentialRow).join(AccountRow).filter(AccountRow.login == "alice@example.com").one()
        assert row.secret_hash.startswith("$argon2id$")


def test_reimporting_changes_nothing_and_dry_run_writes_nothing(service: CredentialService) -> None:
    text = f"alice@example.com:{doveadm('SSHA')}\nbob@example.com:{{PLAIN}}{PASSWORD}\nalice@example.com:{{PLAIN}}x\n"
    dry = import_records(service, read_dovecot_passwd(text), dry_run=True)
    assert len(dry.created) == 2 and len(dry.problems) == 1 and dry.problems[0].line == 3
    assert service.list_accounts() == []
    first = import_records(service, read_dovecot_passwd(text))
    assert len(first.created) == 2
    assert isinstance(auth(service, "bob@example.com", PASSWORD), Principal)
    second = import_records(service, read_dovecot_passwd(text))
    assert not second.created and len(second.existing) == 2
    assert isinstance(auth(service, "alice@example.com", PASSWORD), Principal)
