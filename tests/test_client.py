"""`smtpgate.client.send`: a script that names a profile or reads the environment, and holds no secret."""

from __future__ import annotations

import traceback
from email.message import EmailMessage
from pathlib import Path

import pytest

from smtpgate import client
from smtpgate.client import SendError, ServerSettings, send, send_with
from smtpgate.profiles import Profile, ProfileError, ProfileStore
from tests.doctor.fakes import FakeSmtp, self_signed
from tests.smtp.server_harness import RunningServer, free_port

WRONG = "sgp_wrong-secret-that-must-not-leak"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profiles in the test's folder, no keyring, none of the container variables."""
    monkeypatch.setenv("SMTPGATE_PROFILES", str(tmp_path / "cfg" / "profiles.toml"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for name in (client.URL_ENV, client.PASSWORD_ENV, client.PASSWORD_FILE_ENV, client.PROFILE_ENV, client.CAFILE_ENV):
        monkeypatch.delenv(name, raising=False)


def note(subject: str, sender: str | None = None) -> EmailMessage:
    message = EmailMessage()
    if sender:
        message["From"] = sender
    message["To"] = "bob@example.org"
    message["Subject"] = subject
    message.set_content("Hello from a script.\n")
    return message


def captured(server: RunningServer, reply: str) -> bytes:
    return server.runtime.capture.open_raw(reply.split()[-1]).read()


def test_send_through_a_saved_profile(server: RunningServer) -> None:
    secret = server.account_with_app_password("script1@example.com")
    ProfileStore().add(Profile("billing", "127.0.0.1", server.submission_port, "starttls", "script1@example.com",
                               cafile=str(server.ca)), secret)
    result = send(note("from a profile"), profile="billing")
    assert result.reply.startswith("250 2.0.0 Ok: queued as ") and result.recipients == ["bob@example.org"]
    raw = captured(server, result.reply)
    assert b"From: script1@example.com" in raw  # filled in from the login
    assert b"Message-ID: " in raw and b"Date: " in raw and secret.encode() not in raw


def test_profile_named_by_the_environment(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = server.account_with_app_password("script2@example.com")
    ProfileStore().add(Profile("ops", "127.0.0.1", server.submissions_port, "tls", "script2@example.com",
                               sender="script2@example.com", cafile=str(server.ca)), secret)
    monkeypatch.setenv(client.PROFILE_ENV, "ops")
    assert send(note("by SMTPGATE_PROFILE")).reply.startswith("250 ")


def test_container_form_with_a_password_file(server: RunningServer, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = server.account_with_app_password("script3@example.com")
    password = tmp_path / "smtp-password"
    password.write_text(secret + "\n")
    password.chmod(0o400)
    monkeypatch.setenv(client.URL_ENV, f"smtps://script3%40example.com@127.0.0.1:{server.submissions_port}")
    monkeypatch.setenv(client.PASSWORD_FILE_ENV, str(password))
    monkeypatch.setenv(client.CAFILE_ENV, str(server.ca))
    result = send(note("from a container"))
    assert b"Subject: from a container" in captured(server, result.reply)


def test_container_form_starttls_with_a_password_variable(server: RunningServer) -> None:
    secret = server.account_with_app_password("script4@example.com")
    env = {client.URL_ENV: f"smtp://script4@example.com@127.0.0.1:{server.submission_port}",
           client.PASSWORD_ENV: secret, client.CAFILE_ENV: str(server.ca)}
    settings, password = client.settings_from_env(env)
    assert (settings.tls, settings.user, settings.port) == ("starttls", "script4@example.com", server.submission_port)
    assert send_with(settings, password, note("starttls")).reply.startswith("250 ")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({client.URL_ENV: "smtps://u:hunter2@mail.example.test"}, "holds a password"),
        ({client.URL_ENV: "https://mail.example.test"}, "expected smtps:// or smtp://"),
        ({client.URL_ENV: "smtps://u@mail.example.test"}, "no password is given"),
        ({client.URL_ENV: "smtps://"}, "no server name"),
    ],
)
def test_bad_environment_is_explained(env: dict[str, str], words: str) -> None:
    with pytest.raises(ProfileError) as caught:
        client.settings_from_env(env)
    assert words in str(caught.value) and "hunter2" not in str(caught.value) + caught.value.hint


def test_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("whatever\n")
    password.chmod(0o644)
    with pytest.raises(ProfileError) as caught:
        client.settings_from_env({client.URL_ENV: "smtps://u@h", client.PASSWORD_FILE_ENV: str(password)})
    assert "readable by others" in str(caught.value) and "chmod 600" in caught.value.hint


def test_nothing_configured_names_the_ways() -> None:
    with pytest.raises(ProfileError) as caught:
        send(note("nowhere", "a@example.test"))
    assert "SMTPGATE_URL" in caught.value.hint and "profile" in caught.value.hint


def test_wrong_password_raises_an_explained_error_without_the_secret(server: RunningServer) -> None:
    server.account_with_app_password("script5@example.com")
    settings = ServerSettings("127.0.0.1", server.submission_port, "starttls", "script5@example.com", cafile=str(server.ca))
    with pytest.raises(SendError) as caught:
        send_with(settings, WRONG, note("nope"))
    error = caught.value
    assert (error.code, error.stage) == (535, "auth") and "5.7.8" in error.reply
    assert "does not accept this login and password" in error.cause
    shown = "".join(traceback.format_exception(error)) + str(error) + repr(error.to_json())
    assert WRONG not in shown


def test_sender_outside_the_credential_scope(server: RunningServer) -> None:
    secret = server.account_with_app_password("script6@example.com", allowed_senders=("script6@example.com",))
    settings = ServerSettings("127.0.0.1", server.submission_port, "starttls", "script6@example.com", cafile=str(server.ca))
    with pytest.raises(SendError) as caught:
        send_with(settings, secret, note("spoof", "ceo@example.com"), sender="ceo@example.com")
    assert (caught.value.code, caught.value.stage) == (553, "mail") and "may not send as" in caught.value.cause


def test_untrusted_certificate(server: RunningServer) -> None:
    settings = ServerSettings("127.0.0.1", server.submissions_port, "tls", "x@example.com")
    with pytest.raises(SendError) as caught:
        send_with(settings, "irrelevant-secret", note("x", "x@example.com"))
    assert caught.value.stage == "tls" and "--cafile" in caught.value.fix


def test_server_without_starttls_gets_no_password(tmp_path: Path) -> None:
    with FakeSmtp(starttls=False, auth_before_tls=True) as fake:
        settings = ServerSettings("127.0.0.1", fake.port, "starttls", "x@example.test")
        with pytest.raises(SendError) as caught:
            send_with(settings, WRONG, note("x", "x@example.test"), timeout=5)
        assert not any(line.startswith("AUTH") for line in fake.received)
    assert caught.value.stage == "starttls" and "does not offer STARTTLS" in caught.value.cause


def test_plaintext_with_a_login_is_refused() -> None:
    with pytest.raises(ProfileError, match="without TLS"):
        send_with(ServerSettings("127.0.0.1", 25, "none", "x@example.test"), WRONG, note("x", "x@example.test"))


def test_connection_refused(tmp_path: Path) -> None:
    settings = ServerSettings("127.0.0.1", free_port(), "starttls")
    with pytest.raises(SendError) as caught:
        send_with(settings, "", note("x", "x@example.test"), timeout=5)
    assert caught.value.stage == "connect" and "nothing listens" in caught.value.cause


def test_self_signed_peer_trusted_by_cafile(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    with FakeSmtp(cert=cert) as fake:
        settings = ServerSettings("127.0.0.1", fake.port, "starttls", "x@example.test", cafile=str(cert[0]))
        result = send_with(settings, "fake-accepts-anything", note("x"), timeout=5)
    assert result.reply == "250 2.0.0 Ok: queued as FAKE1"
    after_tls = [line.upper() for line in fake.received[fake.received.index("STARTTLS"):]]
    assert any(line.startswith("AUTH PLAIN ") for line in after_tls)
    assert any(line.startswith("MAIL FROM:<X@EXAMPLE.TEST>") for line in after_tls)
