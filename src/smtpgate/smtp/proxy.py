"""The PROXY protocol (v1 text and v2 binary) as a small sans-I/O parser.

A load balancer in front of several nodes (HAProxy ``send-proxy`` / ``send-proxy-v2``)
tells each node who the client really is in a header sent before anything else on the
connection, and on the implicit-TLS port before the TLS handshake. Bytes go in with
``receive_data``; ``next_event`` answers ``NEED_DATA``, a ``ProxyHeader`` or a
``ProxyViolation``; whatever followed the header is left in ``rest`` for the SMTP
machine (or the TLS handshake).

Why our own: the one PyPI library for it reads from an asyncio stream, so it cannot
sit in front of a TLS handshake we start ourselves, and it is not fuzzable as bytes in,
events out like the SMTP and SASL machines. The format is small and fixed (haproxy's
proxy-protocol.txt); what matters is refusing everything that is not exactly it:
a v1 line is at most 107 bytes, addresses must parse as the family says, v2 lengths must
cover the addresses, and nothing is guessed.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "NEED_DATA",
    "V1_MAX",
    "V2_MAX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyParser",
    "ProxyViolation",
    "encode_v1",
    "encode_v2",
]

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107                    # the longest v1 line, CRLF included
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX: Final = 16 + 2048              # addresses plus room for a load balancer's TLVs
_V2_FAMILIES: Final = {0x00: "UNSPEC", 0x11: "TCP4", 0x21: "TCP6", 0x31: "UNIX"}
_V2_ADDRESS_SIZES: Final = {"TCP4": 12, "TCP6": 36, "UNIX": 216}


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True)
class ProxyHeader:
    """What the load balancer said. ``source`` is None for LOCAL and UNKNOWN: use the peer."""

    version: int                          # 1 or 2
    command: str                          # "PROXY" or "LOCAL" (v2 health checks)
    family: str                           # "TCP4", "TCP6", "UNKNOWN", "UNSPEC", "UNIX"
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())


@dataclass(frozen=True)
class ProxyViolation:
    """Not a valid PROXY header: the connection is closed and nothing served."""

    reason: str


Event = ProxyHeader | ProxyViolation | _NeedData


class ProxyParser:
    """One connection's header: feed bytes until it answers a header or a violation."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._result: ProxyHeader | ProxyViolation | None = None
        self.rest = b""

    def receive_data(self, data: bytes) -> None:
        if self._result is None:
            self._buffer += data
        else:
            self.rest += data

    def next_event(self) -> Event:
        if self._result is None:
            self._result = self._parse()
            if self._result is None:
                return NEED_DATA
        return self._result

    # ------------------------------------------------------------------ parsing

    def _parse(self) -> ProxyHeader | ProxyViolation | None:
        buf = bytes(self._buffer)
        if not buf:
            return None
        if V2_SIGNATURE.startswith(buf[:12]) and not V1_PREFIX.startswith(buf[:6]):
            return self._parse_v2(buf)
        if V1_PREFIX.startswith(buf[:6]):
            return self._parse_v1(buf)
        return ProxyViolation("the connection did not begin with a PROXY header")

    def _finish(self, header: ProxyHeader | ProxyViolation, used: int) -> ProxyHeader | ProxyViolation:
        if isinstance(header, ProxyHeader):
            self.rest = bytes(self._buffer[used:])
        self._buffer.clear()
        return header

    def _parse_v1(self, buf: bytes) -> ProxyHeader | ProxyViolation | None:
        end = buf.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(buf) >= V1_MAX or b"\n" in buf[:V1_MAX]:
                return self._finish(ProxyViolation("PROXY v1 line longer than 107 bytes or not ended by CRLF"), 0)
            return None
        return self._finish(parse_v1_line(buf[:end]), end + 2)

    def _parse_v2(self, buf: bytes) -> ProxyHeader | ProxyViolation | None:
        if len(buf) < 16:
            return None
        if buf[:12] != V2_SIGNATURE:
            return self._finish(ProxyViolation("bad PROXY v2 signature"), 0)
        version, command = buf[12] >> 4, buf[12] & 0x0F
        if version != 2 or command not in (0, 1):
            return self._finish(ProxyViolation(f"unsupported PROXY v2 version/command 0x{buf[12]:02x}"), 0)
        (length,) = struct.unpack("!H", buf[14:16])
        if 16 + length > V2_MAX:
            return self._finish(ProxyViolation(f"PROXY v2 header of {16 + length} bytes is over the limit of {V2_MAX}"), 0)
        if len(buf) < 16 + length:
            return None
        return self._finish(parse_v2_body(command, buf[13], buf[16:16 + length]), 16 + length)


def parse_v1_line(line: bytes) -> ProxyHeader | ProxyViolation:
    """``PROXY TCP4|TCP6 src dst sport dport`` or ``PROXY UNKNOWN ...`` (without CRLF)."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return ProxyViolation("PROXY v1 line is not ASCII")
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(version=1, command="PROXY", family="UNKNOWN")
    if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
        return ProxyViolation("PROXY v1 line is not 'PROXY TCP4|TCP6|UNKNOWN src dst sport dport'")
    family = parts[1]
    try:
        source = _address(family, parts[2]), _port(parts[4])
        destination = _address(family, parts[3]), _port(parts[5])
    except ValueError as exc:
        return ProxyViolation(f"PROXY v1 {exc}")
    return ProxyHeader(version=1, command="PROXY", family=family, source=source, destination=destination)


def _address(family: str, text: str) -> str:
    kind = ipaddress.IPv4Address if family == "TCP4" else ipaddress.IPv6Address
    try:
        return str(kind(text))
    except ValueError:
        raise ValueError(f"address {text[:45]!r} is not a valid {family} address") from None


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ValueError(f"port {text[:8]!r} is not a number from 0 to 65535")
    return int(text)


def parse_v2_body(command: int, family_byte: int, body: bytes) -> ProxyHeader | ProxyViolation:
    family = _V2_FAMILIES.get(family_byte)
    if family is None:
        return ProxyViolation(f"unsupported PROXY v2 address family 0x{family_byte:02x}")
    size = _V2_ADDRESS_SIZES.get(family, 0)
    if command == 0:  # LOCAL: the balancer's own health check; addresses, if any, are ignored
        return ProxyHeader(version=2, command="LOCAL", family=family)
    if len(body) < size:
        return ProxyViolation(f"PROXY v2 {family} header is {len(body)} bytes, shorter than its addresses")
    tlvs = _tlvs(body[size:])
    if tlvs is None:
        return ProxyViolation("PROXY v2 TLVs are malformed")
    if family == "TCP4":
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        return ProxyHeader(2, "PROXY", family, (str(ipaddress.IPv4Address(src)), sport),
                           (str(ipaddress.IPv4Address(dst)), dport), tlvs)
    if family == "TCP6":
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        return ProxyHeader(2, "PROXY", family, (str(ipaddress.IPv6Address(src)), sport),
                           (str(ipaddress.IPv6Address(dst)), dport), tlvs)
    return ProxyHeader(version=2, command="PROXY", family=family, tlvs=tlvs)  # UNSPEC, UNIX: use the peer


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...] | None:
    found = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            return None
        kind, length = data[offset], struct.unpack("!H", data[offset + 1:offset + 3])[0]
        if offset + 3 + length > len(data):
            return None
        found.append((kind, data[offset + 3:offset + 3 + length]))
        offset += 3 + length
    return tuple(found)


# ------------------------------------------------------------- for tests and tools


def encode_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 header as a load balancer sends it (UNKNOWN without addresses)."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None,
              tlvs: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """A v2 header; LOCAL when no addresses are given."""
    extra = b"".join(bytes([kind]) + struct.pack("!H", len(value)) + value for kind, value in tlvs)
    if source is None or destination is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(extra)) + extra
    v6 = ":" in source[0]
    kind = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    body = (kind(source[0]).packed + kind(destination[0]).packed + struct.pack("!HH", source[1], destination[1]))
    body += extra
    return V2_SIGNATURE + bytes([0x21, 0x21 if v6 else 0x11]) + struct.pack("!H", len(body)) + body
