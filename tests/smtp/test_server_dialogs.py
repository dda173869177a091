"""Dialogs against the real server over real sockets and TLS (files `dialogs/server_*.txt`).

Same format as the protocol dialogs; here `app: tls` means "the client does its TLS
handshake now", and `{name}` placeholders are filled with credentials made for the run:
`{alice}` (an app password of alice@example.com, as an AUTH PLAIN blob), `{alice_pw}` (her
account password), `{twofa_pw}` (an account that requires app passwords), `{revoked}`,
`{wrongnet}` (an app password for another network), `{login_user}` / `{login_secret}` (base64
for AUTH LOGIN) and `{hostname}`.
"""

from __future__ import annotations

import base64
import re
import socket
from pathlib import Path

import pytest

from smtpgate.credentials import ScopeRequest
from tests.smtp.protocol_dialogs import DialogError, parse_dialog
from tests.smtp.server_harness import PASSWORD, RunningServer

DIALOGS = sorted((Path(__file__).parent / "dialogs").glob("server_*.txt"))


def _plain(login: str, secret: str) -> str:
    return base64.b64encode(f"\0{login}\0{secret}".encode()).decode()


@pytest.fixture(scope="module")
def placeholders(server: RunningServer) -> dict[str, str]:
    creds = server.credentials
    creds.create_account("alice@example.com", password=PASSWORD)
    alice = creds.create_app_password(
        "alice@example.com", "dialogs", scopes=ScopeRequest(allowed_senders=("alice@example.com", "@alice.example.com"))
    ).secret
    creds.create_account("twofa@example.com", password=PASSWORD, require_app_passwords=True)
    creds.create_account("revoked@example.com")
    revoked = creds.create_app_password("revoked@example.com", "old")
    creds.revoke(revoked.credential.id)
    creds.create_account("netbound@example.com")
    wrongnet = creds.create_app_password(
        "netbound@example.com", "office", scopes=ScopeRequest(allowed_networks=("192.0.2.0/24",))
    ).secret
    return {
        "alice": _plain("alice@example.com", alice),
        "alice_pw": _plain("alice@example.com", PASSWORD),
        "twofa_pw": _plain("twofa@example.com", PASSWORD),
        "revoked": _plain("revoked@example.com", revoked.secret),
        "wrongnet": _plain("netbound@example.com", wrongnet),
        "login_user": base64.b64encode(b"alice@example.com").decode(),
        "login_secret": base64.b64encode(alice.encode()).decode(),
        "hostname": server.config.hostname,
    }


class Wire:
    def __init__(self, server: RunningServer, port: int, implicit_tls: bool) -> None:
        self.server = server
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if implicit_tls:
            self.sock = server.client_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise DialogError(f"server closed the connection; unread: {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode()

    def closed(self) -> bool:
        try:
            return self.buffer == b"" and self.sock.recv(1) == b""
        except OSError:
            return True


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], text)


def _matches(expected: str, actual: str) -> bool:
    if expected.endswith("..."):
        return actual.startswith(expected[:-3])
    return actual.rstrip() == expected.rstrip()


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_server_dialog(server: RunningServer, placeholders: dict[str, str], path: Path) -> None:
    text = _fill(path.read_text(), placeholders)
    steps = parse_dialog(text)
    implicit = "# listener: submissions" in text
    wire = Wire(server, server.submissions_port if implicit else server.submission_port, implicit)
    outgoing = b""
    for number, step in enumerate(steps, 1):
        if step.kind in ("client", "raw"):
            outgoing += (step.text + "\r\n").encode() if step.kind == "client" else step.data
            continue
        if outgoing:
            wire.sock.sendall(outgoing)
            outgoing = b""
        if step.kind == "server":
            actual = wire.line()
            if not _matches(step.text, actual):
                raise DialogError(f"{path.name} step {number}: expected {step.text!r}, got {actual!r}")
        elif step.kind == "server-run":
            actual = wire.line()
            if not actual.startswith(step.text):
                raise DialogError(f"{path.name} step {number}: expected a line starting {step.text!r}, got {actual!r}")
            while wire.buffer.startswith(step.text.encode()) or (not wire.buffer and _peek_starts(wire, step.text)):
                wire.line()
        elif step.kind == "app" and step.text == "tls":
            wire.sock = server.client_context().wrap_socket(wire.sock, server_hostname="localhost")
        elif step.kind == "closed":
            assert wire.closed(), f"{path.name}: the server should have closed the connection"
        else:
            raise DialogError(f"{path.name} step {number}: {step.kind} is not used in server dialogs")
    if outgoing:
        wire.sock.sendall(outgoing)
    wire.sock.close()


def _peek_starts(wire: Wire, prefix: str) -> bool:
    wire.sock.settimeout(0.5)
    try:
        chunk = wire.sock.recv(65536)
    except (TimeoutError, socket.timeout):
        return False
    finally:
        wire.sock.settimeout(10)
    wire.buffer += chunk
    return wire.buffer.startswith(prefix.encode())
