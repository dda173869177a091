"""DMARC record discovery and parsing."""

from __future__ import annotations

import pytest

from smtpgate.mailauth.dmarc import DmarcError, aligned, find_policy, organizational_domain, parse
from tests.delivery.fakedns import txt


def test_policy_found_at_the_domain_or_its_organizational_domain(fake_dns, resolver) -> None:
    fake_dns.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"))
    policy, _ = find_policy(resolver, "example.com")
    assert policy is not None and policy.policy == "reject" and policy.rua == ("mailto:d@example.com",)
    sub, _ = find_policy(resolver, "news.example.com")
    assert sub is not None and sub.domain == "example.com" and sub.applies("news.example.com") == "quarantine"
    assert find_policy(resolver, "example.org") == (None, [])


def test_two_records_are_refused(fake_dns, resolver) -> None:
    fake_dns.add("_dmarc.example.net", "TXT", txt("v=DMARC1; p=none"), txt("v=DMARC1; p=reject"))
    with pytest.raises(DmarcError, match="2 DMARC records"):
        find_policy(resolver, "example.net")


@pytest.mark.parametrize("text, message", [("v=DMARC1", "p= tag is missing"), ("v=DMARC1; p=block", "expected none"),
                                           ("v=DMARC1; p=none; rua=https://x", "mailto:"), ("p=none", "v=DMARC1")])
def test_broken_records(text: str, message: str) -> None:
    with pytest.raises(DmarcError, match=message):
        parse(text, "example.com")


def test_alignment() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert aligned("mail.example.com", "example.com", "r") and not aligned("mail.example.com", "example.com", "s")
    assert not aligned("example.org", "example.com", "r")
