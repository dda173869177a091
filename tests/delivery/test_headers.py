import pytest

from smtpgate.delivery.headers import addresses, decode_words, header_values, mailboxes, shown_addresses

BLOCK = (
    b"Received: from x\r\n\tby y\r\n"
    b"From: \"Alice, Billing\" <alice@example.com>,\r\n bob@example.com\r\n"
    b"sender: Carol <carol@example.com>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= and\r\n more\r\n"
    b"X-From: not@example.com\r\n"
)


def test_folded_fields_are_unfolded_and_names_are_case_insensitive() -> None:
    assert header_values(BLOCK, "Subject") == ["=?utf-8?q?caf=C3=A9?= and more"]
    assert header_values(BLOCK, "Sender") == ["Carol <carol@example.com>"]
    assert header_values(BLOCK, "To") == []


def test_every_address_of_a_field() -> None:
    assert addresses(BLOCK, "From") == ["alice@example.com", "bob@example.com"]
    assert addresses(BLOCK, "Sender") == ["carol@example.com"]


def test_a_field_name_inside_another_does_not_match() -> None:
    assert "not@example.com" not in addresses(BLOCK, "From")


def test_encoded_words() -> None:
    assert decode_words("=?utf-8?q?caf=C3=A9?= and more") == "café and more"
    assert decode_words("plain") == "plain"
    assert decode_words("=?bogus?q?x?=") == "=?bogus?q?x?="


def test_mailboxes_decode_display_names() -> None:
    block = (b"From: =?utf-8?q?carol=40example=2Ecom?= <alice@example.com>\r\n"
             b"Resent-From: \"x@y.example\" <a@b.example>,\r\n Bob <bob@example.org>\r\n"
             + "Sender: carol\uff20example.com <a@b.example>\r\n".encode())
    assert mailboxes(block, "From") == [("carol@example.com", "alice@example.com")]
    assert mailboxes(block, "Resent-From") == [("x@y.example", "a@b.example"), ("Bob", "bob@example.org")]
    assert mailboxes(block, "Sender") == [("carol@example.com", "a@b.example")]  # full-width at sign, NFKC


@pytest.mark.parametrize(("display", "shown"), [
    ("Alice", []), ("", []), ("ceo@example.com", ["ceo@example.com"]),
    ("The CEO (ceo@example.com)", ["ceo@example.com"]), ("alice at example", []), ("a@b", []),
])
def test_shown_addresses(display: str, shown: list[str]) -> None:
    assert shown_addresses(display) == shown


def _per_name_scan(section: bytes, name: str) -> list[str]:
    """What header_values returned when it scanned the section once per field name."""
    import re

    pattern = re.compile(rb"(?im)^" + re.escape(name.encode()) + rb"[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")
    return [re.sub(rb"\r?\n(?=[ \t])", b"", m.group(1)).rstrip(b"\r").decode("utf-8", "surrogateescape")
            for m in pattern.finditer(section)]


TRICKY = (
    b"FROM : <a@example.com>\r\n"             # upper case, space before the colon
    b"From:<b@example.com>\r\n"               # no space, a second From
    b"\tFrom: <hidden@example.com>\r\n"       # a continuation line of the field above
    b"From-Extra: <c@example.com>\r\n"        # a longer name that starts with From
    b"X-From: <d@example.com>\n"              # bare LF
    b"Sender:\r\n"                            # empty value
    b"resent-from: <e@example.com>,\n <f@example.com>\r\n"  # folded over a bare LF
    b"Resent-Sender: \xc3\xa9 \xff <g@example.com>\r\n"       # 8-bit bytes, one invalid
    b"no colon on this line\r\n"
    b"Subject: a\rb\r\n"                      # a CR inside the value
)


@pytest.mark.parametrize("name", ["From", "Sender", "Resent-From", "Resent-Sender", "Subject", "To", "X-From"])
@pytest.mark.parametrize("section", [BLOCK, TRICKY], ids=["block", "tricky"])
def test_one_scan_per_section_reads_what_a_scan_per_name_did(section: bytes, name: str) -> None:
    assert header_values(section, name) == _per_name_scan(section, name)
