"""Small misbehaving SMTP servers on loopback, each fault set by a parameter.

Real sockets and real TLS; only the server's behaviour is scripted: no STARTTLS, AUTH
before TLS, a tarpit that never speaks, a server that hangs up, a given AUTH reply...
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from smtpgate import pki

FEATURES = ["PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"]


def self_signed(directory: Path, names: list[str] | None = None, *, days: int = 90) -> tuple[Path, Path]:
    """A self-signed certificate and key for the fake servers (loopback names by default)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "fake-cert.pem", directory / "fake-key.pem"
    now = datetime.now(timezone.utc)
    pki.make_self_signed_cert(cert, key, names or ["localhost", "127.0.0.1"],
                              not_before=now - timedelta(days=1), not_after=now + timedelta(days=days), overwrite=True)
    return cert, key


@dataclass
class FakeSmtp:
    banner: str = "220 fake.test ESMTP ready"
    behaviour: str = "normal"  # normal, tarpit (accepts, never speaks), drop (accepts, hangs up)
    starttls: bool = True
    implicit_tls: bool = False
    auth_before_tls: bool = False
    auth_after_tls: str = "PLAIN LOGIN"
    auth_reply: str = "235 2.7.0 Authentication successful"
    extra_plain_features: list[str] = field(default_factory=list)
    cert: tuple[Path, Path] | None = None
    received: list[str] = field(default_factory=list)  # every command line it got, as sent
    port: int = 0

    def start(self) -> FakeSmtp:
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))  # 0: any free port
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._context: ssl.SSLContext | None = None
        if self.cert:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(*self.cert)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()

    def __enter__(self) -> FakeSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.behaviour == "drop":
                conn.close()
                return
            if self.behaviour == "tarpit":
                while not self._stop.is_set():
                    time.sleep(0.05)
                conn.close()
                return
            conn.settimeout(10)
            if self.implicit_tls:
                assert self._context is not None
                conn = self._context.wrap_socket(conn, server_side=True)
            self._dialog(conn, tls=self.implicit_tls)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def _dialog(self, conn: socket.socket, *, tls: bool) -> None:
        conn.sendall(self.banner.encode() + b"\r\n")
        if self.banner.startswith("220"):
            self._commands(conn, tls=tls)

    def _commands(self, conn: socket.socket, *, tls: bool) -> None:
        """Answer commands until QUIT; STARTTLS wraps the socket and carries on (no new banner)."""
        reader = conn.makefile("rb")

        def send(text: str) -> None:
            conn.sendall(text.encode() + b"\r\n")

        while True:
            raw = reader.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.received.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                features = list(FEATURES) + (list(self.extra_plain_features) if not tls else [])
                if self.starttls and self._context and not tls:  # STARTTLS needs a certificate
                    features.append("STARTTLS")
                if self.auth_after_tls and (tls or self.auth_before_tls):
                    features.append(f"AUTH {self.auth_after_tls}")
                lines = ["fake.test", *features]
                for i, item in enumerate(lines):
                    send(f"250{'-' if i < len(lines) - 1 else ' '}{item}")
            elif verb == "STARTTLS" and self.starttls and self._context and not tls:
                send("220 2.0.0 Ready to start TLS")
                return self._commands(self._context.wrap_socket(conn, server_side=True), tls=True)
            elif verb == "AUTH":
                if line.upper() == "AUTH LOGIN":
                    for prompt in ("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"):
                        send(prompt)
                        self.received.append(reader.readline().decode(errors="replace").rstrip("\r\n"))
                send(self.auth_reply)
                if self.auth_reply.startswith("421"):
                    return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                send("250 2.1.0 Ok")
            elif verb == "DATA":
                send("354 End data with <CR><LF>.<CR><LF>")
                while reader.readline() not in (b".\r\n", b""):
                    pass
                send("250 2.0.0 Ok: queued as FAKE1")
            elif verb == "QUIT":
                send("221 2.0.0 Bye")
                return
            else:
                send("500 5.5.2 Unknown command")
