"""XOAUTH2, OAUTHBEARER (RFC 7628) and SCRAM-SHA-256 (RFC 5802, 7677) as mechanisms, and
the protocol paths they added: keys supplied mid-exchange, success data before 235, the
automatic JSON error challenge, and AUTH lines long enough for a 16 KiB token.

The SCRAM client side is scramp's, an independent implementation of the RFC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp import ScramClient, ScramMechanism

from smtpgate.smtp.protocol import (
    AUTH_CREDENTIALS_INVALID,
    NEED_DATA,
    PAUSED,
    AuthAttempt,
    AuthKeysNeeded,
    ProtocolLimits,
    ProtocolUsageError,
    ServerConnection,
    ServerFeatures,
    State,
)
from smtpgate.smtp.sasl import (
    DEFAULT_MECHANISMS,
    Challenge,
    Malformed,
    NeedKeys,
    OAuthBearerMechanism,
    SaslCredentials,
    ScramCandidate,
    ScramKeys,
    ScramSha256Mechanism,
    XOAuth2Mechanism,
)

SALT = bytes(range(16))


def keys_for(*pairs: tuple[str, str], iterations: int = 4096) -> ScramKeys:
    mechanism = ScramMechanism("SCRAM-SHA-256")
    candidates = []
    for ref, password in pairs:
        _, stored, server, _ = mechanism.make_auth_info(password, iterations, SALT)
        candidates.append(ScramCandidate(ref, stored, server))
    return ScramKeys(SALT, iterations, tuple(candidates))


class AuthzidScramClient:
    """RFC 5802 client side, written out, for what scramp's client cannot send (an authzid)."""

    def __init__(self, login: str, password: str, *, authzid: str = "") -> None:
        self.login, self.password = login, password
        self.gs2_header = f"n,a={authzid}," if authzid else "n,,"
        self.nonce = "rOprNGfwEbeRWgbNEkqO"
        self.expected_server_final = b""

    def first(self) -> bytes:
        self.bare = f"n={self.login},r={self.nonce}"
        return (self.gs2_header + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        without_proof = f"c={base64.b64encode(self.gs2_header.encode()).decode()},r={attrs['r']}"
        auth = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.expected_server_final = b"v=" + base64.b64encode(hmac.new(server_key, auth, hashlib.sha256).digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


class TestXOAuth2:
    def test_parses_user_and_token(self) -> None:
        step = XOAuth2Mechanism().start(b"user=me@example.org\x01auth=Bearer abc.def.ghi\x01\x01")
        assert step == SaslCredentials(authzid="", login="me@example.org", secret="abc.def.ghi")

    def test_scheme_is_case_insensitive(self) -> None:
        step = XOAuth2Mechanism().start(b"user=a@b.c\x01auth=bearer tok\x01\x01")
        assert isinstance(step, SaslCredentials) and step.secret == "tok"

    @pytest.mark.parametrize("message", [
        b"user=a@b.c\x01auth=Bearer tok\x01",          # missing the final ^A
        b"auth=Bearer tok\x01\x01",                      # no user
        b"user=a@b.c\x01auth=Basic dG9r\x01\x01",      # not a bearer token
        b"user=a@b.c\x01auth=Bearer \x01\x01",          # empty token
        b"user=a@b.c\x01auth=Bearer a b\x01\x01",       # space inside
        b"user=a@b.c\x01user=x@y.z\x01auth=Bearer t\x01\x01",  # repeated key
        b"user=a@b.c\x01auth=Bearer \xff\x01\x01",      # not UTF-8
    ])
    def test_malformed(self, message: bytes) -> None:
        assert XOAuth2Mechanism().start(message) == Malformed("Invalid XOAUTH2 response")

    def test_no_initial_response_and_one_message_only(self) -> None:
        mechanism = XOAuth2Mechanism()
        assert mechanism.start(None) == Challenge(b"")
        assert isinstance(mechanism.step(b"user=a@b.c\x01auth=Bearer t\x01\x01"), SaslCredentials)
        assert isinstance(mechanism.step(b"user=a@b.c\x01auth=Bearer t\x01\x01"), Malformed)

    def test_error_challenge_is_googles_json(self) -> None:
        assert json.loads(XOAuth2Mechanism().failure_challenge() or b"") == {"status": "401", "schemes": "bearer"}

    def test_repr_never_shows_the_token(self) -> None:
        step = XOAuth2Mechanism().start(b"user=a@b.c\x01auth=Bearer s3cr3t-token\x01\x01")
        assert "s3cr3t-token" not in repr(step)


class TestOAuthBearer:
    def test_rfc7628_example(self) -> None:
        message = (b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
                   b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01")
        step = OAuthBearerMechanism().start(message)
        assert step == SaslCredentials("user@example.com", "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==")

    def test_without_authzid_the_login_is_empty(self) -> None:
        step = OAuthBearerMechanism().start(b"n,,\x01auth=Bearer tok\x01\x01")
        assert step == SaslCredentials("", "", "tok")

    def test_escaped_authzid(self) -> None:
        step = OAuthBearerMechanism().start(b"y,a=od=2Cd=3Dx@example.com,\x01auth=Bearer t\x01\x01")
        assert isinstance(step, SaslCredentials) and step.login == "od,d=x@example.com"

    @pytest.mark.parametrize(("message", "text"), [
        (b"p=tls-unique,,\x01auth=Bearer t\x01\x01", "Channel binding is not supported"),
        (b"x,,\x01auth=Bearer t\x01\x01", "Invalid GS2 header"),
        (b"n,a=bad=name,\x01auth=Bearer t\x01\x01", "Invalid GS2 header"),
        (b"n,,\x01host=h\x01\x01", "Invalid OAUTHBEARER response"),
        (b"n,,auth=Bearer t", "Invalid OAUTHBEARER response"),
    ])
    def test_malformed(self, message: bytes, text: str) -> None:
        assert OAuthBearerMechanism().start(message) == Malformed(text)

    def test_error_challenge_is_rfc7628_json(self) -> None:
        body = json.loads(OAuthBearerMechanism().failure_challenge() or b"")
        assert body["status"] == "invalid_token" and body["schemes"] == "bearer"


class TestScram:
    def exchange(self, password: str, keys: ScramKeys, username: str = "user@example.org"):
        client = ScramClient(["SCRAM-SHA-256"], username, password)
        mechanism = ScramSha256Mechanism()
        need = mechanism.start(client.get_client_first().encode())
        assert need == NeedKeys(authzid="", login=username)
        first = mechanism.supply(keys)
        assert isinstance(first, Challenge)
        client.set_server_first(first.data.decode())
        result = mechanism.step(client.get_client_final().encode())
        return client, mechanism, result

    def test_right_password_proves_its_candidate(self) -> None:
        client, mechanism, result = self.exchange("pencil", keys_for(("ap_1", "other"), ("pw_1", "pencil")))
        assert result == SaslCredentials(authzid="", login="user@example.org", secret="", proven="pw_1")
        client.set_server_final(mechanism.success_data().decode())  # raises if the server signature is wrong

    def test_app_password_candidate(self) -> None:
        _, _, result = self.exchange("sgp_app", keys_for(("pw_1", "pencil"), ("ap_9", "sgp_app")))
        assert isinstance(result, SaslCredentials) and result.proven == "ap_9"

    def test_wrong_password_proves_nothing(self) -> None:
        _, mechanism, result = self.exchange("not-the-pencil", keys_for(("pw_1", "pencil")))
        assert isinstance(result, SaslCredentials) and result.proven is None and result.secret == ""
        assert mechanism.success_data() is None

    def test_unknown_login_gets_a_normal_looking_exchange(self) -> None:
        _, _, result = self.exchange("whatever", ScramKeys(SALT, 4096, ()))
        assert isinstance(result, SaslCredentials) and result.proven is None

    def test_escaped_username(self) -> None:
        client = ScramClient(["SCRAM-SHA-256"], "a,b=c@example.org", "pw")
        assert ScramSha256Mechanism().start(client.get_client_first().encode()) == NeedKeys("", "a,b=c@example.org")

    @pytest.mark.parametrize("message", [b"n,,r=abc", b"n,,m=ext,n=u,r=abc", b"p=tls-unique,,n=u,r=abc", b"\xff,,n=u,r=x", b"n,,n=,r=abc"])
    def test_malformed_client_first(self, message: bytes) -> None:
        assert isinstance(ScramSha256Mechanism().start(message), Malformed)

    def test_nonce_must_be_the_servers(self) -> None:
        client = ScramClient(["SCRAM-SHA-256"], "u@example.org", "pencil")
        mechanism = ScramSha256Mechanism(server_nonce="fixed")
        mechanism.start(client.get_client_first().encode())
        mechanism.supply(keys_for(("pw", "pencil")))
        forged = b"c=biws,r=someone-elses-nonce,p=" + base64.b64encode(bytes(32))
        assert isinstance(mechanism.step(forged), Malformed)

    def test_authzid_is_passed_on_and_the_proof_covers_the_real_gs2_header(self) -> None:
        """GSASL (mutt) sends ``n,a=<login>,``: RFC 5802 allows it, the application decides."""
        mechanism = ScramSha256Mechanism()
        client = AuthzidScramClient("alice@example.com", "pencil", authzid="alice@example.com")
        assert mechanism.start(client.first()) == NeedKeys(authzid="alice@example.com", login="alice@example.com")
        first = mechanism.supply(keys_for(("pw_1", "pencil")))
        assert isinstance(first, Challenge)
        result = mechanism.step(client.final(first.data))
        assert result == SaslCredentials(authzid="alice@example.com", login="alice@example.com", secret="", proven="pw_1")
        assert mechanism.success_data() == client.expected_server_final

    def test_a_channel_binding_that_is_not_the_gs2_header_is_refused(self) -> None:
        mechanism = ScramSha256Mechanism()
        client = AuthzidScramClient("alice@example.com", "pencil", authzid="alice@example.com")
        mechanism.start(client.first())
        first = mechanism.supply(keys_for(("pw_1", "pencil")))
        assert isinstance(first, Challenge)
        client.gs2_header = "n,,"  # the client-first said a=alice@example.com
        assert mechanism.step(client.final(first.data)) == Malformed("Invalid SCRAM channel binding")

    def test_supply_only_when_asked(self) -> None:
        assert isinstance(ScramSha256Mechanism().supply(keys_for()), Malformed)
        assert isinstance(XOAuth2Mechanism().supply(keys_for()), Malformed)

    def test_keys_never_in_repr(self) -> None:
        keys = keys_for(("pw_1", "pencil"))
        assert keys.candidates[0].stored_key.hex() not in repr(keys)


# ---------------------------------------------------------------- the protocol side


def connect(*mechanisms: str, **limits: int) -> ServerConnection:
    conn = ServerConnection(
        ServerFeatures("mx.example.test", tls_active=True, auth_mechanisms=mechanisms),
        ProtocolLimits(**limits),
    )
    conn.start()
    conn.receive_data(b"EHLO client.example.org\r\n")
    assert conn.next_event() is not None
    conn.data_to_send()
    return conn


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def pump(conn: ServerConnection):
    event = conn.next_event()
    while event is not NEED_DATA and event is not PAUSED and not isinstance(event, (AuthAttempt, AuthKeysNeeded)):
        event = conn.next_event()
    return event


class TestProtocolPaths:
    def test_a_16_kib_token_fits_the_auth_line(self) -> None:
        token = "t" * 16 * 1024 + "x" * 512  # over 16 KiB: the application refuses it by name
        conn = connect("XOAUTH2")
        conn.receive_data(b"AUTH XOAUTH2 " + b64(f"user=a@b.c\x01auth=Bearer {token}\x01\x01".encode()) + b"\r\n")
        event = pump(conn)
        assert isinstance(event, AuthAttempt) and event.secret == token

    @pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "continuation"])
    def test_a_30_kb_token_fits_the_32_kib_auth_limit(self, initial: bool) -> None:
        """32 KiB of SASL response; its base64 line is a third longer."""
        token = "t" * 30_000
        blob = b64(f"user=a@b.c\x01auth=Bearer {token}\x01\x01".encode())
        conn = connect("XOAUTH2")
        if initial:
            conn.receive_data(b"AUTH XOAUTH2 " + blob + b"\r\n")
        else:
            conn.receive_data(b"AUTH XOAUTH2\r\n")
            assert pump(conn) is NEED_DATA and conn.data_to_send() == b"334 \r\n"
            conn.receive_data(blob + b"\r\n")
        event = pump(conn)
        assert isinstance(event, AuthAttempt) and event.secret == token

    def test_a_response_over_32_kib_is_a_line_too_long(self) -> None:
        blob = b64(b"user=a@b.c\x01auth=Bearer " + b"t" * 33_000 + b"\x01\x01")
        conn = connect("XOAUTH2")
        conn.receive_data(b"AUTH XOAUTH2 " + blob + b"\r\nNOOP\r\n")
        assert pump(conn) is NEED_DATA
        assert conn.data_to_send() == b"500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"

    def test_automatic_error_challenge_then_final_reply(self) -> None:
        conn = connect("OAUTHBEARER")
        conn.receive_data(b"AUTH OAUTHBEARER " + b64(b"n,,\x01auth=Bearer t\x01\x01") + b"\r\n")
        assert isinstance(pump(conn), AuthAttempt)
        conn.reject(AUTH_CREDENTIALS_INVALID)
        challenge = conn.data_to_send()
        assert challenge.startswith(b"334 ") and conn.state is State.AUTH_FAILURE
        assert json.loads(base64.b64decode(challenge[4:].strip()))["status"] == "invalid_token"
        conn.receive_data(b"AQ==\r\n")
        assert pump(conn) is NEED_DATA
        assert conn.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n"
        assert not conn.authenticated

    def test_password_mechanisms_get_no_challenge(self) -> None:
        conn = connect("PLAIN")
        conn.receive_data(b"AUTH PLAIN " + b64(b"\0u@x.org\0pw") + b"\r\n")
        pump(conn)
        conn.reject(AUTH_CREDENTIALS_INVALID)
        assert conn.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n"

    def test_keys_decision_is_answered_only_by_supply_or_reject(self) -> None:
        conn = connect("SCRAM-SHA-256")
        client = ScramClient(["SCRAM-SHA-256"], "u@example.org", "pencil")
        conn.receive_data(b"AUTH SCRAM-SHA-256 " + b64(client.get_client_first().encode()) + b"\r\n")
        assert isinstance(pump(conn), AuthKeysNeeded)
        assert conn.next_event() is PAUSED
        with pytest.raises(ProtocolUsageError):
            conn.accept()
        conn.supply_keys(keys_for(("pw", "pencil")))
        with pytest.raises(ProtocolUsageError):  # nothing pending any more
            conn.supply_keys(keys_for())
        assert conn.data_to_send().startswith(b"334 ")

    def test_supply_keys_refused_for_other_decisions(self) -> None:
        conn = connect("PLAIN")
        conn.receive_data(b"AUTH PLAIN " + b64(b"\0u@x.org\0pw") + b"\r\n")
        pump(conn)
        with pytest.raises(ProtocolUsageError):
            conn.supply_keys(keys_for())

    def test_success_data_needs_an_empty_line(self) -> None:
        conn = connect("SCRAM-SHA-256")
        client = ScramClient(["SCRAM-SHA-256"], "u@example.org", "pencil")
        conn.receive_data(b"AUTH SCRAM-SHA-256 " + b64(client.get_client_first().encode()) + b"\r\n")
        pump(conn)
        conn.supply_keys(keys_for(("pw", "pencil")))
        client.set_server_first(base64.b64decode(conn.data_to_send()[4:].strip()).decode())
        conn.receive_data(b64(client.get_client_final().encode()) + b"\r\n")
        event = pump(conn)
        assert isinstance(event, AuthAttempt) and event.proven == "pw"
        conn.accept()
        assert conn.state is State.AUTH_SUCCESS and not conn.authenticated
        client.set_server_final(base64.b64decode(conn.data_to_send()[4:].strip()).decode())
        conn.receive_data(b"dGV4dA==\r\n")  # not empty
        pump(conn)
        assert conn.data_to_send() == b"501 5.5.2 Expected an empty response\r\n"
        assert not conn.authenticated and conn.state is State.COMMAND


# ------------------------------------------------------------------ properties

STEP_TYPES = (Challenge, SaslCredentials, Malformed, NeedKeys)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-256"]),
    first=st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([
        b"n,,n=u@x.org,r=abc", b"n,a=u@x.org,\x01auth=Bearer t\x01\x01", b"user=u\x01auth=Bearer t\x01\x01"])),
    rest=st.lists(st.binary(max_size=200), max_size=3),
)
def test_any_bytes_give_a_step_never_an_exception(name: str, first: bytes | None, rest: list[bytes]) -> None:
    mechanism = DEFAULT_MECHANISMS[name]()
    step = mechanism.start(first)
    assert isinstance(step, STEP_TYPES)
    for response in rest:
        if isinstance(step, NeedKeys):
            step = mechanism.supply(keys_for(("pw", "pencil")))
        else:
            step = mechanism.step(response)
        assert isinstance(step, STEP_TYPES)
        if isinstance(step, SaslCredentials):
            assert step.proven is None  # random bytes never prove a key
