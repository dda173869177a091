"""A secret pasted into a login field is never recorded as it is: `credentials.redaction`."""

from __future__ import annotations

import importlib
import pkgutil

from hypothesis import given, settings
from hypothesis import strategies as st

import smtpgate.credentials
from smtpgate.credentials import app_passwords, redaction, service_accounts
from smtpgate.credentials.redaction import MAX_OTHER, redact, redact_login


def test_every_prefixed_secret_format_of_the_credentials_is_registered() -> None:
    """A module that defines a `PREFIX` for its secrets must register it, or it would leak."""
    registered = {f.prefix for f in redaction.formats()}
    for info in pkgutil.iter_modules(smtpgate.credentials.__path__):
        module = importlib.import_module(f"smtpgate.credentials.{info.name}")
        prefix = getattr(module, "PREFIX", None)
        if isinstance(prefix, str):
            assert prefix in registered, f"credentials/{info.name}.py: PREFIX {prefix!r} is not registered"


def test_app_password_and_client_secret_become_prefix_and_keyed_hash() -> None:
    for secret in (app_passwords.generate(), service_accounts.generate_client_secret()):
        shown = redact_login(secret)
        assert secret not in shown and secret[4:16] not in shown
        assert shown.startswith(secret[:4] + "[redacted:") and shown.endswith("]")
        assert redact_login(secret) == shown  # stable: two pastes of one secret look alike
        assert redact_login(shown) == shown   # idempotent
        assert redact_login(app_passwords.generate()) != shown


def test_a_secret_cut_short_or_inside_other_text_is_redacted_too() -> None:
    secret = service_accounts.generate_client_secret()
    assert secret[:-3] not in redact(secret[:-3])  # the 40-character cut the token endpoint used to make
    text = f"user alice@example.com:{secret} and {secret.upper()}"
    out = redact(text)
    assert secret not in out and secret.upper() not in out and "alice@example.com" in out


def test_keyed_hash_depends_on_the_server_key() -> None:
    secret = app_passwords.generate()
    redaction.set_key(b"a" * 32)
    first = redact(secret)
    redaction.set_key(b"b" * 32)
    assert redact(secret) != first


def test_addresses_are_kept_and_other_logins_cut_short() -> None:
    assert redact_login("Alice@Example.com") == "Alice@Example.com"
    long_password = "correct horse battery staple " * 5
    shown = redact_login(long_password)
    assert len(shown) == MAX_OTHER and shown.endswith("…")
    assert redact_login("a" * 400 + "@example.com") == ("a" * 400 + "@example.com")[:320]


@settings(max_examples=200, deadline=None)
@given(before=st.text(max_size=40), after=st.text(max_size=40), which=st.sampled_from(["app", "client"]))
def test_no_generated_secret_survives_in_any_surrounding(before: str, after: str, which: str) -> None:
    secret = app_passwords.generate() if which == "app" else service_accounts.generate_client_secret()
    out = redact_login(before + secret + after)
    assert secret[4:20] not in out
