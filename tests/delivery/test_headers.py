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
