import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from smtpgate.credentials.errors import WeakPassword
from smtpgate.credentials.passwords import (
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
    assert "--generate" in err.value.hint


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
