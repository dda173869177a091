"""smtplib clients that speak as a load balancer: a PROXY header first, then SMTP (or TLS)."""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Any

from smtpgate.smtp.proxy import encode_v1, encode_v2


def closed_unserved(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """Everything the server sent before closing (it must close within the test's timeout)."""
    received = b""
    sock.settimeout(5)
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except (ConnectionError, ssl.SSLError):
        pass
    return received


def header(version: int, client: str | None, port: int = 587) -> bytes:
    """A v1 or v2 header naming `client` (None: UNKNOWN for v1, LOCAL for v2)."""
    encode = encode_v1 if version == 1 else encode_v2
    if client is None:
        return encode(None, None)
    server = "2001:db8::25" if ":" in client else "192.0.2.25"
    return encode((client, 40000), (server, port))


class ProxiedSMTP(smtplib.SMTP):
    """STARTTLS port, from a chosen loopback source, the header sent before anything else."""

    def __init__(self, proxy_header: bytes, port: int, source: str, **kwargs: Any) -> None:
        self.proxy_header = proxy_header
        super().__init__("127.0.0.1", port, local_hostname="client.test", timeout=10,
                         source_address=(source, 0), **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        sock.sendall(self.proxy_header)
        return sock


class ProxiedSMTPS(smtplib.SMTP_SSL):
    """Implicit-TLS port: the header, then the TLS handshake on the same connection."""

    def __init__(self, proxy_header: bytes, port: int, source: str, context: ssl.SSLContext) -> None:
        self.proxy_header = proxy_header
        super().__init__("127.0.0.1", port, local_hostname="client.test", timeout=10,
                         source_address=(source, 0), context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        sock.sendall(self.proxy_header)
        return self.context.wrap_socket(sock, server_hostname=host)
