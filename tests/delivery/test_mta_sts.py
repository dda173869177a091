"""MTA-STS policy text and TXT parsing, and host matching (RFC 8461)."""

from __future__ import annotations

import pytest

from smtpgate.delivery.mta_sts import PolicyError, parse_policy, parse_txt


def test_policy_parses_and_matches_hosts() -> None:
    policy = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.backup.example.com\r\nmax_age: 604800\r\n", "id1")
    assert policy.enforced and policy.max_age == 604800 and policy.id == "id1"
    assert policy.allows("mail.example.com") and policy.allows("MAIL.example.com.")
    assert policy.allows("a.backup.example.com")
    assert not policy.allows("a.b.backup.example.com")  # the wildcard covers one label
    assert not policy.allows("backup.example.com") and not policy.allows("evil.example.com")


@pytest.mark.parametrize("text", [
    "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n",
    "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmx: a\nmax_age: soon\n",
    "<html>not a policy</html>",
])
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_max_age_is_capped_at_a_year() -> None:
    assert parse_policy("version: STSv1\nmode: testing\nmx: a\nmax_age: 99999999999\n").max_age == 31_557_600


def test_txt_record_id() -> None:
    assert parse_txt(["v=STSv1; id=20261128T1;"]) == "20261128T1"
    assert parse_txt(["v=spf1 -all"]) is None
    assert parse_txt(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # two records: no policy (RFC 8461 3.1)
