"""An authoritative-only DNS server on loopback (UDP and TCP, one port) built on dnspython.

Tests give it records as zone-file text; a name it has no record of at all is NXDOMAIN,
a known name without the asked type is an empty answer (NOERROR), as real DNS says.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import defaultdict

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def txt(value: str) -> str:
    """A TXT rdata in zone-file form, split into <=255-byte strings."""
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


class FakeDns:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()

    def add(self, name: str, rdtype: str, *values: str) -> FakeDns:
        self.records[(name.lower().rstrip("."), rdtype.upper())].extend(values)
        return self

    def set(self, name: str, rdtype: str, *values: str) -> FakeDns:
        """Replace the records of that name and type (none: remove them)."""
        key = (name.lower().rstrip("."), rdtype.upper())
        if values:
            self.records[key] = list(values)
        else:
            self.records.pop(key, None)
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeDns:
        for _ in range(50):  # one port number free for both UDP and TCP
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp.bind(("127.0.0.1", 0))
            self.port = self._udp.getsockname()[1]
            self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self._tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self._udp.close()
                self._tcp.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self._tcp.listen(16)
        for sock in (self._udp, self._tcp):
            sock.settimeout(0.2)
        threading.Thread(target=self._serve_udp, daemon=True).start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._udp.close()
        self._tcp.close()

    def answer(self, wire: bytes, *, tcp: bool) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = question.name.to_text().lower().rstrip(".")
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", rdtype, *values))
            elif not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        data = response.to_wire()
        if not tcp and len(data) > 512 and query.edns < 0:
            response.answer.clear()
            response.flags |= dns.flags.TC
            data = response.to_wire()
        return data

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                self._udp.sendto(self.answer(wire, tcp=False), peer)
            except Exception:  # noqa: BLE001 - a bad query must not stop the server
                continue

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    size = struct.unpack("!H", _read(conn, 2))[0]
                    data = self.answer(_read(conn, size), tcp=True)
                    conn.sendall(struct.pack("!H", len(data)) + data)
                except Exception:  # noqa: BLE001
                    continue


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("short read")
        data += chunk
    return data
