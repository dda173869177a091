import string

from hypothesis import given, strategies as st

from smtpgate.credentials import app_passwords

B32 = "abcdefghijklmnopqrstuvwxyz234567"


def test_generated_secrets_are_well_formed_and_distinct() -> None:
    made = {app_passwords.generate() for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert app_passwords.PATTERN.match(secret)
        assert app_passwords.is_well_formed(secret)
        assert len(secret) == 4 + 32 + 7


def test_entropy_is_at_least_128_bits() -> None:
    assert app_passwords.RANDOM_BYTES * 8 >= 128


@given(st.data())
def test_any_single_character_change_breaks_the_checksum(data: st.DataObject) -> None:
    secret = app_passwords.generate()
    pos = data.draw(st.integers(min_value=4, max_value=len(secret) - 1))
    other = data.draw(st.sampled_from([c for c in B32 if c != secret[pos]]))
    typo = secret[:pos] + other + secret[pos + 1:]
    assert not app_passwords.is_well_formed(typo)


@given(st.text(alphabet=string.printable, max_size=60))
def test_random_text_is_not_well_formed(text: str) -> None:
    assert not app_passwords.is_well_formed(text) or app_passwords.PATTERN.match(text)


def test_truncated_and_uppercased_secrets_are_refused() -> None:
    secret = app_passwords.generate()
    assert not app_passwords.is_well_formed(secret[:-1])
    assert not app_passwords.is_well_formed(secret.upper())
    assert not app_passwords.is_well_formed(secret + "a")


def test_keyed_hash_depends_on_key_and_secret() -> None:
    secret = app_passwords.generate()
    assert app_passwords.keyed_hash(b"a" * 32, secret) != app_passwords.keyed_hash(b"b" * 32, secret)
    assert app_passwords.keyed_hash(b"a" * 32, secret) == app_passwords.keyed_hash(b"a" * 32, secret)
    assert secret not in app_passwords.keyed_hash(b"a" * 32, secret)
