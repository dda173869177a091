"""Reading a PROXY header off a socket: the header is taken, not one byte after it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from smtpgate.smtp.proxy import ProxyHeader, ProxyViolation, encode_v1, encode_v2
from smtpgate.smtp.proxy_io import Balancers, looks_like_proxy, peek_first, read_header, read_header_within

CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)


def read_from(chunks: list[bytes], *, close: bool = True, gap: float = 0.0) -> tuple[ProxyHeader | ProxyViolation, bytes]:
    """Send `chunks` from another thread; the header read, and what is left on the socket."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)

    def send() -> None:
        for chunk in chunks:
            theirs.sendall(chunk)
            time.sleep(gap)
        if close:
            theirs.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()

    async def main() -> ProxyHeader | ProxyViolation:
        async with asyncio.timeout(5):
            return await read_header(ours)

    try:
        event = asyncio.run(main())
        sender.join()
        ours.setblocking(True)
        ours.settimeout(2)
        rest = b""
        if isinstance(event, ProxyHeader):
            while chunk := ours.recv(4096):
                rest += chunk
        return event, rest
    finally:
        ours.close()
        theirs.close()


def test_v1_with_smtp_in_the_same_segment_leaves_the_smtp() -> None:
    event, rest = read_from([encode_v1(("203.0.113.7", 40000), ("192.0.2.1", 587)) + b"EHLO client.test\r\n"])
    assert isinstance(event, ProxyHeader) and event.source == ("203.0.113.7", 40000)
    assert rest == b"EHLO client.test\r\n"


def test_v2_leaves_the_tls_client_hello_for_the_handshake() -> None:
    event, rest = read_from([encode_v2(("2001:db8::7", 1), ("2001:db8::25", 465), tlvs=((0x04, b"x" * 40),)) + CLIENT_HELLO])
    assert isinstance(event, ProxyHeader) and event.source == ("2001:db8::7", 1)
    assert rest == CLIENT_HELLO


def test_a_header_that_drips_in_byte_by_byte_is_read_whole() -> None:
    data = encode_v2(("203.0.113.9", 5), ("192.0.2.1", 465))
    event, rest = read_from([data[i:i + 1] for i in range(len(data))] + [b"after"], gap=0.002)
    assert isinstance(event, ProxyHeader) and event.source == ("203.0.113.9", 5)
    assert rest == b"after"


@pytest.mark.parametrize("chunks", [
    [b"EHLO client.test\r\n"],               # no header at all
    [CLIENT_HELLO],                          # TLS straight away
    [b"PROXY TCP4 203.0.113.7"],              # cut short: the peer closed
    [],                                      # closed before a byte
])
def test_anything_but_a_whole_header_is_a_violation(chunks: list[bytes]) -> None:
    event, _ = read_from(chunks)
    assert isinstance(event, ProxyViolation)


def test_a_silent_peer_is_left_to_the_callers_timeout() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)

    async def main() -> None:
        async with asyncio.timeout(0.2):
            await read_header(ours)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    ours.close()
    theirs.close()


def test_peek_first_leaves_the_bytes() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.sendall(b"PROXY TCP4 1.2.3.4")
    first = asyncio.run(peek_first(ours))
    assert looks_like_proxy(first) and ours.recv(100) == b"PROXY TCP4 1.2.3.4"
    ours.close()
    theirs.close()


def test_balancers() -> None:
    balancers = Balancers(["127.0.0.2/31", "10.0.0.0/24", "2001:db8::/32"])
    assert "127.0.0.3" in balancers and "127.0.0.4" not in balancers
    assert "::ffff:10.0.0.5" in balancers  # a v4 balancer seen on a dual-stack socket
    assert "2001:db8::1" in balancers and "2001:db9::1" not in balancers
    assert "unknown" not in balancers and not Balancers([])
    assert not looks_like_proxy(b"EHLO x") and looks_like_proxy(encode_v2(None, None))


def test_a_header_that_came_while_the_loop_was_busy_beats_the_deadline() -> None:
    """Under load the deadline's timer and the socket's readiness come in the same turn of the
    loop: a header that is there by then was sent in time and is taken, not refused."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)

    def busy() -> None:  # the header arrives while the loop is stuck elsewhere past the deadline
        theirs.sendall(encode_v1(("203.0.113.7", 40000), ("192.0.2.25", 587)) + b"EHLO x\r\n")
        time.sleep(0.3)

    async def main() -> ProxyHeader | ProxyViolation:
        asyncio.get_running_loop().call_soon(busy)
        return await read_header_within(ours, 0.1)

    try:
        event = asyncio.run(main())
        assert isinstance(event, ProxyHeader) and event.source == ("203.0.113.7", 40000)
        assert ours.recv(64) == b"EHLO x\r\n"
    finally:
        ours.close()
        theirs.close()


def test_a_silent_peer_gets_a_violation_at_the_deadline() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        event = asyncio.run(read_header_within(ours, 0.1))
        assert isinstance(event, ProxyViolation) and "within 0.1s" in event.reason
    finally:
        ours.close()
        theirs.close()
