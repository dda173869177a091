"""A bare socket SMTP client for tests that must send exactly the bytes they mean."""

from __future__ import annotations

import base64
import socket
import ssl


class RawClient:
    def __init__(self, port: int, *, host: str = "127.0.0.1", source: str | None = None, timeout: float = 10) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self) -> tuple[int, list[str]]:
        """One whole (possibly multi-line) reply: its code and its lines."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            text = line.decode()
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), lines

    def cmd(self, line: str) -> tuple[int, list[str]]:
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext, hostname: str = "localhost") -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)

    def login(self, user: str, secret: str) -> tuple[int, list[str]]:
        blob = base64.b64encode(f"\0{user}\0{secret}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {blob}")

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()
