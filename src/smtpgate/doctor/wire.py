"""A small blocking SMTP client for diagnosis, recording every line it sends and receives.

Why not smtplib: a diagnosis has to tell a connect timeout from a silent server from a
closed connection at every step, keep going after a certificate failure to collect facts,
and record a transcript without the password. smtplib folds timeouts and closes into one
SMTPServerDisconnected and prints its debug transcript, AUTH payloads included, to stderr.
Sending mail for real (`smtpgate.client`) does use smtplib.
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass

from smtpgate.doctor.explain import parse_enhanced
from smtpgate.doctor.transcript import Transcript

MAX_LINE = 8192


class WireError(Exception):
    """The conversation broke: `kind` is timeout, closed or garbled."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ConnectFailed(Exception):
    """The TCP connection could not be made: `kind` is timeout, refused, unreachable or other."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def enhanced(self) -> str:
        return parse_enhanced(self.lines[0]) if self.lines else ""

    def __str__(self) -> str:
        text = self.text
        return f"{self.code} {text if len(text) <= 120 else text[:117] + '...'}"


class Wire:
    """One SMTP connection. Every method raises WireError instead of hanging or guessing."""

    def __init__(self, sock: socket.socket, transcript: Transcript, timeout: float, label: str = "") -> None:
        self.sock = sock
        self.transcript = transcript
        self.label = label  # the port, so the lines of interleaved connections can be told apart
        self.broken = False  # timed out, closed or garbled: no point saying QUIT
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self._buffer = b""

    @classmethod
    def connect(cls, address: str, port: int, *, connect_timeout: float, timeout: float,
                transcript: Transcript, source: str = "") -> Wire:
        transcript.note(f"connecting to {address} port {port}" + (f" from {source}" if source else ""), str(port))
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            if source:
                sock.bind((source, 0))
            sock.connect((address, port))
        except (TimeoutError, socket.timeout):
            sock.close()
            raise ConnectFailed("timeout", f"timed out after {connect_timeout:g} s") from None
        except ConnectionRefusedError:
            sock.close()
            raise ConnectFailed("refused", "connection refused") from None
        except OSError as exc:
            sock.close()
            kind = "unreachable" if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) else "other"
            raise ConnectFailed(kind, exc.strerror or str(exc)) from None
        return cls(sock, transcript, timeout, str(port))

    # ---------------------------------------------------------------- lines

    def _readline(self) -> str:
        while b"\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\n")
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.transcript.received(text, self.label)
        return text

    def _fill(self) -> None:
        """More bytes from the server; WireError (and a broken connection) when none come."""
        if len(self._buffer) > MAX_LINE:
            kind, message = "garbled", "reply line too long"
        else:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, socket.timeout):
                kind, message = "timeout", f"no answer in {self.timeout:g} s"
            except ssl.SSLError as exc:
                kind, message = "closed", f"TLS error: {exc.reason or exc}"
            except OSError as exc:
                kind, message = "closed", f"connection lost: {exc.strerror or exc}"
            else:
                if data:
                    self._buffer += data
                    return
                kind, message = "closed", "the server closed the connection"
        self.broken = True
        raise WireError(kind, message)

    def read_reply(self) -> Reply:
        """One (possibly multi-line) reply."""
        lines: list[str] = []
        while True:
            line = self._readline()
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                self.broken = True
                raise WireError("garbled", f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return Reply(int(line[:3]), tuple(lines))

    def send_line(self, line: str, *, shown: str | None = None) -> None:
        self.transcript.sent(line, shown=shown, label=self.label)
        try:
            self.sock.sendall(line.encode("utf-8") + b"\r\n")
        except OSError as exc:
            self.broken = True
            raise WireError("closed", f"connection lost while sending: {exc.strerror or exc}") from None

    def command(self, line: str, *, shown: str | None = None) -> Reply:
        self.send_line(line, shown=shown)
        return self.read_reply()

    def send_message(self, data: bytes) -> Reply:
        """The DATA payload (after 354): dot-stuffed, CRLF line ends, then the final dot."""
        lines = data.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        self.transcript.note(f"message body: {len(body)} bytes (not shown)", self.label)
        try:
            self.sock.sendall(body + b".\r\n")
        except OSError as exc:
            self.broken = True
            raise WireError("closed", f"connection lost while sending: {exc.strerror or exc}") from None
        self.transcript.sent(".", label=self.label)
        return self.read_reply()

    # ---------------------------------------------------------------- TLS

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Wrap the socket; raises ssl.SSLError (SSLCertVerificationError for certificates)."""
        self._buffer = b""  # anything the server sent before the handshake is not to be trusted
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except BaseException:
            self.broken = True  # a failed handshake leaves nothing to say QUIT on
            raise
        self.transcript.note(f"TLS started: {self.tls_version} {self.tls_cipher}", self.label)

    @property
    def tls_version(self) -> str:
        return (self.sock.version() or "") if isinstance(self.sock, ssl.SSLSocket) else ""

    @property
    def tls_cipher(self) -> str:
        cipher = self.sock.cipher() if isinstance(self.sock, ssl.SSLSocket) else None
        return cipher[0] if cipher else ""

    def peer_certificate(self) -> bytes | None:
        if isinstance(self.sock, ssl.SSLSocket):
            return self.sock.getpeercert(binary_form=True)
        return None

    def close(self, *, quit: bool = False) -> None:
        if quit and not self.broken:
            try:
                self.sock.settimeout(min(self.timeout, 2.0))
                self.command("QUIT")
            except (WireError, OSError):
                pass
        self.broken = True
        try:
            self.sock.close()
        except OSError:
            pass
