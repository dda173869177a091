"""SASL mechanisms in isolation: PLAIN (RFC 4616), LOGIN, and the base64 framing.

Why separately from the protocol tests: mechanisms are the extension point
(token mechanisms and SCRAM come later), so their contract -- challenge,
credentials or malformed, never a secret in a repr -- is pinned on its own.
"""

from __future__ import annotations

import pytest

from smtpgate.smtp.sasl import (
    DEFAULT_MECHANISMS,
    Challenge,
    LoginMechanism,
    Malformed,
    PlainMechanism,
    SaslCredentials,
    SaslMechanism,
    decode_response,
    decode_text,
    encode_challenge,
)


class TestPlain:
    def test_initial_response(self) -> None:
        step = PlainMechanism().start(b"\0user\0secret")
        assert step == SaslCredentials(authzid="", login="user", secret="secret")

    def test_authzid(self) -> None:
        step = PlainMechanism().start(b"admin\0user\0secret")
        assert step == SaslCredentials(authzid="admin", login="user", secret="secret")

    def test_no_initial_response_asks_with_empty_challenge(self) -> None:
        mechanism = PlainMechanism()
        assert mechanism.start(None) == Challenge(b"")
        assert mechanism.step(b"\0user\0secret") == SaslCredentials("", "user", "secret")

    def test_password_may_contain_spaces_and_utf8(self) -> None:
        step = PlainMechanism().start("\0j\u00f6rg\0correct horse \u00e9".encode())
        assert step == SaslCredentials("", "j\u00f6rg", "correct horse \u00e9")

    @pytest.mark.parametrize(
        "message",
        [b"", b"\0user", b"user\0secret", b"\0\0secret", b"\0user\0", b"a\0b\0c\0d"],
    )
    def test_malformed(self, message: bytes) -> None:
        assert PlainMechanism().start(message) == Malformed("Invalid PLAIN response")

    def test_invalid_utf8(self) -> None:
        step = PlainMechanism().start(b"\0user\0\xc3(")
        assert step == Malformed("Invalid UTF-8 in PLAIN response")

    def test_only_one_response(self) -> None:
        mechanism = PlainMechanism()
        mechanism.start(b"\0user\0secret")
        assert isinstance(mechanism.step(b"\0user\0secret"), Malformed)


class TestLogin:
    def test_prompts(self) -> None:
        mechanism = LoginMechanism()
        assert mechanism.start(None) == Challenge(b"Username:")
        assert mechanism.step(b"user") == Challenge(b"Password:")
        assert mechanism.step(b"secret") == SaslCredentials("", "user", "secret")

    def test_initial_response_is_the_username(self) -> None:
        mechanism = LoginMechanism()
        assert mechanism.start(b"user") == Challenge(b"Password:")
        assert mechanism.step(b"secret") == SaslCredentials("", "user", "secret")

    @pytest.mark.parametrize("username", [b"", b"us\0er"])
    def test_bad_username(self, username: bytes) -> None:
        assert LoginMechanism().start(username) == Malformed("Invalid LOGIN username")

    @pytest.mark.parametrize("password", [b"", b"se\0cret"])
    def test_bad_password(self, password: bytes) -> None:
        mechanism = LoginMechanism()
        mechanism.start(b"user")
        assert mechanism.step(password) == Malformed("Invalid LOGIN password")

    def test_invalid_utf8(self) -> None:
        assert LoginMechanism().start(b"\xff") == Malformed("Invalid UTF-8 in LOGIN response")
        mechanism = LoginMechanism()
        mechanism.start(b"user")
        assert mechanism.step(b"\xff") == Malformed("Invalid UTF-8 in LOGIN response")

    def test_no_step_after_completion(self) -> None:
        mechanism = LoginMechanism()
        mechanism.start(b"user")
        mechanism.step(b"secret")
        assert isinstance(mechanism.step(b"again"), Malformed)

    def test_no_step_after_failure(self) -> None:
        mechanism = LoginMechanism()
        mechanism.start(b"")
        assert isinstance(mechanism.step(b"secret"), Malformed)


class TestCredentials:
    def test_repr_redacts_secret(self) -> None:
        credentials = SaslCredentials("", "user", "hunter2")
        assert "hunter2" not in repr(credentials)
        assert "hunter2" not in str(credentials)
        assert "user" in repr(credentials)


class TestRegistry:
    def test_default_mechanisms(self) -> None:
        assert set(DEFAULT_MECHANISMS) == {"PLAIN", "LOGIN", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"}
        for name, factory in DEFAULT_MECHANISMS.items():
            mechanism = factory()
            assert isinstance(mechanism, SaslMechanism)
            assert mechanism.name == name

    def test_registry_is_read_only(self) -> None:
        with pytest.raises(TypeError):
            DEFAULT_MECHANISMS["X"] = PlainMechanism  # type: ignore[index]

    def test_fresh_instance_per_exchange(self) -> None:
        factory = DEFAULT_MECHANISMS["LOGIN"]
        assert factory() is not factory()


class TestFraming:
    @pytest.mark.parametrize(
        ("text", "data"),
        [(b"", b""), (b"dXNlcg==", b"user"), (b"AHVzZXIAcHc=", b"\0user\0pw")],
    )
    def test_decode(self, text: bytes, data: bytes) -> None:
        assert decode_response(text) == data

    @pytest.mark.parametrize("text", [b"=", b"dXNlcg", b"dXNl cg==", b"dXNlcg==dXNlcg==", b"*"])
    def test_decode_rejects(self, text: bytes) -> None:
        assert decode_response(text) is None

    def test_encode(self) -> None:
        assert encode_challenge(b"") == ""
        assert encode_challenge(b"Username:") == "VXNlcm5hbWU6"
        assert encode_challenge(b"Password:") == "UGFzc3dvcmQ6"

    def test_decode_text(self) -> None:
        assert decode_text("\u00e9".encode()) == "\u00e9"
        assert decode_text(b"\xe9") is None
