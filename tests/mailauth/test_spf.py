"""SPF against a real DNS server on loopback: results, the 10-lookup limit, permerrors."""

from __future__ import annotations

import pytest

from smtpgate.mailauth.spf import SpfSyntaxError, check_host, lookup_tree, parse
from tests.delivery.fakedns import txt


def test_ip_a_mx_and_include_mechanisms(fake_dns, resolver) -> None:
    fake_dns.add("example.com", "TXT", txt("v=spf1 ip4:192.0.2.0/24 a:relay.example.com mx include:_spf.provider.test -all"))
    fake_dns.add("relay.example.com", "A", "198.51.100.7")
    fake_dns.add("example.com", "MX", "10 mx.example.com.").add("mx.example.com", "A", "203.0.113.9")
    fake_dns.add("_spf.provider.test", "TXT", txt("v=spf1 ip6:2001:db8::/32 ~all"))
    assert check_host(resolver, "192.0.2.44", "example.com").result == "pass"
    assert check_host(resolver, "198.51.100.7", "example.com").result == "pass"
    assert check_host(resolver, "203.0.113.9", "example.com").result == "pass"
    assert check_host(resolver, "2001:db8::5", "example.com").result == "pass"
    outsider = check_host(resolver, "198.51.100.8", "example.com")
    assert outsider.result == "fail" and outsider.lookups == 3
    assert check_host(resolver, "192.0.2.1", "nothing.example").result == "none"


def test_eleven_lookups_are_a_permerror(fake_dns, resolver) -> None:
    chain = " ".join(f"include:i{n}.example.com" for n in range(11))
    fake_dns.add("big.example.com", "TXT", txt(f"v=spf1 {chain} -all"))
    for n in range(11):
        fake_dns.add(f"i{n}.example.com", "TXT", txt(f"v=spf1 ip4:10.0.{n}.0/24 -all"))
    result = check_host(resolver, "192.0.2.1", "big.example.com")
    assert result.result == "permerror" and "more than 10 DNS lookups" in result.reason
    assert lookup_tree(resolver, "big.example.com").lookups == 11
    ten = " ".join(f"include:i{n}.example.com" for n in range(10))
    fake_dns.add("ok.example.com", "TXT", txt(f"v=spf1 {ten} -all"))
    assert check_host(resolver, "10.0.9.1", "ok.example.com").result == "pass"
    assert lookup_tree(resolver, "ok.example.com").lookups == 10


def test_two_records_and_a_missing_include_are_permerrors(fake_dns, resolver) -> None:
    fake_dns.add("two.example.com", "TXT", txt("v=spf1 -all"), txt("v=spf1 ip4:192.0.2.1 -all"))
    assert check_host(resolver, "192.0.2.1", "two.example.com").result == "permerror"
    fake_dns.add("dangling.example.com", "TXT", txt("v=spf1 include:gone.example.com -all"))
    result = check_host(resolver, "192.0.2.1", "dangling.example.com")
    assert result.result == "permerror" and "gone.example.com" in result.reason
    assert lookup_tree(resolver, "dangling.example.com").problems == ["gone.example.com publishes no SPF record"]


def test_void_lookups_redirect_and_macros(fake_dns, resolver) -> None:
    fake_dns.add("void.example.com", "TXT", txt("v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all"))
    assert check_host(resolver, "192.0.2.1", "void.example.com").result == "permerror"
    fake_dns.add("redir.example.com", "TXT", txt("v=spf1 redirect=_spf.redir.example.com"))
    fake_dns.add("_spf.redir.example.com", "TXT", txt("v=spf1 ip4:192.0.2.5 -all"))
    assert check_host(resolver, "192.0.2.5", "redir.example.com").result == "pass"
    fake_dns.add("macro.example.com", "TXT", txt("v=spf1 exists:%{ir}.%{l}._spf.%{d} -all"))
    fake_dns.add("1.2.0.192.alice._spf.macro.example.com", "A", "127.0.0.2")
    assert check_host(resolver, "192.0.2.1", "macro.example.com", "alice@macro.example.com").result == "pass"
    assert check_host(resolver, "192.0.2.1", "macro.example.com", "bob@macro.example.com").result == "fail"


@pytest.mark.parametrize("text", ["v=spf1 ip4:300.1.1.1 -all", "v=spf1 foo:bar", "v=spf1 include: -all", "v=spf2 -all",
                                  "v=spf1 redirect=a.example redirect=b.example", "v=spf1 a/40"])
def test_syntax_errors_are_named(text: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse(text)


def test_cidr_forms_parse() -> None:
    terms = parse("v=spf1 a/24 mx:mail.example.com/28//64 ~all").mechanisms
    assert (terms[0].name, terms[0].cidr4) == ("a", 24)
    assert (terms[1].value, terms[1].cidr4, terms[1].cidr6) == ("mail.example.com", 28, 64)
    assert terms[2].qualifier == "softfail"
