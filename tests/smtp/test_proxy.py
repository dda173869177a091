"""The PROXY protocol parser: v1 and v2, whole and byte by byte, and what it refuses."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.smtp.proxy import (
    NEED_DATA,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyParser,
    ProxyViolation,
    encode_v1,
    encode_v2,
)


def parse(data: bytes, *, split: bool = False) -> tuple[object, bytes]:
    parser = ProxyParser()
    event: object = NEED_DATA
    chunks = [data[i:i + 1] for i in range(len(data))] if split else [data]
    for chunk in chunks:
        parser.receive_data(chunk)
        event = parser.next_event()
        if event is not NEED_DATA:
            break
    return event, parser.rest


@pytest.mark.parametrize("split", [False, True])
def test_v1_tcp4_gives_the_client_address_and_keeps_what_follows(split: bool) -> None:
    event, rest = parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 587\r\nEHLO x\r\n", split=split)
    assert event == ProxyHeader(1, "PROXY", "TCP4", ("203.0.113.7", 40001), ("192.0.2.1", 587))
    if not split:
        assert rest == b"EHLO x\r\n"


def test_v1_tcp6_and_unknown() -> None:
    event, _ = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n")
    assert isinstance(event, ProxyHeader) and event.source == ("2001:db8::1", 1)
    event, _ = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")
    assert event == ProxyHeader(1, "PROXY", "UNKNOWN")


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 40001\r\n",            # a field missing
    b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",              # family and address disagree
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 587\r\n",        # port out of range
    b"PROXY TCP4 203.0.113.7 192.0.2.1 0587 587\r\n",         # leading zero
    b"PROXY TCP4 203.0.113.7  192.0.2.1 1 2\r\n",             # two spaces
    b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",              # no such family
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\n",                # bare LF
    b"PROXY TCP4 " + b"1" * 120 + b"\r\n",                     # longer than 107 bytes
    b"EHLO client.example\r\n",                               # no header at all
    b"\x16\x03\x01\x02\x00",                                  # a TLS ClientHello instead
    b"PROXY TCP4 203.0.113.\xff 192.0.2.1 1 2\r\n",           # not ASCII
])
def test_v1_refuses_everything_that_is_not_exactly_a_header(line: bytes) -> None:
    event, _ = parse(line)
    assert isinstance(event, ProxyViolation), event


def test_v1_answers_as_soon_as_the_prefix_is_wrong() -> None:
    parser = ProxyParser()
    parser.receive_data(b"PROX")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"Z")
    assert isinstance(parser.next_event(), ProxyViolation)


def test_the_107_byte_limit_is_exact() -> None:
    head = b"PROXY UNKNOWN "
    assert isinstance(parse(head + b"x" * (107 - len(head) - 2) + b"\r\n")[0], ProxyHeader)
    assert isinstance(parse(head + b"x" * (107 - len(head) - 1) + b"\r\n")[0], ProxyViolation)


@pytest.mark.parametrize("split", [False, True])
def test_v2_tcp4_tcp6_with_tlvs(split: bool) -> None:
    data = encode_v2(("198.51.100.9", 5555), ("192.0.2.1", 465), tlvs=((0x05, b"unique-id"),)) + b"\x16\x03\x01"
    event, rest = parse(data, split=split)
    assert event == ProxyHeader(2, "PROXY", "TCP4", ("198.51.100.9", 5555), ("192.0.2.1", 465), ((0x05, b"unique-id"),))
    if not split:
        assert rest == b"\x16\x03\x01"
    event, _ = parse(encode_v2(("2001:db8::9", 1), ("2001:db8::1", 2)), split=split)
    assert isinstance(event, ProxyHeader) and event.family == "TCP6" and event.source == ("2001:db8::9", 1)


def test_v2_local_is_a_health_check_without_an_address() -> None:
    event, _ = parse(encode_v2(None, None))
    assert event == ProxyHeader(2, "LOCAL", "UNSPEC")


@pytest.mark.parametrize("data", [
    V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x0c" + b"\0" * 12,                     # signature off by one
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,                                 # version 1 in a v2 header
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\0" * 12,                                 # command 2
    V2_SIGNATURE + b"\x21\x41\x00\x0c" + b"\0" * 12,                                 # family 4
    V2_SIGNATURE + b"\x21\x11\x00\x08" + b"\0" * 8,                                  # shorter than TCP4 addresses
    V2_SIGNATURE + b"\x21\x11\x00\x0e" + b"\0" * 12 + b"\x05\x00",                   # truncated TLV
    V2_SIGNATURE + b"\x21\x11\xff\xff",                                              # over the size limit
])
def test_v2_refuses_malformed_headers(data: bytes) -> None:
    event, _ = parse(data)
    assert isinstance(event, ProxyViolation), event


def test_v2_waits_for_the_whole_declared_length() -> None:
    data = encode_v2(("198.51.100.9", 5555), ("192.0.2.1", 465))
    parser = ProxyParser()
    parser.receive_data(data[:-1])
    assert parser.next_event() is NEED_DATA
    parser.receive_data(data[-1:] + b"after")
    assert isinstance(parser.next_event(), ProxyHeader)
    assert parser.rest == b"after"


def test_bytes_after_the_result_go_to_rest() -> None:
    parser = ProxyParser()
    parser.receive_data(encode_v1(("192.0.2.5", 1), ("192.0.2.1", 2)))
    assert isinstance(parser.next_event(), ProxyHeader)
    parser.receive_data(b"EHLO")
    assert parser.rest == b"EHLO"
    assert isinstance(parser.next_event(), ProxyHeader)  # the answer stays the same


addresses4 = st.ip_addresses(v=4).map(str)
addresses6 = st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a)))
ports = st.integers(0, 65535)


@given(st.one_of(st.tuples(addresses4, addresses4), st.tuples(addresses6, addresses6)), ports, ports,
       st.booleans(), st.binary(max_size=40))
@settings(max_examples=200, deadline=None)
def test_round_trip_whole_and_split(addrs: tuple[str, str], sport: int, dport: int, v2: bool, after: bytes) -> None:
    source, destination = (addrs[0], sport), (addrs[1], dport)
    data = (encode_v2 if v2 else encode_v1)(source, destination)
    whole, rest = parse(data + after)
    split, _ = parse(data, split=True)
    assert whole == split
    assert isinstance(whole, ProxyHeader)
    assert whole.source == source and whole.destination == destination
    assert rest == after


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_any_bytes_give_an_answer_never_an_exception(data: bytes) -> None:
    whole, _ = parse(data)
    split, _ = parse(data, split=True)
    assert whole is NEED_DATA or isinstance(whole, (ProxyHeader, ProxyViolation))
    # splitting may answer earlier (a violation seen at a prefix), never differently for a header
    if isinstance(whole, ProxyHeader):
        assert split == whole


@given(st.binary(min_size=1, max_size=64))
def test_v2_with_arbitrary_body_bytes(body: bytes) -> None:
    data = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(body)) + body
    event, _ = parse(data)
    assert isinstance(event, (ProxyHeader, ProxyViolation))
