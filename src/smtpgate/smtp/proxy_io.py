"""Reading a PROXY header off an accepted socket, and not one byte past it.

What follows the header belongs to someone else: the SMTP machine on the STARTTLS port,
the TLS handshake on the implicit-TLS port (which asyncio starts afterwards on the same
socket). So the header is peeked (`MSG_PEEK`) and only its own bytes are taken off the
socket; the rest stays in the kernel for whoever reads next, and no byte is copied into
a TLS object by hand. Only connections from the listed load balancers come here: every
other connection keeps its path, and its reads, unchanged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from smtpgate.smtp.proxy import NEED_DATA, V2_MAX, V2_SIGNATURE, ProxyHeader, ProxyParser, ProxyViolation

__all__ = ["Balancers", "looks_like_proxy", "peek_first", "read_header", "read_header_within"]


class Balancers:
    """The networks of `[smtp] proxy_protocol_from`: who must, and alone may, send a header."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(text.strip(), strict=False) for text in cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, ip: object) -> bool:
        try:
            address = ipaddress.ip_address(str(ip))
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.5 on a dual-stack socket
        candidates = (address, mapped) if mapped is not None else (address,)
        return any(candidate in network for candidate in candidates for network in self.networks)


def looks_like_proxy(first: bytes) -> bool:
    """The first bytes of a connection are a PROXY header (v1 text or v2 signature)."""
    return first.startswith(b"PROXY ") or first.startswith(V2_SIGNATURE)


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def peek_first(sock: socket.socket, size: int = len(V2_SIGNATURE)) -> bytes:
    """The first bytes the peer sent, left on the socket (b"" when it closed first)."""
    while True:
        await _readable(sock)
        try:
            return sock.recv(size, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue


async def read_header(sock: socket.socket) -> ProxyHeader | ProxyViolation:
    """The load balancer's header, taken off the socket; the caller bounds the wait.

    While the header is incomplete every byte seen is part of it and is taken; once it is
    complete, exactly its remaining bytes are.
    """
    taken = b""
    while True:
        try:
            peeked = await peek_first(sock, V2_MAX)
        except OSError as exc:  # reset by the peer
            return ProxyViolation(f"the connection failed before a whole PROXY header: {exc.strerror or exc}")
        if not peeked:
            return ProxyViolation("the connection closed before a whole PROXY header")
        parser = ProxyParser()
        parser.receive_data(taken + peeked)
        event = parser.next_event()
        if isinstance(event, ProxyViolation):
            return event
        size = len(peeked) if event is NEED_DATA else len(peeked) - len(parser.rest)
        taken += _take(sock, size)
        if isinstance(event, ProxyHeader):
            return event


async def read_header_within(sock: socket.socket, timeout: float) -> ProxyHeader | ProxyViolation:
    """The header, or a violation when it is not whole within `timeout` seconds.

    A loaded event loop runs the deadline's timer in the same turn as the socket's
    readiness, and the timer can win: so at the deadline the socket is looked at once
    more, and a header that is there by then was sent in time.
    """
    try:
        async with asyncio.timeout(timeout):
            return await read_header(sock)
    except TimeoutError:
        return _header_already_there(sock) or ProxyViolation(f"no whole PROXY header within {timeout:g}s")


def _header_already_there(sock: socket.socket) -> ProxyHeader | None:
    try:
        peeked = sock.recv(V2_MAX, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return None
    parser = ProxyParser()
    parser.receive_data(peeked)
    event = parser.next_event()
    if not isinstance(event, ProxyHeader):
        return None
    _take(sock, len(peeked) - len(parser.rest))
    return event


def _take(sock: socket.socket, size: int) -> bytes:
    """Bytes already peeked: they are in the socket's buffer, so recv returns them at once."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
