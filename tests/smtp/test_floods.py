"""Connection floods against a real server: TLS handshakes count from accept, and
connections that never authenticate cannot keep legitimate clients out.

Bounded and on loopback only: a few hundred sockets from several 127.x addresses.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import RunningServer, init_data_dir

MESSAGE = b"From: legit@example.com\r\nTo: bob@example.org\r\nSubject: through the flood\r\n\r\nHello\r\n"


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes (EOF or reset) before `within` seconds pass."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except (TimeoutError, socket.timeout):
        return False


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[RunningServer]:
    # a handshake timeout far longer than the test waits: what is closed was closed by a cap
    server = RunningServer(init_data_dir(tmp_path / "data", smtp={
        "max_connections_per_ip": "10", "max_connections": "40", "tls_handshake_timeout": '"5m"',
    }))
    server.start()
    yield server
    server.close()


def test_connections_in_the_tls_handshake_count_toward_the_caps(capped: RunningServer) -> None:
    """On the implicit-TLS port a connection is counted from accept, not from a finished handshake."""
    held = [socket.create_connection(("127.0.0.1", capped.submissions_port), source_address=("127.0.0.2", 0))
            for _ in range(10)]  # the TCP handshake only: no ClientHello, ever
    try:
        time.sleep(0.5)
        extra = socket.create_connection(("127.0.0.1", capped.submissions_port), source_address=("127.0.0.2", 0))
        assert closed_by_server(extra, within=20), "an 11th connection from one address was let in"
        extra.close()
        assert not closed_by_server(held[0], within=0.2)  # the first ten are still being waited for
        # another address is not affected, and gets a whole TLS session
        with smtplib.SMTP_SSL("127.0.0.1", capped.submissions_port, source_address=("127.0.0.3", 0),
                              context=capped.client_context(), timeout=20) as client:
            assert client.noop()[0] == 250
    finally:
        for sock in held:
            sock.close()


def test_a_handshake_that_never_finishes_is_ended_by_its_timeout(tmp_path: Path) -> None:
    server = RunningServer(init_data_dir(tmp_path / "data", smtp={"tls_handshake_timeout": '"1s"'}))
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.submissions_port))
        assert closed_by_server(sock, within=30)
        sock.close()
    finally:
        server.close()


# ------------------------------------------------------------------ pre-auth floods

FLOOD_SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]  # 8 addresses
PER_SOURCE = 40  # each under the per-address cap: 320 sockets, more than the server holds


async def _flood(port: int, stop: asyncio.Event, stats: dict[str, int], *, drip: bool) -> None:
    """One flooding socket per call, kept up: idle (or dripping a byte a second), reconnecting when closed."""
    while not stop.is_set():
        source = FLOOD_SOURCES[stats["opened"] % len(FLOOD_SOURCES)]
        stats["opened"] += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.2)
            continue
        try:
            while not stop.is_set():
                if drip:
                    writer.write(b"N")  # never a whole line: bytes, not progress
                try:
                    data = await asyncio.wait_for(reader.read(4096), 1.0)
                except TimeoutError:
                    continue
                if not data:
                    stats["closed"] += 1
                    break
                if b"421" in data:
                    stats["421"] += 1
        except OSError:
            stats["closed"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.2)  # bounded: a reconnect at most five times a second per socket


def _legitimate_session(server: RunningServer, secret: str, subject: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", server.submission_port, local_hostname="legit.test", timeout=30) as client:
        client.starttls(context=server.client_context())
        client.login("legit@example.com", secret)
        client.sendmail("legit@example.com", ["bob@example.org"], MESSAGE.replace(b"through the flood", subject))
    return 250


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[RunningServer]:
    server = RunningServer(init_data_dir(tmp_path / "data", smtp={
        "max_connections": "100", "max_connections_per_ip": "50",
        "pre_auth_timeout": '"3s"', "pre_auth_stress_timeout": '"2s"', "auth_deadline": '"6s"',
    }))
    server.start()
    yield server
    server.close()


def test_legitimate_clients_are_served_through_a_pre_auth_flood(crowded: RunningServer) -> None:
    secret = crowded.account_with_app_password("legit@example.com")

    async def scenario() -> tuple[list[int | BaseException], dict[str, int]]:
        stop = asyncio.Event()
        stats = {"opened": 0, "closed": 0, "421": 0}
        flood = [asyncio.create_task(_flood(crowded.submission_port, stop, stats, drip=n % 2 == 0))
                 for n in range(len(FLOOD_SOURCES) * PER_SOURCE)]
        await asyncio.sleep(3)  # every slot the flood can get is taken
        results: list[int | BaseException] = []
        for n in range(8):
            try:
                results.append(await asyncio.to_thread(_legitimate_session, crowded, secret, f"flood {n}".encode()))
            except (smtplib.SMTPException, OSError) as exc:
                results.append(exc)
        stop.set()
        await asyncio.gather(*flood, return_exceptions=True)
        return results, stats

    results, stats = asyncio.run(scenario())
    assert results == [250] * 8, results
    subjects = sorted(m.subject for m in crowded.runtime.capture.list())
    assert subjects == [f"flood {n}" for n in range(8)]
    assert stats["closed"] > 0 and stats["421"] > 0  # the flood was shed and refused, not served


def test_a_drip_of_bytes_does_not_hold_a_slot(crowded: RunningServer) -> None:
    """One byte a second, never a line: the deadline for reaching AUTH ends it."""
    client = RawClient(crowded.submission_port, timeout=60)
    assert client.reply()[0] == 220
    client.sock.settimeout(1.5)
    ended = False
    for _ in range(40):
        try:
            client.send(b"N")
            chunk = client.sock.recv(4096)
        except (TimeoutError, socket.timeout):
            continue
        except OSError:
            ended = True
            break
        if not chunk or b"421" in chunk:
            ended = True
            break
    client.close()
    assert ended, "a dripping client was still connected after 40 bytes"
