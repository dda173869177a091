import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from smtpgate.credentials.errors import PasswordTooLong, WeakPassword
from smtpgate.credentials.passwords import (
    MAX_PASSWORD_LENGTH,
    HashParams,
    PasswordHashing,
    PasswordPolicy,
    generate_password,
    in_hibp_file,
)

STRONG = "tulip-anvil-orbit-quartz-59"


def test_policy_accepts_a_strong_passphrase() -> None:
    PasswordPolicy().check(STRONG)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!A", "at least 12 are required"),
        ("password1234", "most common passwords"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
    ],
)
def test_policy_refuses_with_a_reason_and_a_hint(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword) as err:
        PasswordPolicy().check(password)
    assert reason in str(err.value)
    assert err.value.code == "weak-password" and "passphrase" in err.value.hint
    assert "--" not in err.value.hint  # the core names no CLI flag: the CLI words its own advice


def test_policy_uses_the_login_as_a_user_input() -> None:
    PasswordPolicy().check("alice@example.com")  # strong for a stranger...
    with pytest.raises(WeakPassword):  # ...but not as alice's own password
        PasswordPolicy().check("alice@example.com", user_inputs=("alice@example.com", "alice", "example.com"))


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=0, max_size=11))
def test_anything_shorter_than_the_minimum_is_refused(password: str) -> None:
    with pytest.raises(WeakPassword):
        PasswordPolicy(min_length=12).check(password)


def test_generated_passwords_pass_the_policy() -> None:
    for _ in range(5):
        PasswordPolicy().check(generate_password())


def _hibp_file(tmp_path, passwords: list[str], filler: int = 500):
    hashes = [hashlib.sha1(p.encode()).hexdigest().upper() for p in passwords]
    hashes += [hashlib.sha1(f"filler-{i}".encode()).hexdigest().upper() for i in range(filler)]
    path = tmp_path / "pwned.txt"
    path.write_text("".join(f"{h}:{i + 1}\r\n" for i, h in enumerate(sorted(hashes))))
    return path


def test_hibp_bisection_finds_every_listed_password(tmp_path) -> None:
    listed = [f"breached-{i}-horse" for i in range(50)]
    path = _hibp_file(tmp_path, listed)
    assert all(in_hibp_file(path, p) for p in listed)
    assert all(in_hibp_file(path, f"filler-{i}") for i in (0, 1, 250, 499))
    assert not in_hibp_file(path, STRONG)
    assert not in_hibp_file(path, "zzzz-not-there")


def test_policy_refuses_a_breached_password(tmp_path) -> None:
    path = _hibp_file(tmp_path, [STRONG])
    with pytest.raises(WeakPassword) as err:
        PasswordPolicy(hibp_file=path).check(STRONG)
    assert "data breaches" in str(err.value)


def test_argon2id_hash_verify_and_rehash() -> None:
    weak = PasswordHashing(HashParams(memory_kib=8192, time_cost=1))
    strong = PasswordHashing(HashParams(memory_kib=19456, time_cost=2))
    stored = weak.hash(STRONG)
    assert stored.startswith("$argon2id$")
    assert "m=8192,t=1,p=1" in stored
    assert weak.verify(stored, STRONG)
    assert not weak.verify(stored, STRONG + "x")
    assert not weak.verify("not-a-hash", STRONG)
    assert strong.needs_rehash(stored)
    assert not weak.needs_rehash(stored)


def test_default_parameters_meet_owasp() -> None:
    params = HashParams()
    assert params.memory_kib >= 19 * 1024 and params.time_cost >= 2 and params.parallelism >= 1


# ------------------------------------------------ every length up to the bound, any alphabet

ALPHABETS = {
    "ascii": st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    "letters and spaces": st.sampled_from("abcdefghijklmnopqrstuvwxyz "),
    "any text": st.characters(blacklist_categories=("Cs", "Cc")),
    "digits and more": st.sampled_from("0123456789٣ -/.\u00a0é"),
    "non-latin": st.characters(min_codepoint=0x400, max_codepoint=0x4FF) | st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF),
}


def long_passwords(min_size: int = 0, max_size: int = MAX_PASSWORD_LENGTH - len(STRONG)):
    """A strong start (the strength rule reads a prefix) and a tail of any length and alphabet."""
    return st.sampled_from(list(ALPHABETS.values())).flatmap(
        lambda alphabet: st.text(alphabet, min_size=min_size, max_size=max_size)
    ).map(lambda tail: STRONG + tail)


@settings(max_examples=60, deadline=None)
@given(long_passwords())
def test_long_passphrases_up_to_the_bound_are_accepted(password: str) -> None:
    PasswordPolicy().check(password)


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=MAX_PASSWORD_LENGTH)
       | st.sampled_from(list(ALPHABETS.values())).flatmap(lambda a: st.text(a, min_size=0, max_size=MAX_PASSWORD_LENGTH)))
def test_the_policy_only_ever_refuses_with_reasons(password: str) -> None:
    try:
        PasswordPolicy().check(password)
    except WeakPassword as err:
        assert err.reasons and err.hint and str(err).startswith("password refused: ")


@settings(max_examples=30, deadline=None)
@given(st.integers(MAX_PASSWORD_LENGTH + 1, 100_000), st.sampled_from("a7é漢 "))
def test_longer_than_the_bound_is_refused_naming_it(length: int, char: str) -> None:
    with pytest.raises(PasswordTooLong) as err:
        PasswordPolicy().check(char * length)
    assert "at most 1,024" in str(err.value) and f"{length:,} characters" in str(err.value)


def test_the_bound_is_1024_and_the_strength_rule_reads_a_prefix_zxcvbn_accepts() -> None:
    assert MAX_PASSWORD_LENGTH == 1024
    PasswordPolicy().check(STRONG + "x" * (MAX_PASSWORD_LENGTH - len(STRONG)))
    with pytest.raises(WeakPassword, match="too easy to guess"):  # judged on the prefix
        PasswordPolicy().check("a" * 80 + STRONG)


def test_a_lone_surrogate_is_refused_not_crashed_on() -> None:
    with pytest.raises(WeakPassword, match="not valid text"):
        PasswordPolicy().check(STRONG + "\udc80")


@settings(max_examples=40, deadline=None)
@given(st.text(st.sampled_from("0123456789ab"), max_size=40), st.characters(whitelist_categories=("Cc",)), st.text(st.sampled_from("0123456789"), max_size=20))
def test_a_control_character_is_refused_by_name(head: str, control: str, tail: str) -> None:
    # zxcvbn's date matcher raises ValueError on "00...\n00"; a control character never gets there
    with pytest.raises(WeakPassword, match=f"U\\+{ord(control):04X}"):
        PasswordPolicy().check(STRONG + head + control + tail)


@settings(max_examples=25, deadline=None)
@given(long_passwords() | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=MAX_PASSWORD_LENGTH))
def test_hash_and_verify_any_password_up_to_the_bound(password: str) -> None:
    hashing = PasswordHashing(HashParams(memory_kib=8192, time_cost=1))
    stored = hashing.hash(password)
    assert hashing.verify(stored, password)
    assert not hashing.verify(stored, password + "x")
    assert not hashing.verify(stored, password[:-1])
